"""Any nn.Module in: official-style adder layers converted, factories, the general model description."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from robustadder import compare, evaluate
from robustadder.api import resolve_attacks
from robustadder.cli import main
from robustadder.data import ImageSet
from robustadder.engine import Settings, cell_config, has_adder_layers
from robustadder.errors import UserError
from robustadder.models import create_model, from_module, load_factory
from robustadder.models.spec import model_kind
from robustadder.nn import Adder2d, adder_settings, convert
from robustadder.sweep import load_sweep, plan_sweep

# A user's own AdderNet, written as the official release writes its layer (docs/design.md §2): parameter `adder`,
# optional bias `b` behind a boolean `bias`, int stride / padding, forward through unfold.
OFFICIAL_STYLE = textwrap.dedent(
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    def adder2d_function(X, W, stride=1, padding=0):
        n_filters, _, k, _ = W.size()
        n_x, _, h_x, w_x = X.size()
        h_out = (h_x - k + 2 * padding) // stride + 1
        w_out = (w_x - k + 2 * padding) // stride + 1
        cols = F.unfold(X, k, padding=padding, stride=stride)  # (N, C*k*k, L)
        out = -(cols.unsqueeze(1) - W.view(1, n_filters, -1, 1)).abs().sum(2)
        return out.view(n_x, n_filters, h_out, w_out)


    class adder2d(nn.Module):
        def __init__(self, input_channel, output_channel, kernel_size, stride=1, padding=0, bias=False):
            super().__init__()
            self.stride, self.padding = stride, padding
            self.input_channel, self.output_channel, self.kernel_size = input_channel, output_channel, kernel_size
            self.adder = nn.Parameter(torch.randn(output_channel, input_channel, kernel_size, kernel_size))
            self.bias = bias
            if bias:
                self.b = nn.Parameter(torch.rand(output_channel))

        def forward(self, x):
            out = adder2d_function(x, self.adder, self.stride, self.padding)
            if self.bias:
                out = out + self.b.view(1, -1, 1, 1)
            return out


    class SmallAdderNet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.block = nn.Sequential(adder2d(8, 8, 3, stride=2, padding=1, bias=True), nn.BatchNorm2d(8), nn.ReLU())
            self.down = adder2d(8, 12, 1, stride=2)
            self.bn3 = nn.BatchNorm2d(12)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(12, classes)
            self.bn_out = nn.BatchNorm1d(classes)  # as the official ResNet's BN on the logits

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn3(self.down(self.block(x))))
            return self.bn_out(self.fc(self.pool(x).flatten(1)))


    def make(classes=10):
        torch.manual_seed(0)
        model = SmallAdderNet(classes)
        model.train()
        with torch.no_grad():  # BN statistics from random images: sane eval-mode outputs
            for m in model.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.momentum = None
            for _ in range(3):
                colour = torch.rand(64, 3, 1, 1) * 0.7
                model((colour + torch.rand(64, 3, 32, 32) * 0.3 - 0.45) / 0.2)
        return model.eval()


    def make100():
        return make(100)


    def not_a_model():
        return 42
    """
)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(OFFICIAL_STYLE)
    return path


def _own(user_file):
    """The user's module, not converted (imported as a user would)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet_under_test", user_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(model: nn.Module, n: int = 24, seed: int = 0) -> ImageSet:
    """Random images labelled with the model's own predictions (clean accuracy 100 %: attacks have work)."""
    rng = np.random.default_rng(seed)  # a colour per image plus noise: predictions vary between images
    x = (rng.uniform(0, 255, (n, 1, 1, 3)) * 0.7 + rng.uniform(0, 255 * 0.3, (n, 32, 32, 3))).astype(np.uint8)
    data = ImageSet(x, np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), "random")
    with torch.no_grad():
        y = model(data.tensors()[0]).argmax(1).numpy()
    return ImageSet(x, y.astype(np.int64), data.ids, "random")


def test_convert_keeps_weights_keys_and_outputs(user_file):
    mod = _own(user_file)
    model = mod.make().double()
    keys = list(model.state_dict())
    x = torch.rand(5, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
    done = convert(model)
    assert [(c.name, c.was) for c in done] == [("block.0", "adder2d"), ("down", "adder2d")]
    assert list(model.state_dict()) == keys  # a checkpoint of the original still loads
    layers = [m for m in model.modules() if isinstance(m, Adder2d)]
    assert [(m.stride, m.padding, m.b is not None) for m in layers] == [(2, 1, True), (2, 0, False)]
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-7)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert convert(model) == []  # idempotent


