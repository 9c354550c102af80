"""Gradient-masking checks on a masked and a plain CNN; operation counts against hand counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustadder.cli import main
from robustadder.data import ImageSet
from robustadder.diagnostics import CheckReport, run_checks
from robustadder.errors import UserError
from robustadder.models import CifarResNet
from robustadder.models.checkpoint import LoadedModel, weights_sha256
from robustadder.nn import Adder2d
from robustadder.ops import ADD_PJ, MUL_PJ, count_ops
from robustadder.store import Store
from robustadder.train import TrainConfig, Trainer


def _learnable_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour classes 25/255 apart under strong pixel noise: learnable in seconds, without saturated logits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.clip((y * 25 + 15)[:, None, None, None] + rng.integers(-40, 41, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return x, y.astype(np.uint8)


class Quantized(CifarResNet):
    """A CNN behind a non-differentiable quantizer: the textbook masked model (zero input gradients)."""

    def forward(self, x):
        return super().forward(torch.round(x * 16) / 16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    for split, n, seed in (("train", 640, 0), ("test", 64, 1)):
        x, y = _learnable_data(n, seed)
        np.savez(root / f"cifar10_{split}.npz", x=x, y=y)
    trainer = Trainer(TrainConfig(arch="resnet20", kind="conv", epochs=3, batch_size=64, lr=0.05), root / "cnn.pt", root)
    trainer.run(progress=False)
    test = ImageSet(*_learnable_data(64, 1), np.arange(64), "learnable")
    test = ImageSet(test.x, test.y.astype(np.int64), test.ids, test.source)
    return trainer.model.eval(), test


def _loaded(model: torch.nn.Module, name: str) -> LoadedModel:
    return LoadedModel(model, name, model.spec, weights_sha256(model.state_dict()), "memory")


def _checks(model, data, store, **kw):
    return run_checks(_loaded(model, kw.pop("name", "m")), n=len(data), data=data, store=store, steps=5,
                      square_queries=200, progress=False, **kw)  # fmt: skip


def test_plain_cnn_passes(trained, tmp_path):
    model, data = trained
    report = _checks(model, data, tmp_path / "c.sqlite", name="plain")
    verdicts = {r.name: r.verdict for r in report.results}
    assert report.failed == [], report.to_markdown()
    assert verdicts["gradient-health"] == "pass" and verdicts["determinism"] == "pass"
    assert "survives" in report.verdict and "NOT" not in report.verdict
    clean = [r for r in report.results if r.name == "eps-monotonic"][0].evidence["curve"]
    assert clean["127.5/255"] <= 1.0  # an unbounded attack succeeds everywhere


def test_masked_model_fails_the_right_checks(trained, tmp_path):
    model, data = trained
    masked = Quantized(20, "conv")
    masked.load_state_dict(model.state_dict())
    masked.eval()
    report = _checks(masked, data, tmp_path / "m.sqlite", name="masked")
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts["gradient-health"] == "fail", report.to_markdown()
    grad = [r for r in report.results if r.name == "gradient-health"][0]
    assert grad.evidence["surrogate"]["zero_share"] == 100.0
    assert verdicts["black-box"] == "fail" or verdicts["eps-monotonic"] == "fail", report.to_markdown()
    assert "does NOT survive" in report.verdict


def test_bn_train_breaks_batch_independence(trained, tmp_path):
    model, data = trained
    report = _checks(model, data, tmp_path / "b.sqlite", name="bn", bn="train")
    determinism = [r for r in report.results if r.name == "determinism"][0]
    assert determinism.verdict == "fail" and max(determinism.evidence["predictions_changed"].values()) > 0


def test_cli_check_json_strict_and_report(trained, tmp_path, monkeypatch):
    model, data = trained
    from robustadder.models import save_checkpoint

    masked = Quantized(20, "conv")
    masked.load_state_dict(model.state_dict())
    path = tmp_path / "plain.pt"
    save_checkpoint(path, model)
    x, y = data.x, data.y
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=y.astype(np.uint8))
    store = tmp_path / "s.sqlite"
    args = ["check", "--model", str(path), "--n", "32", "--steps", "3", "--queries", "50", "--data", str(tmp_path),
            "--store", str(store)]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--json", "--strict"])
    out = json.loads(result.stdout)
    assert result.exit_code == (1 if out["failed"] else 0)
    assert {r["name"] for r in out["results"]} == {"single-step", "eps-monotonic", "convergence", "black-box",
                                                   "gradient-health", "determinism", "logits-iterates",
                                                   "numerical-stability"}  # fmt: skip
    with Store.open(store, readonly=True) as db:
        stored = db.checks()
    assert len(stored) == 1 and CheckReport.from_json(stored[0]).verdict == out["verdict"]
    # cells are reused: a second run computes nothing new
    with Store.open(store, readonly=True) as db:
        before = len(db.samples())
    CliRunner().invoke(main, args)
    with Store.open(store, readonly=True) as db:
        assert len(db.samples()) == before
    sweep = _tiny_sweep(tmp_path, path)
    ran = CliRunner().invoke(main, ["sweep", str(sweep), "--store", str(store), "--data", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    md = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--checks"])
    assert md.exit_code == 0, md.output
    assert "Gradient-masking checks" in md.output and "Verdict" in md.output


def _tiny_sweep(tmp_path, path):
    sweep = tmp_path / "t.toml"
    sweep.write_text(f'name = "t"\nn = 32\nmodels = ["{path}"]\n[[attacks]]\nname = "none"\n')
    return sweep


# -- operation counts ------------------------------------------------------------------------------------
def test_op_counts_match_hand_counts():
    net = torch.nn.Sequential(
        Adder2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.AvgPool2d(2)
    )
    counts = count_ops(net, (2, 4, 4))
    # adder: 3x4x4 outputs x (2*18 - 1); BN: 48 elements x (1 add, 1 mul);
    # conv 1x1: 4x4x4 outputs x (3 mul, 2 add); avgpool 2x2: 4x2x2 outputs x (3 add, 1 mul)
    assert counts.adds == {"adder": 48 * 35, "bn": 48, "conv": 64 * 2, "pool": 16 * 3}
    assert counts.muls == {"adder": 0, "bn": 48, "conv": 64 * 3, "pool": 16}
    assert counts.total_adds == 1904 and counts.total_muls == 256
    assert counts.energy_uj == pytest.approx((1904 * ADD_PJ + 256 * MUL_PJ) * 1e-6)


def test_resnet20_adder_trades_multiplications_for_additions():
    ann, cnn = count_ops(CifarResNet(20, "adder")), count_ops(CifarResNet(20, "conv"))
    assert ann.muls["adder"] == 0 and cnn.muls["conv"] > 40e6  # ~40.6M MACs in the CNN's 3x3 convs
    assert ann.total_muls < 0.02 * cnn.total_muls
    assert ann.total_adds == pytest.approx(2 * cnn.adds["conv"] + (ann.total_adds - ann.adds["adder"]), rel=0.02)
    assert ann.energy_uj < cnn.energy_uj


def test_models_ops_cli():
    result = CliRunner().invoke(main, ["models", "--ops", "--json"])
    rows = json.loads(result.stdout)
    official = [r for r in rows if r["name"] == "ann20-official"][0]
    assert official["muls"] < 1e6 and official["adds"] > 80e6 and official["energy_uj"] > 0


def test_report_json_keeps_text_and_nulls_nan():
    from robustadder.diagnostics import CheckResult

    result = CheckResult("x", "t", "pass", "NaN/inf 0.0 %", {"v": float("nan"), "n": np.int64(3)})
    settings = {"bn": "eval", "grad": "surrogate", "backend": "cpu"}
    report = CheckReport("m", "a", "0" * 64, 10, 8 / 255, settings, [result], float("nan"))
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert data["results"][0]["summary"] == "NaN/inf 0.0 %" and data["results"][0]["evidence"] == {"v": None, "n": 3}
    assert CheckReport.from_json(data).results[0].summary == "NaN/inf 0.0 %"
    assert json.loads(report.render("json")) == json.loads(json.dumps(data))
    with pytest.raises(UserError, match="format csv is not one of md, json, latex, html"):
        report.render("csv")


def test_checks_that_cannot_discriminate_say_na_not_pass(tmp_path):
    """At a budget where PGD leaves nothing robust, attack comparisons pass trivially: they must say n/a."""
    from helpers import make_tiny

    loaded, data = make_tiny("conv", n=16)
    report = run_checks(loaded, n=16, eps="64/255", data=data, store=tmp_path / "z.sqlite", steps=3, square_queries=20,
                        progress=False)  # fmt: skip
    verdicts = {r.name: r.verdict for r in report.results}
    assert report.best_robust_accuracy == 0.0
    assert all(verdicts[name] == "n/a" for name in ("single-step", "convergence", "black-box")), verdicts
    assert "pass" not in {verdicts[n] for n in ("single-step", "convergence", "black-box")}
    assert report.verdict.startswith("not robust at eps 64/255")
    assert report.reference["eps"] == pytest.approx(8 / 255)
    precision = [r for r in report.results if r.name == "numerical-stability"][0]
    assert precision.verdict in ("pass", "warn") and {"clean_flips_pct", "robust_flips_pct"} <= set(precision.evidence)


def test_auto_eps_is_the_smallest_informative_budget(trained, tmp_path):
    model, data = trained
    report = _checks(model, data, tmp_path / "a.sqlite", name="auto")
    sel = report.eps_selection
    shares = sel["robust_share_by_eps"]
    chosen = f"{report.eps * 255:g}/255"
    if sel["rule"].startswith("smallest"):
        assert 20.0 <= shares[chosen] <= 80.0
        assert all(not 20.0 <= v <= 80.0 for k, v in shares.items() if float(k.split("/")[0]) < report.eps * 255)
    assert "eps chosen by rule" in report.to_markdown()


def _frame(robust: list[bool]):
    """Per-sample rows of a cell whose samples are all clean-correct (``robust``: adversarially correct too)."""
    import pandas as pd

    n = len(robust)
    return pd.DataFrame({"sample_id": range(n), "clean_correct": [True] * n, "adv_correct": robust})


def test_a_check_fails_only_on_a_difference_beyond_sampling_noise(monkeypatch):
    """An attack beating another by more than the threshold in points fails the check only when the paired difference
    is significant: one sample of 12 is 8.3 points and no evidence of masking (a warning that says so); thirty of 200
    that FGSM fools and PGD does not are."""
    import robustadder.diagnostics as d

    pgd = _frame([True] * 2 + [False] * 10)
    one_more = _frame([True] + [False] * 11)  # R-FGSM fools one sample PGD left robust
    small = d._check_single_step(pgd, one_more, pgd, steps=5)
    assert small.verdict == "warn" and "not significant (paired McNemar p = 1" in small.summary
    assert small.evidence["p_value"] == 1.0  # the number behind the verdict, for --json readers
    strong_pgd, weak_fgsm = _frame([True] * 100 + [False] * 100), _frame([True] * 70 + [False] * 130)
    large = d._check_single_step(weak_fgsm, strong_pgd, strong_pgd, steps=5)
    assert large.verdict == "fail" and "not significant" not in large.summary and large.evidence["p_value"] < 0.05
    monkeypatch.setattr(d, "_loss_trace", lambda *a, **k: ([1.0] * 8, [50.0] * 8, None, None))  # a flat trace
    for pgd_k, pgd_2k, verdict in ((pgd, one_more, "warn"), (strong_pgd, weak_fgsm, "fail")):
        result = d._check_convergence(None, lambda *a, same=pgd_k: same, pgd_k, pgd_2k, 1 / 255, 5)
        assert result.verdict == verdict and ("not significant" in result.summary) == (verdict == "warn")
