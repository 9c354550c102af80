"""Architectures (official structure and keys) and AWN."""

from __future__ import annotations

import pytest
import torch

from robustadder.models import ARCHITECTURES, CifarResNet, count_parameters, create_model
from robustadder.nn import Adder2d, AWNConv2d, adder_layers, awn_weight


def test_registry_has_twelve_variants():
    assert len(ARCHITECTURES) == 12
    assert {s.depth for s in ARCHITECTURES.values()} == {20, 32, 56}


def test_one_registry_builds_every_architecture_by_name_and_describes_it_with_one_spec():
    """Issue 38 step 2: every name is created by one function; the description of a model is one type."""
    import robustadder.models as models
    from robustadder.errors import UserError
    from robustadder.models.spec import model_kind

    assert set(ARCHITECTURES) == {n for n, a in models.REGISTRY.items() if a.cifar_resnet}  # a view, not a mirror
    for name in ("vgg_small_adder", "vgg_small_conv", "resnet20_conv_awn", "resnet18_adder_imagenet"):
        model, spec = create_model(name), models.architecture(name).spec
        assert isinstance(spec, models.ModelSpec) and spec.name == name and model_kind(model) == spec.kind
    assert isinstance(create_model("resnet20_adder").spec, models.ModelSpec)
    assert models.ArchSpec(32, "conv", True) == ARCHITECTURES["resnet32_conv_awn"]  # the deprecated name still works
    with pytest.raises(UserError, match=r"^unknown architecture .vgg_big.: choose one of resnet20_adder, .*vgg_small") as exc:
        create_model("vgg_big")
    assert "\n" not in str(exc.value)
    assert models.LAYER_KINDS == ("adder", "conv") and models.MODEL_KINDS == ("adder", "conv", "mixed")


def test_resnet20_adder_matches_official_parameter_count_and_keys():
    assert count_parameters("resnet20_adder") == 272_484  # docs/design.md §3
    keys = set(create_model("resnet20_adder").state_dict())
    for key in (
        "conv1.weight",
        "layer1.0.conv1.adder",
        "layer2.0.downsample.0.adder",
        "layer3.0.downsample.1.running_var",
        "fc.weight",
        "bn2.running_mean",
    ):
        assert key in keys
    assert not any("input_mean" in k or k.endswith(".weight") and ".conv" in k and "layer" in k for k in keys)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_variant_builds_and_runs(name):
    model = create_model(name).eval()
    spec = ARCHITECTURES[name]
    assert (len(adder_layers(model)) > 0) == (spec.kind == "adder")
    blocks = (spec.depth - 2) // 6
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == blocks
    awn_layers = [m for m in model.modules() if getattr(m, "awn_gain", None) is not None]
    assert (len(awn_layers) == 6 * blocks + 2) == spec.awn  # every block layer + 2 shortcuts
    # stem and classifier stay multiplicative and without AWN in every variant
    assert type(model.conv1) is torch.nn.Conv2d and type(model.fc) is torch.nn.Conv2d
    if spec.depth == 20:
        out = model(torch.rand(2, 3, 32, 32))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_input_normalization_lives_in_the_model():
    model = CifarResNet(20, "conv").eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    inner = model.bn2(
        model.fc(model.avgpool(model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1((x - mean) / std))))))))
    )
    torch.testing.assert_close(model(x), inner.flatten(1))
    assert "input_mean" not in model.state_dict()


def test_awn_weight_is_per_filter_standardized_and_scaled():
    w = 7 * torch.randn(6, 4, 3, 3, dtype=torch.float64) + 3
    gain = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    what = awn_weight(w, gain)
    flat = what.view(6, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(6, dtype=torch.float64))
    var = w.view(6, -1).var(1, unbiased=False)
    expected_std = gain * torch.sqrt(var / (var + 1e-5))
    torch.testing.assert_close(flat.std(1, unbiased=False), expected_std)


@pytest.mark.parametrize("layer", [Adder2d(4, 6, 3, padding=1, awn=True), AWNConv2d(4, 6, 3, padding=1, bias=False)])
def test_awn_is_used_in_forward_and_trains_gain(layer):
    raw = layer.adder if isinstance(layer, Adder2d) else layer.weight
    with torch.no_grad():
        raw.mul_(10).add_(5)  # a weight distribution AWN should neutralize
    x = torch.randn(2, 4, 6, 6)
    y = layer(x)
    # equivalent plain layer using the normalized weight gives the same output
    if isinstance(layer, Adder2d):
        plain = Adder2d(4, 6, 3, padding=1)
        plain.adder.data = awn_weight(layer.adder, layer.awn_gain).detach()
    else:
        plain = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
        plain.weight.data = awn_weight(layer.weight, layer.awn_gain).detach()
    torch.testing.assert_close(y, plain(x))
    y.sum().backward()
    assert layer.awn_gain.grad is not None and layer.awn_gain.grad.abs().sum() > 0
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    # scaling the raw weight does not change an AWN layer's output
    with torch.no_grad():
        raw.mul_(3)
    torch.testing.assert_close(layer(x), y, rtol=1e-4, atol=1e-3)