def test_before_conversion_a_cnn_to_us_after_an_ann_whose_gradient_modes_differ(user_file):
    mod = _own(user_file)
    model = mod.make()
    assert not has_adder_layers(model) and model_kind(model) == "conv"
    loaded = from_module(model, normalization=(MEAN, STD))
    assert loaded.arch.kind == "adder" and loaded.arch.variant == "ANN" and loaded.arch.num_classes == 10
    assert loaded.meta["converted"] == ["block.0", "down"]
    net = loaded.model
    x = torch.rand(8, 3, 32, 32, requires_grad=True)
    y = net(x).argmax(1)
    grads = {}
    for mode in ("surrogate", "exact"):
        with adder_settings(net, grad_mode=mode):
            (grads[mode],) = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), x)
    assert (torch.sign(grads["surrogate"]) != torch.sign(grads["exact"])).float().mean() > 0.05
    data = _data(net, n=48)
    rows = {
        g: evaluate(loaded, "fgsm", eps="16/255", data=data, store=f"{user_file.parent}/s.sqlite", grad=g, progress=False)
        for g in ("surrogate", "exact")
    }
    assert not np.array_equal(rows["surrogate"]["adv_pred"].to_numpy(), rows["exact"]["adv_pred"].to_numpy())


def test_evaluate_takes_a_module_and_keys_results_on_weights_and_normalization(user_file, tmp_path):
    mod = _own(user_file)
    model = mod.make()
    probe = from_module(mod.make(), normalization="cifar10")
    data = _data(probe.model, n=16)
    store = tmp_path / "s.sqlite"
    frame = evaluate(model, ["none", "fgsm"], eps="4/255", data=data, store=store, normalization="cifar10", progress=False)
    assert frame.attrs["variant"] == "ANN" and frame.attrs["arch"] == "SmallAdderNet"
    clean = frame[frame["attack_name"] == "none"]
    assert clean["clean_correct"].all()  # same model and normalization as the labels came from
    # the normalization is part of a cell's identity; the weights hash is the module's own state dict
    other = from_module(mod.make(), normalization=None)
    assert other.weights_sha256 == probe.weights_sha256
    clean_attack = resolve_attacks("none")[0]
    c1, c2 = cell_config(probe, clean_attack, Settings(), data), cell_config(other, clean_attack, Settings(), data)
    assert c1["model"]["normalization"]["mean"] == list(MEAN) and "normalization" not in c2["model"]


def test_data_that_does_not_fit_the_model_is_one_line(user_file, tmp_path):
    mod = _own(user_file)
    data = _data(from_module(mod.make()).model, n=4)
    with pytest.raises(UserError, match=r"predicts 100 classes, but cifar10 \(random\) has 10"):
        evaluate(mod.make100(), "none", data=data, progress=False)
    small = ImageSet(np.zeros((4, 16, 16, 3), np.uint8), np.zeros(4, np.int64), np.arange(4), "small")
    with pytest.raises(UserError, match=r"takes images of shape \(3, 32, 32\), but cifar10 \(small\) has \(3, 16, 16\)"):
        evaluate(from_module(mod.make()), "none", data=small, progress=False)  # a model that states its input
    assert (
        len(evaluate(mod.make(), "none", data=small, store=tmp_path / "s.sqlite", progress=False)) == 4
    )  # a bare module: the data's shape
    with pytest.raises(UserError, match="fails on inputs of shape"):
        from_module(mod.make(), input_shape=(1, 32, 32))


class _Grouped(nn.Module):
    def __init__(self, **attrs):
        super().__init__()
        self.adder = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.stride, self.padding = 1, 1
        for k, v in attrs.items():
            setattr(self, k, v)


class MysteryAdderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3))


@pytest.mark.parametrize(
    "layer, message",
    [
        (_Grouped(groups=2), "groups=2 is not supported"),
        (_Grouped(p=2), "p=2 is not supported"),
        (_Grouped(stride=(1, 2)), r"stride=\(1, 2\)"),
        (MysteryAdderLayer(), "looks like an adder layer but has no 4-D 'adder' weight"),
    ],
)
def test_adder_layers_that_cannot_be_converted_are_one_line_errors(layer, message):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.Flatten())
    with pytest.raises(UserError, match=message) as info:
        convert(model)
    assert "'1'" in str(info.value) and "\n" not in str(info.value)
    assert model[1] is layer  # nothing replaced


