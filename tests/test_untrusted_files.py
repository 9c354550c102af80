"""Files a user hands over, held to what they may claim: downloads and loads bounded, metadata typed, no silent
NaN, ids and image sizes checked (issue 37, classes 4-6)."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustadder.cli import main
from robustadder.errors import UserError
from robustadder.fetch import download
from robustadder.models import load_checkpoint, save_checkpoint
from robustadder.models.zoo import load_zoo

from helpers import make_tiny, save_tiny_world


def _one_line_exit_2(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output, result.output  # progress, then one line
    assert sum(line.startswith("Error") for line in lines) == 1, result.output
    return lines[-1]


# -- downloads and the zoo manifest ---------------------------------------------------------------------------------
@pytest.mark.parametrize("filename", ["../escaped.pth", "..", "sub/dir.pth"])
def test_a_manifest_filename_cannot_leave_the_weights_cache(tmp_path, filename):
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(f"[models.x]\narch = 'resnet20_adder'\nsha256 = '{'0' * 64}'\nurl = 'file:///nowhere/a.pth'\n"
                        f"filename = '{filename}'\n")  # fmt: skip
    with pytest.raises(UserError, match="plain file name"):
        load_zoo(manifest)


def test_a_url_ending_in_dotdot_cannot_name_the_cache_file(tmp_path):
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(f"[models.x]\narch = 'resnet20_adder'\nsha256 = '{'0' * 64}'\nurl = 'file:///nowhere/..'\n")
    with pytest.raises(UserError, match="plain file name"):
        load_zoo(manifest)


def test_a_download_larger_than_its_bound_is_refused_and_leaves_nothing(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (3 << 20))
    dest = tmp_path / "cache" / "w.pth"
    with pytest.raises(UserError, match="larger than the 1,048,576 bytes"):
        download(big.as_uri(), dest, digest="0" * 64, max_bytes=1 << 20)
    assert sorted(p.name for p in dest.parent.iterdir()) == []


# -- checkpoints ------------------------------------------------------------------------------------------------------
def _expanded_checkpoint(path: Path, n: int = 10**9) -> None:
    """A 1 kB zip checkpoint whose one tensor declares n values over 16 bytes (stride 0)."""
    torch.save({"w": torch.zeros(4)}, path.with_suffix(".src"))
    with zipfile.ZipFile(path.with_suffix(".src")) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                huge = b"J" + n.to_bytes(4, "little")
                assert b"K\x04\x85q\x08K\x01\x85" in data
                data = data.replace(b"K\x04\x85q\x08K\x01\x85", huge + b"\x85q\x08K\x00\x85")
            zout.writestr(info, data)


def test_a_small_checkpoint_declaring_a_huge_tensor_is_refused_before_it_is_expanded(tmp_path):
    path = tmp_path / "huge.pt"
    _expanded_checkpoint(path)
    assert path.stat().st_size < 4096
    with pytest.raises(UserError, match="declares shape"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "meta, message",
    [
        (["not", "a", "mapping"], "not a mapping"),
        ({"arch": ["resnet20_adder"]}, "'arch' is a list"),
        ({"num_classes": "ten"}, "'num_classes' is a str"),
        ({"normalization": [0.5]}, "'normalization' is a list"),
        ({"normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}}, "std"),
        ({"normalization": {"mean": [float("nan"), 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}, "mean"),
    ],
)
def test_malformed_checkpoint_metadata_is_one_line(tmp_path, meta, message):
    loaded, _ = make_tiny("conv", n=4)
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    path = tmp_path / "m.pt"
    torch.save({"format": "robustadder-checkpoint", "version": 1, "meta": meta, "state_dict": state}, path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path, arch=None)


# -- silent wrong numbers ---------------------------------------------------------------------------------------------
def test_nan_logits_fail_the_cell_instead_of_counting_as_class_0(tmp_path):
    factory = tmp_path / "nanmodel.py"
    factory.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(3 * 32 * 32, 10)\n"
        "    def forward(self, x):\n"
        "        return self.lin(x.flatten(1)) * float('nan')\n"
        "def make():\n"
        "    return M()\n"
    )
    save_tiny_world(tmp_path, n=8, ann=("adder", 0))
    labels = np.zeros(8, dtype=np.uint8)  # every label 0: argmax of NaN would score 100 %
    with np.load(tmp_path / "cifar10_test.npz") as f:
        np.savez(tmp_path / "cifar10_test.npz", x=f["x"], y=labels)
    out = _one_line_exit_2("eval", "--model", f"{factory}:make", "--n", "8", "--data", str(tmp_path),
                           "--store", str(tmp_path / "s.sqlite"))  # fmt: skip
    assert "not finite" in out
    import sqlite3

    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert [s for (s,) in conn.execute("SELECT status FROM cells")] == ["failed"]


def test_sample_ids_beyond_int64_and_array_class_counts_are_refused(tmp_path):
    _, data = make_tiny("conv", n=4)
    wide = tmp_path / "wide.npz"
    np.savez(wide, x=data.x, y=data.y, ids=np.array([2**63, 2**63 + 1, 5, 6], dtype=np.uint64))
    assert "below 2**63" in _one_line_exit_2("eval", "--model", "cnn20", "--dataset", f"npz:{wide}", "--n", "4")
    arr = tmp_path / "arr.npz"
    np.savez(arr, x=data.x, y=data.y, num_classes=np.array([10, 10]))
    assert "num_classes" in _one_line_exit_2("eval", "--model", "cnn20", "--dataset", f"npz:{arr}", "--n", "4")


def _png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with almost no image data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_image_declaring_100_megapixels_is_refused_with_one_line(tmp_path):
    folder = tmp_path / "imgs"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        (folder / c / "ok.png").write_bytes(_png(8, 8))
    (folder / "a" / "bomb.png").write_bytes(_png(10_000, 10_000))
    out = _one_line_exit_2("eval", "--model", "cnn20", "--dataset", f"imagefolder:{folder}")
    assert "megapixels" in out


# -- training --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--weight-decay", "nan"), ("--eta", "nan"), ("--eta", "inf"), ("--lr", "nan")])
def test_non_finite_hyper_parameters_are_refused(tmp_path, flag, value):
    out = _one_line_exit_2("train", "--kind", "adder", "--epochs", "1", flag, value, "--out", str(tmp_path / "m.pt"))
    assert flag in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_training_that_diverges_ends_in_one_line(tmp_path):
    save_tiny_world(tmp_path, n=16, ann=("adder", 0))
    with np.load(tmp_path / "cifar10_test.npz") as f:
        np.savez(tmp_path / "cifar10_train.npz", x=f["x"], y=f["y"])
    out = _one_line_exit_2("train", "--kind", "conv", "--epochs", "1", "--lr", "1e30", "--batch-size", "4",
                           "--data", str(tmp_path), "--out", str(tmp_path / "m.pt"))  # fmt: skip
    assert "diverged" in out
    assert not (tmp_path / "m.pt").exists()


def test_the_zoo_checkpoints_still_load(tmp_path):
    """The new metadata checks accept every checkpoint the project ships."""
    for name, entry in load_zoo().items():
        if entry.path:
            assert load_checkpoint(entry.ensure()).weights_sha256
        assert name


def test_a_saved_checkpoint_round_trips_through_the_checks(tmp_path):
    loaded, _ = make_tiny("adder", n=4)
    save_checkpoint(tmp_path / "t.pt", loaded.model)
    assert load_checkpoint(tmp_path / "t.pt").weights_sha256 == loaded.weights_sha256


USER_MODELS = '''
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.lin = torch.nn.Linear(3 * 32 * 32, 10)
    def forward(self, x):
        return self.lin(x.flatten(1))
class R(M):
    def forward(self, x):
        raise ValueError("boom")
def scripted():
    return torch.jit.script(M())
def on_meta():
    with torch.device("meta"):
        return M()
def raises():
    return R()
class P(M):
    def forward(self, x):
        return torch.softmax(self.lin(x.flatten(1)), 1)
def probabilities():
    return P()
'''


@pytest.mark.parametrize("factory, message", [("scripted", "TorchScript"), ("on_meta", "meta device"), ("raises", "boom")])
def test_user_models_that_cannot_be_evaluated_are_one_line(tmp_path, factory, message):
    (tmp_path / "user.py").write_text(USER_MODELS)
    save_tiny_world(tmp_path, n=4, ann=("adder", 0))
    out = _one_line_exit_2("eval", "--model", f"{tmp_path / 'user.py'}:{factory}", "--n", "4", "--data", str(tmp_path),
                           "--store", str(tmp_path / "s.sqlite"))  # fmt: skip
    assert message in out


def test_a_model_that_outputs_probabilities_is_evaluated_with_a_warning(tmp_path):
    (tmp_path / "user.py").write_text(USER_MODELS + "def logits():\n    return M()\n")
    save_tiny_world(tmp_path, n=4, ann=("adder", 0))

    def run(factory: str):
        return CliRunner().invoke(main, ["eval", "--model", f"{tmp_path / 'user.py'}:{factory}", "--n", "4", "--attack", "fgsm",
                                         "--data", str(tmp_path), "--store", str(tmp_path / "s.sqlite")])  # fmt: skip

    result = run("probabilities")
    assert result.exit_code == 0, result.output
    assert result.output.count("outputs probabilities") == 1  # once per model, not per cell or batch
    plain = run("logits")
    assert plain.exit_code == 0 and "outputs probabilities" not in plain.output


# -- sign-activated networks: zero gradients ---------------------------------------------------------------------------
class _SignNet(torch.nn.Module):
    """A binarized network: sign activations, so the input gradient is zero almost everywhere."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 32 * 32, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x):
        return self.fc(torch.sign(self.conv(x - 0.5)).flatten(1))


