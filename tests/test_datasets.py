"""The dataset registry: CIFAR-100, SVHN, image folders and npz files in their real formats (written here,
no downloads), stable ids, models that do not fit, and --dataset through eval / compare / check / sweep /
train."""

from __future__ import annotations

import hashlib
import json
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from PIL import Image

from robustadder.api import evaluate
from robustadder.cli import main
from robustadder.data import (
    DATASETS,
    ImageSet,
    dataset_ref,
    download_cifar100,
    download_svhn,
    load_dataset,
    open_dataset,
)
from robustadder.errors import UserError
from robustadder.models import CifarResNet, from_module, load_checkpoint, save_checkpoint

from helpers import tree


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# -- writers of the official formats ---------------------------------------------------------------------
def images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def write_cifar100(root, x_test, y_test, x_train, y_train):
    """``cifar-100-python/{train,test,meta}`` as the release pickles them (protocol 2, bytes keys)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)

    def dump(name, x, y):
        batch = {
            b"filenames": [b"x.png"] * len(x),
            b"batch_label": name.encode(),
            b"fine_labels": [int(v) for v in y],
            b"coarse_labels": [int(v) // 5 for v in y],
            b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))

    dump("test", x_test, y_test)
    dump("train", x_train, y_train)
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"c%d" % i for i in range(100)]}, protocol=2))
    return folder


def write_svhn(path, x, digits):
    """``test_32x32.mat`` as the release stores it: X (32, 32, 3, N) uint8, y (N, 1) with digit 0 as 10."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    savemat(path, {"X": x.transpose(1, 2, 3, 0), "y": y})


def write_folder(root, counts: dict[str, int], size=(40, 30), mode="RGB", seed=0):
    """Class sub-folders of PNG images; returns {class: [files in sorted order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for cls, count in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        written[cls] = []
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            path = root / cls / f"img{i:02d}.png"
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
            written[cls].append(path)
    return written


class Tiny(nn.Module):
    """A small conv net for any input size and class count (global pooling)."""

    def __init__(self, classes: int = 10, channels: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


# a user's model file: Tiny's architecture; make_neg loads the b.pt beside the file
TINY_PY = """
import torch, torch.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def make():
    return Tiny()


def make_neg():
    model = Tiny()
    model.load_state_dict(torch.load(__file__[:-7] + "b.pt", weights_only=True))
    return model