def test_model_kind_of_the_registry_and_of_mixed_models():
    assert model_kind(create_model("resnet20_adder")) == "adder"
    assert model_kind(create_model("resnet20_conv_awn")) == "conv"
    mixed = nn.Sequential(nn.Conv2d(3, 4, 3), Adder2d(4, 4, 3), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    assert model_kind(mixed) == "mixed"
    assert from_module(create_model("resnet20_adder_awn"), normalization="cifar10").arch.variant == "ANN+AWN"


def _write_data(folder, model: nn.Module, n: int = 12):
    data = _data(model, n=n)
    folder.mkdir(exist_ok=True)
    np.savez(folder / "cifar10_test.npz", x=data.x, y=data.y)
    return folder


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_factory_with_weights_and_normalization(user_file, tmp_path):
    mod = _own(user_file)
    trained = mod.make()
    with torch.no_grad():
        trained.fc.weight.mul_(-1.0)  # weights that differ from the factory's own
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, tmp_path / "w.pt")
    reference = from_module(trained, normalization="cifar10")
    data = _write_data(tmp_path / "data", reference.model)
    store = tmp_path / "s.sqlite"
    code, out, err = run("eval", "--model", f"{user_file}:make", "--weights", tmp_path / "w.pt", "--normalization", "cifar10",
                         "--attack", "none", "--data", data, "--store", store, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["clean_accuracy"] == 100.0 and result["variant"] == "ANN" and result["model"] == "w"
    assert result["weights_sha256"] == reference.weights_sha256 and result["converted_layers"] == ["block.0", "down"]
    assert "converted 2 adder layer(s) (adder2d)" in err
    code, out, err = run("eval", "--model", f"{user_file}:make", "--attack", "none", "--data", data, "--store", store, "--json")
    assert code == 0 and json.loads(out)["clean_accuracy"] < 100.0  # factory weights, no normalization: another model


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{file}:nope"], "mynet.py has no callable 'nope'"),
        (["--model", "{file}:not_a_model"], "returned int, not an nn.Module"),
        (["--model", "{dir}/missing.py:make"], "model file not found"),
        (["--model", "{file}:make", "--weights", "{dir}/bad.pt"], "does not fit mynet.py:make"),
        (["--model", "{file}:make100"], "predicts 100 classes"),
        (["--model", "{file}:make", "--normalization", "cifar11"], "unknown normalization 'cifar11'"),
        (["--model", "no_such_package_xyz:make"], "cannot import module 'no_such_package_xyz'"),
    ],
)
def test_cli_factory_errors_are_one_line(user_file, tmp_path, args, message):
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    data = _write_data(tmp_path / "data", from_module(_own(user_file).make()).model, n=4)
    store = tmp_path / "s.sqlite"
    args = [a.format(file=user_file, dir=tmp_path) for a in args]
    code, out, err = run("eval", *args, "--data", data, "--store", store)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not store.exists()


def test_compare_and_sweep_take_factories(user_file, tmp_path):
    mod = _own(user_file)
    first = from_module(mod.make(), normalization="cifar10", name="A")
    second = mod.make()
    with torch.no_grad():
        second.fc.weight.mul_(0.5)
    data = _data(first.model, n=12)
    table = compare([first, from_module(second, normalization="cifar10", name="B")], eps=["4/255"], attacks=["fgsm"],
                    data=data, n=None, store=tmp_path / "s.sqlite", progress=False)  # fmt: skip
    assert list(table["model"]) == ["A", "B"] and table["clean_accuracy"].iloc[0] == 100.0
    torch.save(second.state_dict(), tmp_path / "half.pt")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(textwrap.dedent(f'''
        name = "own"
        n = 12
        models = [{{ref = "mynet.py:make", weights = "half.pt", normalization = "cifar10", label = "half"}},
                  "{user_file.name}:make"]
        [[attacks]]
        name = "none"
    '''))  # fmt: skip
    config = load_sweep(sweep)
    assert [m.label for m in config.models] == ["half", "make"]
    plan = plan_sweep(config, data=data)
    assert not plan.skipped and plan.models["half"].weights_sha256 == from_module(second).weights_sha256
    assert plan.models["half"].meta["input_normalization"]["mean"] == list(MEAN)
    sweep.write_text('models = [{ref = "ann20", weights = "half.pt"}]\n[[attacks]]\nname = "none"\n')
    with pytest.raises(UserError, match="apply to a factory"):
        load_sweep(sweep)


def test_factory_from_an_installed_module(tmp_path, monkeypatch, user_file):
    pkg = tmp_path / "site" / "usernets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "small.py").write_text(OFFICIAL_STYLE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    loaded = load_factory("usernets.small:make", normalization="cifar10")
    assert loaded.arch.name == "usernets.small:make" and loaded.meta["converted"] == ["block.0", "down"]


