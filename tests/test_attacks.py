"""Attack registry and runners: hand-computed FGSM, agreement with torchattacks, bounds, library traps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustadder.attacks import ATTACKS, BuildContext, build_runner, format_eps, make_config, parse_attack_option, parse_eps
from robustadder.attacks.gradient import pgd
from robustadder.engine import Settings, inference_mode, prepare, verify_batch
from robustadder.errors import UserError

from helpers import make_tiny


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_fgsm_equals_hand_computed_perturbation():
    model = Linear()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 9, 2, 2])
    eps = 8 / 255
    # d/dx CE(Wx + b, y) = Wᵀ (softmax(Wx + b) − onehot(y)), per sample (the mean only rescales)
    with torch.no_grad():
        p = F.softmax(model(x), 1) - F.one_hot(y, 10).float()
        grad = (p @ model.fc.weight).view_as(x)
    expected = (x + eps * grad.sign()).clamp(0, 1)
    adv = build_runner(make_config("fgsm", eps="8/255"))(model, x, y, np.arange(5), 0)
    torch.testing.assert_close(adv, expected)


def test_pgd_update_is_torchattacks_pgd():
    import torchattacks

    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 8))
    ours = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=3, norm="Linf", random_start_=False, restarts=1,
               ids=data.ids[:8], seed=0)  # fmt: skip
    theirs = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=3, random_start=False).forward(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("text, expected", [("8/255", 8 / 255), ("0.031", 0.031), (0.5, 0.5), ("0", 0.0), ("0.5/255", 0.5 / 255)])
def test_eps_parsing(text, expected):
    assert parse_eps(text, "Linf") == pytest.approx(expected)


@pytest.mark.parametrize("text", ["-1/255", "nan", "inf", "8", "abc", "1/0"])
def test_bad_eps(text):
    with pytest.raises(UserError):
        parse_eps(text, "Linf")


def test_defaults_follow_design():
    pgd_cfg = make_config("pgd")
    assert pgd_cfg.eps == pytest.approx(8 / 255) and pgd_cfg.params["alpha"] == pytest.approx(2 / 255)
    assert pgd_cfg.params["random_start"] is True and pgd_cfg.label == "PGD-10"
    l2 = make_config("pgd", norm="L2", params={"steps": "20"})
    assert l2.eps == 0.5 and l2.params["alpha"] == pytest.approx(2.5 * 0.5 / 20)
    assert make_config("autoattack").label == "AutoAttack"
    assert "not reference" in make_config("ta-autoattack").label
    assert parse_attack_option("pgd:steps=7,alpha=2/255") == ("pgd", {"steps": "7", "alpha": "2/255"})


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("pgd", {"steps": "0"}, "steps must be >= 1"),
        ("pgd", {"steps": "2.5"}, "integer"),
        ("pgd", {"alpha": "-1"}, "alpha must be > 0"),
        ("fgsm", {"steps": "3"}, "unknown option 'steps'"),
        ("autoattack", {"version": "turbo"}, "must be one of"),
        ("transfer", {}, "needs source"),
        ("magic", {}, "unknown attack"),
    ],
)
def test_bad_attack_options(name, params, match):
    with pytest.raises(UserError, match=match):
        make_config(name, params=params)


def test_fgsm_has_no_l2():
    with pytest.raises(UserError, match="supports norm Linf"):
        make_config("fgsm", norm="L2")


# fast parameters for every attack: the point is the bound, not the strength
FAST = {
    "pgd": {"steps": "2", "restarts": "2"}, "bim": {"steps": "2"}, "mim": {"steps": "2"}, "rfgsm": {"steps": "2"},
    "apgd-ce": {"steps": "3"}, "apgd-dlr": {"steps": "3"}, "square": {"queries": "30"},
}  # fmt: skip
CASES = [
    (name, norm) for name, d in ATTACKS.items() for norm in d.norms if name not in ("transfer", "autoattack", "ta-autoattack")
]


@pytest.mark.parametrize("name, norm", CASES)
def test_every_attack_respects_its_bound(name, norm):
    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 6))
    cfg = make_config(name, norm=norm, params=FAST.get(name, {}))
    with inference_mode(model, "eval"):
        adv = build_runner(cfg)(model, x, y, data.ids[:6], 0)
    linf, l2 = verify_batch(adv, x, cfg)  # raises on any violation
    if name not in ("none",):
        assert (linf > 0).any()
    bound = linf if norm == "Linf" else l2
    assert bound.max() <= cfg.eps + 1e-6


def test_transfer_uses_the_source_model():
    target, data = make_tiny(seed=0)
    source, _ = make_tiny(seed=1)
    settings = Settings()
    src_model = prepare(source, settings)
    cfg = make_config("transfer", params={"source": "src", "steps": "2"})
    runner = build_runner(cfg, BuildContext(load_model=lambda name: (src_model, {})))
    x, y = data.tensors(slice(0, 4))
    adv = runner(prepare(target, settings), x, y, data.ids[:4], 0)
    direct = pgd(src_model, x, y, eps=cfg.eps, alpha=2 / 255, steps=2, norm="Linf", random_start_=True, restarts=1,
                 ids=data.ids[:4], seed=0)  # fmt: skip
    torch.testing.assert_close(adv, direct)


def test_random_attacks_are_per_sample_deterministic():
    """A sample's adversarial example does not depend on its batch (per-sample RNG)."""
    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 6))
    for name in ("pgd", "rfgsm", "noise"):
        run = build_runner(make_config(name, params=FAST.get(name, {})))
        whole = run(model, x, y, data.ids[:6], 7)
        part = run(model, x[3:5], y[3:5], data.ids[3:5], 7)
        torch.testing.assert_close(part, whole[3:5], rtol=0, atol=0)
        assert not torch.equal(run(model, x, y, data.ids[:6], 8), whole)  # the seed matters


