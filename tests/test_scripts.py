"""The maintainers' scripts whose numbers land in committed reports compute what their tables say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from robustadder.models import create_model, save_checkpoint
from robustadder.nn import awn_layers

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch, raw", [("resnet20_adder_awn", "adder"), ("resnet20_conv_awn", "weight")])
def test_awn_scales_are_the_mean_gain_and_the_raw_weights_rms(arch, raw, tmp_path):
    """The ablation table's AWN columns: mean γ and mean per-filter rms of the raw (not normalized) weight."""
    table = _script("awn_ablation_table")
    model = create_model(arch)
    layers = awn_layers(model)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.awn_gain.fill_(0.5 if i % 2 else 0.25)  # mean 0.375 over an even number of layers
            weight = getattr(layer, raw)
            weight.fill_(3.0 if i % 2 else 1.0)  # every filter's rms is the constant
    assert len(layers) % 2 == 0
    save_checkpoint(tmp_path / "m.pt", model)
    scales = table._awn_scales(tmp_path / "m.pt")
    assert scales["gain"] == pytest.approx(0.375) and scales["raw_rms"] == pytest.approx(2.0)
    save_checkpoint(tmp_path / "plain.pt", create_model("resnet20_adder"))
    assert table._awn_scales(tmp_path / "plain.pt") == {} and table._awn_scales(tmp_path / "missing.pt") == {}