"""


# -- the registered datasets --------------------------------------------------------------------------------
def test_registry_lists_each_dataset_with_classes_shape_and_statistics():
    assert {"cifar10", "cifar100", "svhn"} <= set(DATASETS)
    assert DATASETS["cifar100"].num_classes == 100 and DATASETS["cifar100"].input_shape == (3, 32, 32)
    assert DATASETS["svhn"].num_classes == 10 and DATASETS["svhn"].flip is False
    for d in DATASETS.values():
        mean, std = d.normalization
        assert len(mean) == len(std) == 3 and all(0 < v < 1 for v in (*mean, *std))
    assert open_dataset(None).name == "cifar10" and open_dataset("CIFAR100").name == "cifar100"
    code, out, err = run("data", "list")
    assert code == 0, err
    assert all(name in out for name in ("cifar10", "cifar100", "svhn", "imagefolder:PATH", "npz:PATH"))


def test_cifar100_official_python_format_and_npz_agree(tmp_path):
    x, y = images(12), np.arange(12) * 8 % 100
    write_cifar100(tmp_path / "py", x, y, images(6, seed=1), np.arange(6))
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "cifar100_test.npz", x=x, y=y.astype(np.uint8))
    a, b = load_dataset("cifar100", "test", tmp_path / "py"), load_dataset("cifar100", "test", tmp_path / "npz")
    c = load_dataset("cifar100", "test", tmp_path / "py" / "cifar-100-python")  # the release folder itself
    for got in (a, b, c):
        np.testing.assert_array_equal(got.x, x)
        assert got.y.tolist() == y.tolist() and got.ids.tolist() == list(range(12))  # fine labels, release order
        assert got.num_classes == 100 and got.dataset == "cifar100"
    assert len(load_dataset("cifar100", "train", tmp_path / "py")) == 6
    assert load_dataset("cifar100", "test", tmp_path / "py", n=5).ids.tolist() == [0, 1, 2, 3, 4]


def test_cifar100_refuses_doctored_pickles_and_bad_labels(tmp_path):
    folder = write_cifar100(tmp_path, images(4), np.arange(4), images(2), np.arange(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UserError, match="refusing to load global .*print"):
        load_dataset("cifar100", "test", tmp_path)
    (tmp_path / "n").mkdir()
    np.savez(tmp_path / "n" / "cifar100_test.npz", x=images(3), y=np.array([0, 5, 100]))
    with pytest.raises(UserError, match=r"labels out of range 0\.\.99"):
        load_dataset("cifar100", "test", tmp_path / "n")


def test_svhn_official_mat_maps_label_10_to_digit_0(tmp_path):
    x, digits = images(10, seed=3), np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", x, digits)
    got = load_dataset("svhn", "test", tmp_path)
    np.testing.assert_array_equal(got.x, x)  # (32, 32, 3, N) → (N, 32, 32, 3), pixel for pixel
    assert got.y.tolist() == digits.tolist() and got.ids.tolist() == list(range(10)) and got.dataset == "svhn"
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="not a readable SVHN .mat file"):
        load_dataset("svhn", "test", tmp_path)
    with pytest.raises(UserError, match="no SVHN train data.*data download --dataset svhn"):
        load_dataset("svhn", "train", tmp_path)


def test_downloads_check_md5_before_anything_is_kept(tmp_path):
    staging = tmp_path / "staging"
    write_cifar100(staging, images(3), np.arange(3), images(2), np.arange(2))
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-100-python", arcname="cifar-100-python")
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="expected"):
        download_cifar100(dest, url=archive.as_uri(), md5="0" * 32)
    assert tree(dest) == []
    download_cifar100(dest, url=archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest())
    assert len(load_dataset("cifar100", "test", dest)) == 3

    write_svhn(tmp_path / "mirror" / "test_32x32.mat", images(4), np.arange(4))
    url = (tmp_path / "mirror").as_uri() + "/{name}"
    with pytest.raises(UserError, match="expected"):
        download_svhn(tmp_path / "d2", ["test"], url=url, md5={"test": "0" * 32})
    assert not (tmp_path / "d2" / "svhn" / "test_32x32.mat").exists()
    md5 = hashlib.md5((tmp_path / "mirror" / "test_32x32.mat").read_bytes()).hexdigest()
    download_svhn(tmp_path / "d2", ["test"], url=url, md5={"test": md5})
    assert load_dataset("svhn", "test", tmp_path / "d2").y.tolist() == [0, 1, 2, 3]
    code, _out, err = run("data", "download", "--dataset", "npz:x.npz")
    one_line_error(code, err, "npz: x.npz not found")


# -- image folders ------------------------------------------------------------------------------------------
def test_image_folder_classes_ids_and_class_balanced_order(tmp_path):
    files = write_folder(tmp_path / "val", {"zebra": 2, "ant": 3, "moth": 1})
    ds = open_dataset(f"imagefolder:{tmp_path / 'val'}")
    assert ds.num_classes == 3 and ds.input_shape is None and ds.name == "imagefolder:val"
    got = ds.load("test", image_shape=(3, 16, 16))
    # classes are the sorted folder names; ids the position in (class, file) order; the order round-robin
    assert got.y.tolist() == [0, 1, 2, 0, 2, 0]  # ant, moth, zebra, ant, zebra, ant
    assert got.ids.tolist() == [0, 3, 4, 1, 5, 2]
    assert got.x.shape == (6, 16, 16, 3) and got.num_classes == 3
    first = ds.load("test", image_shape=(3, 16, 16), n=3)
    assert sorted(first.y.tolist()) == [0, 1, 2]  # the first n cover the classes
    np.testing.assert_array_equal(first.x, got.x[:3])  # the same images, whatever n
    assert files["ant"][0].name == "img00.png"
    with pytest.raises(UserError, match="exceeds the 6 samples"):
        ds.load("test", image_shape=(3, 16, 16), n=7)


def test_image_folder_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    # 64 x 32 image: the left and right quarters blue, the middle red; crop 16 → shorter side 18 (16 / 0.875)
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, :16] = (0, 0, 255)
    arr[:, 48:] = (0, 0, 255)
    arr[:, 16:48] = (255, 0, 0)
    (tmp_path / "a").mkdir()
    Image.fromarray(arr).save(tmp_path / "a" / "wide.png")
    Image.fromarray(arr).convert("L").save(tmp_path / "a" / "gray.png")
    ds = open_dataset(f"imagefolder:{tmp_path}")
    got = ds.load("test", image_shape=(3, 16, 16))
    assert got.x.shape == (2, 16, 16, 3)
    wide = got.x[got.ids.tolist().index(1)]
    # resized to 36 x 18, the centre 16 x 16 are columns 10..25 of 36: all of them inside the red middle
    assert (wide[..., 0] > 200).all() and (wide[..., 2] < 60).all()
    gray = ds.load("test", image_shape=(1, 16, 16))
    assert gray.x.shape == (2, 16, 16, 1)


def test_image_folder_train_and_val_layout_and_errors(tmp_path):
    write_folder(tmp_path / "ds" / "train", {"a": 2, "b": 2})
    write_folder(tmp_path / "ds" / "val", {"a": 1, "b": 1}, seed=1)
    ds = open_dataset(f"imagefolder:{tmp_path / 'ds'}")
    assert len(ds.load("train", image_shape=(3, 8, 8))) == 4 and len(ds.load("test", image_shape=(3, 8, 8))) == 2
    (tmp_path / "ds" / "val" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="broken.png: not a readable image"):
        ds.load("test", image_shape=(3, 8, 8))
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="no class sub-folders"):
        open_dataset(f"imagefolder:{tmp_path / 'flat'}")
    with pytest.raises(UserError, match="is not a directory"):
        open_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="needs a path"):
        open_dataset("imagefolder:")
    with pytest.raises(UserError, match="unknown dataset 'cifar11'.*cifar100.*imagefolder:PATH"):
        open_dataset("cifar11")


# -- npz files ------------------------------------------------------------------------------------------------
def test_npz_file_with_ids_classes_and_grayscale(tmp_path):
    x = images(5)[..., 0]  # (N, H, W): one channel
    np.savez(tmp_path / "g.npz", x=x, y=np.array([0, 1, 2, 1, 0]), ids=np.array([50, 10, 20, 30, 40]), num_classes=np.array(7))
    ds = open_dataset(f"npz:{tmp_path / 'g.npz'}")
    assert ds.input_shape == (1, 32, 32) and ds.num_classes == 7 and ds.splits == ("test",)
    got = ds.load()
    assert got.x.shape == (5, 32, 32, 1) and got.ids.tolist() == [50, 10, 20, 30, 40] and got.num_classes == 7
    np.savez(tmp_path / "dup.npz", x=images(2), y=np.array([0, 1]), ids=np.array([3, 3]))
    with pytest.raises(UserError, match="'ids' must be 2 distinct non-negative integers"):
        load_dataset(f"npz:{tmp_path / 'dup.npz'}")
    np.savez(tmp_path / "f.npz", x=images(2).astype(np.float32), y=np.array([0, 1]))
    with pytest.raises(UserError, match="images must be uint8"):
        load_dataset(f"npz:{tmp_path / 'f.npz'}")
    with pytest.raises(UserError, match="has no train split"):
        load_dataset(f"npz:{tmp_path / 'g.npz'}", "train")


def test_model_that_does_not_fit_the_dataset_is_one_line(tmp_path):
    np.savez(tmp_path / "c100.npz", x=images(4), y=np.array([0, 1, 2, 3]), num_classes=np.array(100))
    with pytest.raises(UserError, match=r"predicts 10 classes, but npz:c100.npz \(c100.npz\) has 100"):
        evaluate(Tiny(10), "none", dataset=f"npz:{tmp_path / 'c100.npz'}", progress=False, store=tmp_path / "s.sqlite")
    np.savez(tmp_path / "labels.npz", x=images(3), y=np.array([0, 1, 12]))  # no num_classes: labels are checked
    with pytest.raises(UserError, match="has labels up to 12"):
        evaluate(Tiny(10), "none", dataset=f"npz:{tmp_path / 'labels.npz'}", progress=False, store=tmp_path / "s.sqlite")
    np.savez(tmp_path / "small.npz", x=images(3, size=16), y=np.array([0, 1, 2]))
    with pytest.raises(UserError, match=r"takes images of shape \(3, 32, 32\), but npz:small.npz"):
        evaluate(from_module(Tiny(10)), "none", dataset=f"npz:{tmp_path / 'small.npz'}", progress=False)
    assert not (tmp_path / "s.sqlite").exists()


# -- through the entry points ------------------------------------------------------------------------------
def _labelled(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()


def test_evaluate_a_module_on_an_image_folder_at_its_input_size(tmp_path, monkeypatch):
    from robustadder.data import SCHEMES

    write_folder(tmp_path / "imgs", {f"c{i}": 2 for i in range(4)}, size=(50, 40))
    store = tmp_path / "s.sqlite"
    opened = []
    reader = SCHEMES["imagefolder"]
    monkeypatch.setitem(SCHEMES, "imagefolder", lambda path: opened.append(path) or reader(path))
    frame = evaluate(Tiny(4), ["none", "fgsm"], eps=2 / 255, dataset=f"imagefolder:{tmp_path / 'imgs'}", store=store,
                     progress=False)  # fmt: skip
    assert frame.attrs["dataset"] == "imagefolder:imgs" and frame["sample_id"].nunique() == 8
    assert len(opened) == 1  # the folder is read once per command (input shape and images)
    again = evaluate(Tiny(4), ["none", "fgsm"], eps=2 / 255, dataset=f"imagefolder:{tmp_path / 'imgs'}", store=store,
                     progress=False)  # fmt: skip
    assert all(s["reused"] for s in again.attrs["summary"])  # same images, same cells
    # a module that states no input shape is read at 224 x 224 from an image folder
    shapes = []
    probe = Tiny(4)
    probe.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape[1:])))
    evaluate(probe, "none", dataset=f"imagefolder:{tmp_path / 'imgs'}", n=2, store=store, progress=False)
    assert (3, 224, 224) in shapes


def test_cell_identity_is_the_samples_not_the_dataset_name(tmp_path):
    x = images(6)
    model = Tiny(10)
    y = _labelled(model, x)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x, y=y)
    np.savez(tmp_path / "c.npz", x=x[::-1].copy(), y=y[::-1].copy())
    store = tmp_path / "s.sqlite"
    ids = [evaluate(model, "none", dataset=f"npz:{tmp_path / f'{k}.npz'}", store=store, progress=False).attrs["summary"][0]
           for k in "abc"]  # fmt: skip
    assert ids[0]["cell_id"] == ids[1]["cell_id"] and ids[1]["reused"]  # same images under another name
    assert ids[2]["cell_id"] != ids[0]["cell_id"]


def test_checkpoint_trained_on_cifar100_evaluates_on_cifar100_by_default(tmp_path):
    torch.manual_seed(0)
    model = CifarResNet(8, "conv", num_classes=100).eval()
    save_checkpoint(tmp_path / "c100.pt", model, {"dataset": "cifar100"})
    x = images(6)
    np.savez(tmp_path / "cifar100_test.npz", x=x, y=_labelled(model, x))
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=np.zeros(6, np.uint8))
    code, out, err = run("eval", "--model", tmp_path / "c100.pt", "--data", tmp_path, "--store", tmp_path / "s.sqlite", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"] == "cifar100" and result["clean_accuracy"] == 100.0
    code, _out, err = run("eval", "--model", tmp_path / "c100.pt", "--dataset", "cifar10", "--data", tmp_path)
    one_line_error(code, err, "predicts 100 classes, but cifar10")


def test_cli_dataset_on_eval_compare_and_check(tmp_path):
    x = images(8, seed=5)
    a, b = Tiny(10), Tiny(10)
    with torch.no_grad():
        b.fc.weight.mul_(-1)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    (tmp_path / "tiny.py").write_text(TINY_PY)
    np.savez(tmp_path / "mine.npz", x=x, y=_labelled(a, x), num_classes=np.array(10))
    ds, store = f"npz:{tmp_path / 'mine.npz'}", tmp_path / "s.sqlite"
    code, out, err = run("eval", "--model", f"{tmp_path / 'tiny.py'}:make", "--weights", tmp_path / "a.pt", "--dataset", ds,
                         "--store", store, "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["clean_accuracy"] == 100.0 and json.loads(out)["dataset"] == "npz:mine.npz"
    code, out, err = run("eval", "--model", f"{tmp_path / 'tiny.py'}:make", "--weights", tmp_path / "a.pt", "--dataset", ds,
                         "--store", store)  # fmt: skip
    assert code == 0 and "8 npz:mine.npz test images" in out, err
    code, out, err = run("compare", f"{tmp_path / 'tiny.py'}:make", f"{tmp_path / 'tiny.py'}:make_neg", "--label", "A", "--label",
                         "B", "--dataset", ds, "--eps", "1/255", "--attack", "fgsm", "--n", "8", "--store", store)  # fmt: skip
    assert code == 0 and "first 8 npz:mine.npz test images" in out, err
    code, out, err = run("check", "--model", f"{tmp_path / 'tiny.py'}:make", "--weights", tmp_path / "a.pt", "--dataset", ds,
                         "--n", "8", "--eps", "2/255", "--steps", "2", "--queries", "5", "--store", store, "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["n"] == 8
    code, _out, err = run("eval", "--model", f"{tmp_path / 'tiny.py'}:make", "--dataset", "svhn", "--data", tmp_path / "none")
    one_line_error(code, err, "data directory not found")


def test_sweep_file_dataset_relative_to_the_file_and_overridden_on_the_command_line(tmp_path):
    model = Tiny(10)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    (tmp_path / "tiny.py").write_text(TINY_PY)
    x1, x2 = images(4, seed=1), images(6, seed=2)
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "one.npz", x=x1, y=_labelled(model, x1))
    np.savez(tmp_path / "two.npz", x=x2, y=_labelled(model, x2))
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'name = "ds"\ndataset = "npz:sub/one.npz"\nmodels = [{ref = "tiny.py:make", weights = "w.pt", label = "T"}]\n'
        '[[attacks]]\nname = "none"\n'
    )
    from robustadder.sweep import load_sweep, plan_sweep

    cfg = load_sweep(sweep)
    assert cfg.dataset == f"npz:{tmp_path / 'sub' / 'one.npz'}"
    assert len(plan_sweep(cfg).data) == 4
    assert len(plan_sweep(cfg, dataset=f"npz:{tmp_path / 'two.npz'}").data) == 6
    code, out, err = run("sweep", sweep, "--store", tmp_path / "st.sqlite", "--dataset", f"npz:{tmp_path / 'two.npz'}")
    assert code == 0 and "on 6 npz:two.npz images" in out, err
    code, out, err = run("report", "--sweep", sweep, "--store", tmp_path / "st.sqlite", "--format", "md")
    assert code == 0 and "the first 6 npz:two.npz test images (ids 0..5, dataset order)" in out, err
    bad = tmp_path / "bad.toml"
    bad.write_text('dataset = "mnist"\nmodels = ["x"]\n[[attacks]]\nname = "none"\n')
    code, _out, err = run("sweep", bad, "--dry-run")
    one_line_error(code, err, "unknown dataset 'mnist'")
    assert dataset_ref("SVHN") == "svhn"


def test_train_on_svhn_and_on_an_npz_without_statistics(tmp_path):
    digits = np.arange(10)
    write_svhn(tmp_path / "svhn" / "train_32x32.mat", images(10, seed=1), digits)
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", images(10, seed=2), digits)
    code, out, err = run(
        "train",
        "--arch",
        "resnet20",
        "--kind",
        "conv",
        "--epochs",
        "1",
        "--batch-size",
        "5",
        "--dataset",
        "svhn",
        "--data",
        tmp_path,
        "--out",
        tmp_path / "svhn.pt",
    )
    assert code == 0, err
    loaded = load_checkpoint(tmp_path / "svhn.pt")
    assert loaded.meta["dataset"] == "svhn" and loaded.meta["recipe"]["flip"] is False
    assert loaded.meta["normalization"]["mean"] == pytest.approx(list(DATASETS["svhn"].normalization[0]))

    (tmp_path / "mine").mkdir()
    xs = images(8, seed=4)
    xs[..., 1] = 0  # a dark green channel: the statistics are the data's own
    np.savez(tmp_path / "mine" / "train.npz", x=xs, y=np.arange(8) % 3)
    np.savez(tmp_path / "mine" / "test.npz", x=xs[:4], y=np.arange(4) % 3)
    code, out, err = run(
        "train",
        "--kind",
        "adder",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--dataset",
        f"npz:{tmp_path / 'mine'}",
        "--out",
        tmp_path / "mine.pt",
    )
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "mine.pt").meta
    assert meta["dataset"] == "npz:mine" and meta["num_classes"] == 3 and str(tmp_path) not in json.dumps(meta)
    assert meta["normalization"]["mean"][1] == 0.0 and meta["normalization"]["mean"][0] == pytest.approx(xs[..., 0].mean() / 255)
    code, _out, err = run(
        "train", "--kind", "conv", "--epochs", "1", "--dataset", f"imagefolder:{tmp_path}", "--out", tmp_path / "x.pt"
    )
    one_line_error(code, err, "has no train/ folder")


def test_an_imageset_passed_in_and_a_dataset_that_disagrees(tmp_path):
    data = ImageSet(images(2), np.array([0, 1]), np.arange(2), "mine", 10, "cifar10")
    with pytest.raises(UserError, match="data is cifar10 but dataset is svhn"):
        evaluate(Tiny(10), "none", data=data, dataset="svhn", progress=False, store=tmp_path / "s.sqlite")
