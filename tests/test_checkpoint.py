"""Checkpoint formats of docs/design.md §3 and every bad input a user can hand us."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from robustadder.errors import UserError
from robustadder.models import ARCHITECTURES, create_model, load_checkpoint, save_checkpoint, weights_sha256
from robustadder.models.checkpoint import infer_arch


def save_as(obj, path: Path, *, legacy: bool = False, location: str | None = None) -> Path:
    """torch.save with the on-disk quirks of other people's files (legacy format, CUDA tags)."""
    original = torch.serialization.location_tag
    if location:
        torch.serialization.location_tag = lambda storage: location
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    finally:
        torch.serialization.location_tag = original
    return path


def random_model(name: str = "resnet20_adder", seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():  # non-trivial BN statistics so that a wrong load shows in the outputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def same_outputs(a, b):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_official_release_format_loads(tmp_path):
    """module. prefix (DataParallel), legacy serialization, tensors tagged cuda:0."""
    model = random_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = save_as(state, tmp_path / "ResNet20-AdderNet.pth", legacy=True, location="cuda:0")
    with pytest.raises(RuntimeError):  # really CUDA-tagged: a naive load fails on this machine
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert loaded.arch.name == "resnet20_adder"
    same_outputs(loaded.model, model)
    assert loaded.weights_sha256 == weights_sha256(model.state_dict())


def test_thirdparty_zip_cuda1_checkpoint_loads(thirdparty):
    loaded = load_checkpoint(thirdparty)
    assert loaded.arch.name == "resnet20_adder"
    assert sum(p.numel() for p in loaded.model.parameters()) == 272_484


def test_old_checkpoint_without_num_batches_tracked(tmp_path):
    model = random_model()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_checkpoint(save_as(state, tmp_path / "old.pth", legacy=True))
    same_outputs(loaded.model, model)


@pytest.mark.parametrize("key", ["state_dict", "model", "net"])
def test_wrapped_state_dict(tmp_path, key):
    model = random_model("resnet20_conv")
    obj = {key: model.state_dict(), "epoch": 399, "best_prec1": torch.tensor(91.2)}
    loaded = load_checkpoint(save_as(obj, tmp_path / "wrapped.pth"))
    assert loaded.arch.name == "resnet20_conv"
    same_outputs(loaded.model, model)
    assert loaded.meta["epoch"] == 399


def test_own_format_round_trip_with_metadata(tmp_path):
    model = random_model("resnet20_adder_awn")
    path = tmp_path / "own.pt"
    meta = save_checkpoint(path, model, {"dataset": "cifar10", "accuracy": 88.5, "recipe": {"epochs": 2}})
    assert meta["arch"] == "resnet20_adder_awn" and meta["variant"] == "ANN+AWN"
    assert meta["weights_sha256"] == weights_sha256(model.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["own.pt"]  # the temp file is gone
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "robustadder-checkpoint"
    loaded = load_checkpoint(path)
    assert loaded.meta["recipe"] == {"epochs": 2} and loaded.meta["accuracy"] == 88.5
    assert loaded.meta["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    same_outputs(loaded.model, model)


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, random_model())
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, random_model(seed=1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_arch_inferred_from_keys_and_shapes(name):
    state = create_model(name).state_dict()
    assert infer_arch(state, "x").name == name


def test_arch_override(tmp_path):
    model = random_model("resnet32_conv")
    path = save_as(model.state_dict(), tmp_path / "r32.pth")
    assert load_checkpoint(path, arch="resnet32_conv").arch.name == "resnet32_conv"
    with pytest.raises(UserError, match="does not fit architecture resnet20_conv"):
        load_checkpoint(path, arch="resnet20_conv")
    with pytest.raises(UserError, match="unknown architecture"):
        load_checkpoint(path, arch="vgg16")


def test_tampered_own_checkpoint_is_detected(tmp_path):
    path = tmp_path / "own.pt"
    save_checkpoint(path, random_model())
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["fc.weight"] += 1
    torch.save(raw, path)
    with pytest.raises(UserError, match="sha256"):
        load_checkpoint(path)


# -- bad inputs: one clear UserError each -----------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_pickle_with_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": _Evil()}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    # also a plain pickle (not torch.save) carrying code
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(UserError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable PyTorch checkpoint"),
        (os.urandom(4096), "not a readable PyTorch checkpoint"),
    ],
)
def test_garbage_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    torch.save(random_model().state_dict(), buf)
    path = tmp_path / "truncated.pt"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="not a file"):
        load_checkpoint(tmp_path)


def test_other_architecture(tmp_path):
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    path = save_as(mlp.state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(UserError, match="does not look like a CIFAR ResNet"):
        load_checkpoint(path)


def test_mismatched_shapes(tmp_path):
    state = random_model().state_dict()
    state["layer1.0.conv1.adder"] = torch.randn(16, 16, 5, 5)
    with pytest.raises(UserError, match="has shape"):
        load_checkpoint(save_as(state, tmp_path / "shape.pt"))


def test_missing_and_unexpected_keys(tmp_path):
    state = random_model().state_dict()
    del state["layer1.0.bn1.weight"]
    with pytest.raises(UserError, match="missing 1 keys"):
        load_checkpoint(save_as(state, tmp_path / "missing.pt"))


def test_nan_weights(tmp_path):
    state = random_model().state_dict()
    state["layer2.1.conv2.adder"][0, 0, 0, 0] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        load_checkpoint(save_as(state, tmp_path / "nan.pt"))


def test_non_tensor_entries(tmp_path):
    with pytest.raises(UserError, match="not a tensor"):
        load_checkpoint(save_as({"conv1.weight": [1, 2, 3]}, tmp_path / "list.pt"))
    with pytest.raises(UserError, match="holds no state dict"):
        load_checkpoint(save_as([torch.zeros(1)], tmp_path / "tensorlist.pt"))
