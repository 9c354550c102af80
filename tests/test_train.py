"""Training: loss decreases, resume is bit-identical, adaptive learning rate and AWN are active."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustadder.errors import UserError
from robustadder.models import load_checkpoint
from robustadder.nn import adder_layers
from robustadder.train import TrainConfig, Trainer, augment


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
    header = (tmp_path / "c.metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_accuracy,test_accuracy,lr,seconds"


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