def _sign_world():
    from robustadder.data import ImageSet
    from robustadder.models import from_module

    _, data = make_tiny("conv", n=16)
    model = _SignNet().eval()
    with torch.no_grad():
        labels = model(data.tensors()[0]).argmax(1).numpy()
    return from_module(model), ImageSet(data.x, labels.astype(np.int64), data.ids, "tiny")


def test_eval_says_when_a_white_box_attack_sees_zero_gradients(tmp_path, capsys):
    from robustadder import evaluate

    loaded, data = _sign_world()
    frame = evaluate(loaded, ["fgsm", "pgd:steps=3"], data=data, store=tmp_path / "s.sqlite", progress=False)
    err = capsys.readouterr().err
    assert err.count("input gradient of model") == 1 and "zero on 100 %" in err and "robustadder check" in err
    assert frame.attrs["summary"][0]["robust_accuracy"] == 100.0  # what the warning is about: the white box is blind
    loaded_cnn, cnn_data = make_tiny("conv", n=8)
    evaluate(loaded_cnn, ["fgsm"], data=cnn_data, store=tmp_path / "t.sqlite", progress=False)
    assert "input gradient" not in capsys.readouterr().err  # a normal network: no warning


@pytest.mark.slow
def test_check_fails_a_sign_network_and_shows_the_black_box_breaking_it(tmp_path):
    from robustadder.diagnostics import run_checks

    loaded, data = _sign_world()
    report = run_checks(loaded, n=16, data=data, store=tmp_path / "s.sqlite", eps="8/255", square_queries=300, steps=5,
                        progress=False)  # fmt: skip
    verdicts = {r.name: r for r in report.results}
    assert verdicts["gradient-health"].verdict == "fail" and "zero 100.0 %" in verdicts["gradient-health"].summary
    black = verdicts["black-box"]
    assert black.verdict == "fail" and "Square" in black.summary
    assert "masking suspected" in report.verdict
