"""The maintainers' scripts whose numbers land in committed reports compute what their tables say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from robustadder.models import create_model, save_checkpoint
from robustadder.nn import awn_layers, set_awn_form

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch, raw", [("resnet20_adder_awn", "adder"), ("resnet20_conv_awn", "weight")])
def test_weight_scales_are_the_used_weights_rms_the_mean_gain_and_the_raw_weights_rms(arch, raw, tmp_path):
    """The ablation table's weight columns: rms of the weight the forward uses (about |γ| under AWN), mean γ and
    mean per-filter rms of the raw (not normalized) weight; a model without AWN has the first only."""
    table = _script("awn_ablation_table")
    model = create_model(arch)
    set_awn_form(model, "norm")  # recorded in the checkpoint; standardizing a constant filter would give 0
    layers = awn_layers(model)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.awn_gain.fill_(0.5 if i % 2 else 0.25)  # mean 0.375 over an even number of layers
            weight = getattr(layer, raw)
            weight.fill_(3.0 if i % 2 else 1.0)  # every filter's rms is the constant
    assert len(layers) % 2 == 0
    save_checkpoint(tmp_path / "m.pt", model)
    scales = table._weight_scales(tmp_path / "m.pt")
    assert scales["gain"] == pytest.approx(0.375) and scales["raw_rms"] == pytest.approx(2.0)
    assert scales["used_rms"] == pytest.approx(0.375, rel=1e-4)  # γ·W/rms(W): the constant filters' rms is γ
    plain = create_model(arch.removesuffix("_awn"))
    with torch.no_grad():
        for name, module in plain.named_modules():
            if name.startswith("layer") and hasattr(module, raw):
                getattr(module, raw).fill_(-3.0)
    save_checkpoint(tmp_path / "plain.pt", plain)
    assert table._weight_scales(tmp_path / "plain.pt") == pytest.approx({"used_rms": 3.0})
    assert table._weight_scales(tmp_path / "missing.pt") == {}


def test_saturation_is_the_share_of_adder_terms_beyond_hardtanhs_knee(shared_data, tmp_path, monkeypatch):
    """Templates far from every input saturate every term; a CNN has no adder terms; no data, no number."""
    table = _script("awn_ablation_table")
    model = create_model("resnet20_adder")
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "adder"):
                module.adder.fill_(1e3)
    save_checkpoint(tmp_path / "far.pt", model)
    save_checkpoint(tmp_path / "cnn.pt", create_model("resnet20_conv"))
    monkeypatch.setenv("ROBUSTADDER_DATA", str(shared_data))
    assert table._saturation(tmp_path / "far.pt") == 1.0
    assert table._saturation(tmp_path / "cnn.pt") is None
    monkeypatch.delenv("ROBUSTADDER_DATA")
    assert table._saturation(tmp_path / "far.pt") is None


def test_promote_rewrites_only_the_named_manifest_entry():
    """scripts/promote_retrain.py swaps one model's checksum, accuracy and description and nothing else: the
    manifest's comments and the other entries (which pin other committed files) stay byte for byte."""
    promote = _script("promote_retrain")
    manifest = (
        '# zoo\n\n[models.ann20-awn]\narch = "resnet20_adder_awn"\ndescription = "old"\npath = "ann20-awn.pt"\n'
        'sha256 = "aa"\naccuracy = 81.39\n# a comment kept\n\n[models.ann20]\ndescription = "old"\nsha256 = "bb"\n'
        "accuracy = 87.57\n"
    )
    out = promote.rewrite_entry(manifest, "ann20-awn", "cc", 87.81)
    head, tail = out.split("[models.ann20]\n")
    assert tail == manifest.split("[models.ann20]\n")[1]
    assert 'sha256 = "cc"\naccuracy = 87.81\n# a comment kept\n' in head and '"old"' not in head
    assert f'description = "{promote.DESCRIPTION["ann20-awn"]}"' in head and head.startswith("# zoo\n\n")
