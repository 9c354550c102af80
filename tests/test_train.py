"""Training: loss decreases, resume is bit-identical, adaptive learning rate and AWN are active."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from robustadder.errors import UserError
from robustadder.models import create_model, load_checkpoint
from robustadder.nn import adder2d, adder_layers, awn_layers, awn_raw_weight, awn_weight, set_awn_form
from robustadder.summary import proportion_interval
from robustadder.train import TrainConfig, Trainer, augment, bn_statistics


@pytest.fixture
def tiny_cifar(tmp_path):
    """A learnable toy dataset in the npz format: the class is encoded in the mean colour."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n)
        base = (y[:, None, None, None] * 25).astype(np.int16)
        x = np.clip(base + rng.integers(-20, 20, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    for split, n in (("train", 96), ("test", 40)):
        x, y = make(n)
        np.savez(tmp_path / f"cifar10_{split}.npz", x=x, y=y)
    return tmp_path


def config(**kw):
    base = dict(arch="resnet20", kind="adder", awn=False, epochs=3, batch_size=32, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_short_training_decreases_the_loss(tiny_cifar, tmp_path):
    trainer = Trainer(config(kind="conv", epochs=4), tmp_path / "c.pt", tiny_cifar)
    meta = trainer.run(progress=False)
    losses = [m["train_loss"] for m in trainer.metrics]
    assert losses[-1] < losses[0]
    assert meta["accuracy_n"] == 40 and meta["recipe"]["epochs"] == 4 and meta["dataset"] == "cifar10"
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.arch.name == "resnet20_conv" and loaded.meta["accuracy"] == meta["accuracy"]
    # the accuracy on 40 images is an estimate: the checkpoint keeps its 95 % Wilson interval
    correct = round(meta["accuracy"] * 40 / 100)
    assert loaded.meta["accuracy_ci"] == [round(v, 2) for v in proportion_interval(correct, 40)]
    assert loaded.meta["accuracy_ci"][0] <= meta["accuracy"] <= loaded.meta["accuracy_ci"][1]
    header = (tmp_path / "c.metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_accuracy,test_accuracy,lr,seconds,bn_abs_mean,bn_abs_mean_max,bn_var_mean"


def test_resume_is_bit_identical(tiny_cifar, tmp_path):
    straight = Trainer(config(epochs=2), tmp_path / "a.pt", tiny_cifar)
    straight.run(progress=False)
    first = Trainer(config(epochs=2), tmp_path / "b.pt", tiny_cifar)
    assert first.run(progress=False, stop_after=1) is None
    second = Trainer(config(epochs=2), tmp_path / "b.pt", tiny_cifar)  # a new process would do the same
    second.run(resume=True, progress=False)
    a, b = straight.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["train_loss"] for m in straight.metrics] == [m["train_loss"] for m in second.metrics]


def test_resume_refuses_other_settings(tiny_cifar, tmp_path):
    Trainer(config(epochs=2), tmp_path / "r.pt", tiny_cifar).run(progress=False, stop_after=1)
    with pytest.raises(UserError, match="other settings"):
        Trainer(config(epochs=2, lr=0.05), tmp_path / "r.pt", tiny_cifar).run(resume=True, progress=False)
    with pytest.raises(UserError, match="exists"):
        Trainer(config(epochs=2), tmp_path / "r.pt", tiny_cifar).run(progress=False)


def test_adaptive_learning_rate_is_active(tiny_cifar, tmp_path):
    trainer = Trainer(config(), tmp_path / "e.pt", tiny_cifar)
    x, y = trainer.train.tensors(slice(0, 16))
    torch.nn.functional.cross_entropy(trainer.model(x), y).backward()
    for layer in adder_layers(trainer.model):
        assert layer.eta == 0.2
        assert layer.adder.grad.norm().item() == pytest.approx(0.2 * math.sqrt(layer.adder.numel()), rel=1e-5)
    off = Trainer(config(eta=0.7), tmp_path / "e2.pt", tiny_cifar)
    off.model(x).sum().backward()
    layer = adder_layers(off.model)[0]
    assert layer.adder.grad.norm().item() == pytest.approx(0.7 * math.sqrt(layer.adder.numel()), rel=1e-5)


def test_awn_adaptive_learning_rate_acts_on_the_raw_weight(tiny_cifar, tmp_path):
    trainer = Trainer(config(awn=True), tmp_path / "a.pt", tiny_cifar)
    x, y = trainer.train.tensors(slice(0, 16))
    torch.nn.functional.cross_entropy(trainer.model(x), y).backward()
    for layer in adder_layers(trainer.model):
        assert layer.adder.grad.norm().item() == pytest.approx(0.2 * math.sqrt(layer.adder.numel()), rel=1e-5)
        # the gain's gradient is the plain chain rule, not inflated by the rescaling
        assert layer.awn_gain.grad.norm().item() < 0.2 * math.sqrt(layer.adder.numel())


def test_awn_is_active_when_asked(tiny_cifar, tmp_path):
    trainer = Trainer(config(awn=True, epochs=1), tmp_path / "w.pt", tiny_cifar)
    gains = [m.awn_gain for m in trainer.model.modules() if getattr(m, "awn_gain", None) is not None]
    assert len(gains) == 20  # 18 block layers + 2 shortcuts of ResNet-20
    trainer.run(progress=False)
    assert any(not torch.allclose(g, torch.ones_like(g)) for g in gains)  # the gains train
    assert load_checkpoint(tmp_path / "w.pt").arch.name == "resnet20_adder_awn"
    plain = Trainer(config(epochs=1), tmp_path / "p.pt", tiny_cifar)
    assert not any(getattr(m, "awn_gain", None) is not None for m in plain.model.modules())


def test_augmentation_crops_and_flips_deterministically():
    x = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
    a = augment(x, np.random.default_rng(5), 4, True)
    b = augment(x, np.random.default_rng(5), 4, True)
    assert a.shape == x.shape and np.array_equal(a, b)
    same = augment(x, np.random.default_rng(5), 0, False)
    assert np.array_equal(same, x)


# -- AWN variants (issue 16's ablation) ---------------------------------------------------------------------
def test_awn_eta_on_the_normalized_weight_is_the_chain_rule_of_a_scaled_gradient(tiny_cifar, tmp_path):
    trainer = Trainer(config(awn=True, awn_eta="normalized"), tmp_path / "n.pt", tiny_cifar)
    layer = adder_layers(trainer.model)[0]
    x = torch.randn(4, layer.in_channels, 8, 8)
    layer.zero_grad()
    layer(x).sum().backward()
    raw = layer.adder.detach().clone().requires_grad_(True)
    w_hat = awn_weight(raw, layer.awn_gain.detach(), form=layer.awn_form)
    adder2d(x, w_hat, layer.stride, layer.padding, eta=0.2).sum().backward()  # η scales the gradient of Ŵ
    torch.testing.assert_close(layer.adder.grad, raw.grad)
    assert layer.adder.grad.norm().item() != pytest.approx(0.2 * math.sqrt(layer.adder.numel()), rel=1e-3)


def test_awn_gain_decay_and_initialisation(tiny_cifar, tmp_path):
    trainer = Trainer(
        config(awn=True, awn_form="standardize", awn_gain_decay=False, awn_gain_init="scale"), tmp_path / "g.pt", tiny_cifar
    )
    decays = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in trainer.model.named_parameters():
        assert decays[id(p)] == (0.0 if name.endswith("awn_gain") else 5e-4)
    for layer in awn_layers(trainer.model):  # Ŵ starts as the centred raw weight
        raw = awn_raw_weight(layer)
        centred = raw - raw.mean(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(layer.effective_weight(), centred, rtol=1e-4, atol=1e-4)
    norm = Trainer(config(awn=True, awn_form="norm", awn_gain_init="scale"), tmp_path / "h.pt", tiny_cifar)
    for layer in awn_layers(norm.model):  # the norm form starts as the raw weight itself
        raw = awn_raw_weight(layer)
        torch.testing.assert_close(layer.effective_weight(), raw, rtol=1e-4, atol=1e-4)
    fixed = Trainer(config(awn=True, awn_form="norm", awn_gain_init="4"), tmp_path / "f.pt", tiny_cifar)
    default = Trainer(config(awn=True), tmp_path / "d.pt", tiny_cifar)  # `train --awn`: the same start
    for layer in [*awn_layers(fixed.model), *awn_layers(default.model)]:  # each normalized filter starts at rms 4
        rms = layer.effective_weight().reshape(layer.awn_gain.shape[0], -1).pow(2).mean(1).sqrt()
        torch.testing.assert_close(rms, torch.full_like(rms, 4.0), rtol=1e-4, atol=1e-4)
    for bad in ("0", "-1", "nan", "inf", "big"):
        with pytest.raises(UserError, match="--awn-gain-init must be one, scale or a positive number"):
            Trainer(config(awn=True, awn_gain_init=bad), tmp_path / "x.pt", tiny_cifar)
    with pytest.raises(UserError, match="--awn-form applies to AWN models: add --awn"):
        Trainer(config(awn_form="standardize"), tmp_path / "x.pt", tiny_cifar)
    with pytest.raises(UserError, match="--awn-eta must be one of raw, normalized"):
        Trainer(config(awn=True, awn_eta="both"), tmp_path / "x.pt", tiny_cifar)


def test_awn_form_is_recorded_and_reloaded(tiny_cifar, tmp_path):
    from robustadder.api import resolve_attacks
    from robustadder.engine import Settings, cell_config

    meta = Trainer(config(awn=True, awn_form="norm", epochs=1), tmp_path / "n.pt", tiny_cifar).run(progress=False)
    assert meta["awn_variant"] == {"form": "norm", "eta": "raw", "gain_decay": True, "gain_init": "4"}
    loaded = load_checkpoint(tmp_path / "n.pt")
    assert {layer.awn_form for layer in awn_layers(loaded.model)} == {"norm"}
    x = torch.rand(4, 3, 32, 32)
    trained = Trainer(config(awn=True, awn_form="norm", epochs=1), tmp_path / "m.pt", tiny_cifar)
    trained.model.load_state_dict(loaded.model.state_dict())
    trained.model.eval()
    torch.testing.assert_close(loaded.model(x), trained.model(x))  # the same function, not only the same weights
    clean = resolve_attacks("none")[0]
    assert cell_config(loaded, clean, Settings(), _imageset(x))["model"]["awn_form"] == "norm"
    standard = Trainer(config(awn=True, awn_form="standardize", epochs=1), tmp_path / "s.pt", tiny_cifar).run(progress=False)
    assert standard["awn_variant"]["form"] == "standardize"
    assert "awn_form" not in cell_config(load_checkpoint(tmp_path / "s.pt"), clean, Settings(), _imageset(x))["model"]


def _imageset(x):
    from robustadder.data import ImageSet

    images = (x.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()
    return ImageSet(images, np.zeros(len(x), np.int64), np.arange(len(x)), "x")


def test_metrics_record_bn_statistics_and_old_states_resume(tiny_cifar, tmp_path):
    trainer = Trainer(config(epochs=2), tmp_path / "b.pt", tiny_cifar)
    trainer.run(progress=False, stop_after=1)
    row = trainer.metrics[0]
    assert row["bn_abs_mean_max"] >= row["bn_abs_mean"] > 0 and row["bn_var_mean"] > 0
    bn = trainer.model.layer1[0].bn1
    with torch.no_grad():
        bn.running_mean[0] = -1234.0
    assert bn_statistics(trainer.model)["bn_abs_mean_max"] == 1234.0
    # a state saved before the dataset and AWN settings existed resumes as what it was: CIFAR-10, AWN defaults
    state = torch.load(trainer.state_path, weights_only=True)
    for key in ("dataset", "awn_form", "awn_eta", "awn_gain_decay", "awn_gain_init"):
        state["config"].pop(key)
    torch.save(state, trainer.state_path)
    assert Trainer(config(epochs=2), tmp_path / "b.pt", tiny_cifar).run(resume=True, progress=False) is not None


def test_new_awn_training_uses_weight_normalization_and_old_awn_states_resume_as_standardized(tiny_cifar, tmp_path):
    """The ablation's choice is the default (API and CLI), while a run started before it continues as it began."""
    from click.testing import CliRunner

    from robustadder.cli import main

    trainer = Trainer(config(awn=True, epochs=2), tmp_path / "a.pt", tiny_cifar)
    assert {layer.awn_form for layer in awn_layers(trainer.model)} == {"norm"}
    out = tmp_path / "cli.pt"
    args = ["train", "--kind", "adder", "--awn", "--epochs", "1", "--batch-size", "32", "--out", str(out),
            "--data", str(tiny_cifar)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).meta["awn_variant"]["form"] == "norm"
    assert re.search(r"test accuracy \d+\.\d\d % \[\d+\.\d, \d+\.\d\] on 40 images", result.output), result.output
    refused = CliRunner().invoke(main, ["train", "--kind", "adder", "--awn-form", "norm", "--out", str(tmp_path / "z.pt")])
    assert refused.exit_code == 2 and "--awn-form applies to AWN models: add --awn" in refused.output
    old = Trainer(config(awn=True, awn_form="standardize", epochs=2), tmp_path / "o.pt", tiny_cifar)
    old.run(progress=False, stop_after=1)
    state = torch.load(old.state_path, weights_only=True)
    for key in ("awn_form", "awn_eta", "awn_gain_decay", "awn_gain_init"):  # written before the variants existed
        state["config"].pop(key)
    torch.save(state, old.state_path)
    with pytest.raises(UserError, match="awn_form standardize, awn_gain_init one"):  # the defaults changed since
        Trainer(config(awn=True, epochs=2), tmp_path / "o.pt", tiny_cifar).run(resume=True, progress=False)
    resumed = Trainer(config(awn=True, awn_form="standardize", awn_gain_init="one", epochs=2), tmp_path / "o.pt", tiny_cifar)
    assert resumed.run(resume=True, progress=False)["awn_variant"]["form"] == "standardize"


def test_train_cli_defaults_are_the_api_defaults():
    """`train`'s options and TrainConfig spell each AWN default separately: a default changed in one place only
    would make `robustadder train --awn` and `Trainer(TrainConfig(awn=True))` train different models."""
    from robustadder.cli import train_cmd

    cli = {p.name: p.default for p in train_cmd.params if p.name.startswith("awn_")}
    assert cli == {name: getattr(TrainConfig(), name) for name in cli} and len(cli) == 4


def test_training_never_overwrites_a_checkpoint_or_another_runs_metrics(tiny_cifar, tmp_path):
    out = tmp_path / "done.pt"
    out.write_bytes(b"a finished model")
    with pytest.raises(UserError, match="done.pt exists: training never overwrites a checkpoint"):
        Trainer(config(epochs=1), out, tiny_cifar).run(progress=False)
    assert out.read_bytes() == b"a finished model" and not (tmp_path / "done.pt.state").exists()
    metrics = tmp_path / "other.metrics.csv"
    metrics.write_text("epoch\n1\n")
    with pytest.raises(UserError, match="another run's metrics"):
        Trainer(config(epochs=1), tmp_path / "other.pt", tiny_cifar).run(progress=False)
    assert metrics.read_text() == "epoch\n1\n"


def _awn_model(arch: str, gain: float) -> torch.nn.Module:
    """A weight-normalized AWN model with every gain at ``gain`` (raw weights from seed 0), in training mode."""
    torch.manual_seed(0)
    model = create_model(arch)
    set_awn_form(model, "norm")
    with torch.no_grad():
        for layer in awn_layers(model):
            layer.awn_gain.fill_(gain)
    return model.train()


def test_conv_awn_gain_scale_cancels_under_batch_norm():
    """Why a CNN's AWN gain start value does not matter (README, AWN): BN after each conv divides the scale out.

    In training mode the loss and the raw weights' gradients are the same for gains 1 and 4 (up to BN's ε
    and rounding); an adder layer's |X − W| has no such symmetry, which is why γ₀ matters for AdderNets.
    """
    models = [_awn_model("resnet20_conv_awn", gain) for gain in (1.0, 4.0)]
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    losses = [torch.nn.functional.cross_entropy(m(x), y) for m in models]
    for loss in losses:
        loss.backward()
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-5)
    for a, b in zip(awn_layers(models[0]), awn_layers(models[1]), strict=True):
        torch.testing.assert_close(a.weight.grad, b.weight.grad, rtol=1e-4, atol=1e-5 * float(a.weight.grad.abs().max()))
    adder = [_awn_model("resnet20_adder_awn", gain) for gain in (1.0, 4.0)]  # the contrast: adder layers see it
    with torch.no_grad():
        assert not torch.allclose(adder[0](x), adder[1](x), rtol=1e-2, atol=1e-2)


def test_bench_train_times_the_recipes_step_for_each_depth_and_kind(monkeypatch):
    """`bench train`: per depth one row, AdderNet against the CNN, both stepping through train_step; s/epoch from it."""
    import json

    from click.testing import CliRunner

    import robustadder.train as train
    from robustadder.cli import main

    stepped = []
    real = train.train_step
    monkeypatch.setattr(train, "train_step", lambda m, *a: stepped.append(bool(adder_layers(m))) or real(m, *a))
    out = CliRunner().invoke(main, ["bench", "train", "--depth", "20", "--depth", "32", "--batch-size", "4",
                                    "--repeats", "1", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    assert [r["layer"] for r in rows] == ["resnet20 training", "resnet32 training"]
    for r in rows:
        assert r["ms"] > 0 and r["conv_ms"] > 0 and r["ratio_to_conv"] == pytest.approx(r["ms"] / r["conv_ms"], rel=0.01)
        assert r["seconds_per_epoch"] == pytest.approx(r["ms"] * 12500 / 1000, rel=0.01, abs=0.1)  # 50,000 / 4 steps
    assert stepped == [True, False] * 4  # ANN and CNN alternately: a warm-up and one timed step each, per depth