@pytest.mark.parametrize("name", ["apgd-ce", "square"])
def test_reference_attacks_leave_global_rng_alone(name):
    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 4))
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    build_runner(make_config(name, params=FAST[name]))(model, x, y, data.ids[:4], 0)
    assert torch.equal(torch.get_rng_state(), before)


def test_reference_autoattack_runs_on_cpu():
    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 4))
    cfg = make_config("autoattack", eps="8/255")
    torch.manual_seed(99)
    before = torch.get_rng_state()
    with inference_mode(model, "eval"):
        adv = build_runner(cfg)(model, x, y, data.ids[:4], 0)
    assert adv.device.type == "cpu"
    verify_batch(adv, x, cfg)
    assert torch.equal(torch.get_rng_state(), before)  # AutoAttack reseeds; we isolated it
    with torch.no_grad():
        assert (model(adv).argmax(1) != y).float().mean() > 0.5  # an untrained ResNet-8 is not robust


def test_torchattacks_autoattack_keeps_bn_train_and_model_mode():
    loaded, data = make_tiny()
    model = prepare(loaded, Settings())
    x, y = data.tensors(slice(0, 4))
    bn = model.bn1
    stats = bn.running_mean.clone()
    cfg = make_config("ta-autoattack")
    with inference_mode(model, "train"):
        adv = build_runner(cfg, BuildContext(num_classes=10))(model, x, y, data.ids[:4], 0)
    verify_batch(adv, x, cfg)
    assert not model.training and not bn.training  # restored to eval
    assert torch.equal(bn.running_mean, stats)  # BN-train evaluation never updates statistics


def test_verify_batch_catches_violations():
    x = torch.rand(2, 3, 4, 4) * 0.5 + 0.25
    cfg = make_config("pgd", eps="8/255")
    from robustadder.engine import BoundViolation

    with pytest.raises(BoundViolation, match="exceeded its Linf budget"):
        verify_batch(x + 9 / 255, x, cfg)
    with pytest.raises(BoundViolation, match="image box"):
        verify_batch((x - 0.3).clamp(min=-0.1), x, make_config("pgd", eps="0.5"))
    bad = x.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(BoundViolation, match="NaN"):
        verify_batch(bad, x, cfg)
    l2 = make_config("pgd", norm="L2", eps="0.5")
    with pytest.raises(BoundViolation, match="L2 budget"):
        verify_batch(x + 0.1, x, l2)  # ‖δ‖₂ = 0.1 · sqrt(48) ≈ 0.69 > 0.5


def test_one_eps_formatter_reads_back_as_the_eps_it_prints():
    """Tables, reports and the CLI print eps one way, and what they print parses back to the same budget."""
    assert [format_eps(e) for e in (8 / 255, 1 / 255, 0.5 / 255)] == ["8/255", "1/255", "0.5/255"]
    assert format_eps(0) == "–" and format_eps(0, zero="-") == "-"
    assert format_eps(0.5, "L2") == "0.5 (L2)"
    for eps in (8 / 255, 2 / 255, 0.5 / 255, 16 / 255):
        assert parse_eps(format_eps(eps), "Linf") == pytest.approx(eps, rel=1e-3)