def test_cli_compare_a_factory_with_a_zoo_model(user_file, tmp_path):
    data = _write_data(tmp_path / "data", from_module(_own(user_file).make(), normalization="cifar10").model, n=6)
    code, out, err = run("compare", f"{user_file}:make", "cnn20", "--normalization", "cifar10", "--attack", "fgsm",
                         "--eps", "4/255", "--n", 6, "--data", data, "--store", tmp_path / "s.sqlite", "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["models"]
    assert {r["model"] for r in rows} == {"make", "cnn20"}
    assert "make: converted 2 adder layer(s)" in err


# -- the architecture registry ----------------------------------------------------------------------------
def test_registry_holds_every_architecture_with_its_description():
    from robustadder.models.registry import REGISTRY, register_model

    assert {f"resnet{d}_{k}{a}" for d in (20, 32, 56) for k in ("adder", "conv") for a in ("", "_awn")} <= set(REGISTRY)
    assert {"vgg_small_adder", "vgg_small_conv", "resnet18_adder_imagenet", "resnet50_adder_imagenet"} <= set(REGISTRY)
    r50 = REGISTRY["resnet50_adder_imagenet"]
    assert (r50.num_classes, r50.input_shape, r50.kind) == (1000, (3, 224, 224), "adder")
    assert model_kind(r50.factory()) == "adder" and model_kind(REGISTRY["vgg_small_adder"].factory()) == "adder"
    with pytest.raises(ValueError, match="registered twice"):
        register_model("vgg_small_adder", family="x", kind="adder")(lambda: None)


def test_official_imagenet_resnet50_checkpoint_loads_by_path(tmp_path):
    """The official release's layout: DataParallel 'module.' keys, legacy serialization, official key names."""
    from robustadder.models import load_checkpoint
    from robustadder.models.registry import REGISTRY

    torch.manual_seed(0)
    net = REGISTRY["resnet50_adder_imagenet"].factory().eval()
    state = net.state_dict()
    official_keys = ["conv1.weight", "layer1.0.conv1.adder", "layer1.0.conv3.adder", "layer1.0.downsample.0.adder",
                     "layer4.2.conv3.adder", "layer3.5.bn3.running_var", "fc.weight", "fc.bias", "bn2.running_mean"]  # fmt: skip
    assert set(official_keys) <= set(state) and len([k for k in state if k.endswith(".adder")]) == 52
    path = tmp_path / "ResNet50-AdderNet.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path)
    assert loaded.arch.name == "resnet50_adder_imagenet" and loaded.arch.family == "resnet50_imagenet"
    assert (loaded.arch.num_classes, loaded.model.input_shape, loaded.arch.variant) == (1000, (3, 224, 224), "ANN")
    x = torch.rand(1, 3, 64, 64)  # adaptive pooling: a small image keeps the test fast
    mean, std = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net((x - mean) / std), rtol=1e-5, atol=1e-4)
    # CIFAR images do not fit an ImageNet model: one line before any work
    cifar = ImageSet(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64), np.arange(2), "cifar")
    with pytest.raises(UserError, match=r"takes images of shape \(3, 224, 224\)"):
        evaluate(loaded, "none", data=cifar, progress=False)


def test_registry_names_with_weights_and_errors(tmp_path):
    from robustadder.models import resolve_model
    from robustadder.models.registry import REGISTRY

    net = REGISTRY["vgg_small_adder"].factory(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "vgg.pt")
    loaded = resolve_model("vgg_small_adder", weights=tmp_path / "vgg.pt")
    assert loaded.arch.name == "vgg_small_adder" and loaded.arch.kind == "adder" and loaded.arch.num_classes == 10
    assert load_checkpoint_arch(tmp_path / "vgg.pt") == "vgg_small_adder"  # inferred from the keys alone
    with pytest.raises(UserError, match="needs its trained weights"):
        resolve_model("vgg_small_adder")
    with pytest.raises(UserError, match="does not fit architecture resnet18_adder_imagenet"):
        resolve_model("resnet18_adder_imagenet", weights=tmp_path / "vgg.pt")


def load_checkpoint_arch(path):
    from robustadder.models import load_checkpoint

    return load_checkpoint(path).arch.name


def test_evaluating_a_module_leaves_the_callers_object_untouched(user_file):
    mod = _own(user_file)
    model = mod.make().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data(from_module(mod.make()).model, n=4)
    evaluate(model, ["none", "fgsm"], eps="2/255", data=data, store=str(user_file.parent / "s.sqlite"), progress=False)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert type(model.block[0]).__name__ == "adder2d"  # not converted under the caller's feet
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_user_code_that_fails_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    (tmp_path / "raising.py").write_text("def make():\n    raise RuntimeError('no GPU here\\nsecond line')\n")
    with pytest.raises(UserError, match=r"^importing broken.py failed: ZeroDivisionError: division by zero$"):
        load_factory(f"{tmp_path}/broken.py:make")
    with pytest.raises(UserError, match=r"^raising.py:make\(\) failed: RuntimeError: no GPU here$"):
        load_factory(f"{tmp_path}/raising.py:make")


def test_containers_named_adder_are_not_layers():
    class AdderBlock(nn.Module):  # a user's block: 'adder' in the name, adder layers inside, no weight of its own
        def __init__(self):
            super().__init__()
            self.conv = _Grouped()
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x))

    model = nn.Sequential(nn.Conv2d(3, 2, 3), AdderBlock())
    assert [c.name for c in convert(model)] == ["1.conv"]
    assert isinstance(model[1].conv, Adder2d)
