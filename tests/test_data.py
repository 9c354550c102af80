"""CIFAR-10 loading: npz, the official python format, checked download, and bad data."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from robustadder.data import download_cifar10, load_cifar10, resolve_data_dir, to_tensor
from robustadder.errors import UserError

from helpers import tree


def fake_cifar(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_python_batches(root, x, y, train_per_batch: int = 4):
    """The official layout: pickled dicts with 'data' (N, 3072) channel-major rows and 'labels'."""
    root.mkdir(parents=True, exist_ok=True)

    def dump(name, xs, ys):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in ys],
            b"data": xs.transpose(0, 3, 1, 2).reshape(len(xs), -1),
            b"filenames": [b"x.png"] * len(xs),
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))

    dump("test_batch", x, y)
    for i in range(1, 6):
        dump(f"data_batch_{i}", x[:train_per_batch], y[:train_per_batch])


def test_shared_npz_is_cifar10(shared_data):
    test = load_cifar10("test", shared_data)
    assert len(test) == 10_000 and test.x.shape == (10_000, 32, 32, 3)
    assert test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # docs/design.md §7 / data README
    assert test.ids.tolist() == list(range(10_000))
    assert np.bincount(test.y).tolist() == [1000] * 10


def test_npz_and_python_format_agree(tmp_path):
    x, y = fake_cifar(12)
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "cifar10_test.npz", x=x, y=y)
    write_python_batches(tmp_path / "py" / "cifar-10-batches-py", x, y)
    a = load_cifar10("test", tmp_path / "npz")
    b = load_cifar10("test", tmp_path / "py")
    c = load_cifar10("test", tmp_path / "py" / "cifar-10-batches-py")  # the batches dir itself
    for other in (b, c):
        np.testing.assert_array_equal(a.x, other.x)
        np.testing.assert_array_equal(a.y, other.y)
    assert len(load_cifar10("train", tmp_path / "py")) == 20


def test_first_n_keeps_original_order_and_ids(tmp_path):
    x, y = fake_cifar(12)
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=y)
    sub = load_cifar10("test", tmp_path).first(5)
    assert sub.ids.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(sub.x, x[:5])
    with pytest.raises(UserError, match="exceeds"):
        load_cifar10("test", tmp_path).first(13)
    with pytest.raises(UserError, match="at least 1"):
        load_cifar10("test", tmp_path).first(0)


def test_to_tensor_scales_to_unit_interval():
    x = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    x[0, 1, 2, 0] = 255
    t = to_tensor(x)
    assert t.shape == (1, 3, 32, 32) and t.dtype == torch.float32
    assert t[0, 0, 1, 2] == 1.0 and t.sum() == 1.0


def test_data_dir_resolution(tmp_path, monkeypatch, isolated_home):
    assert resolve_data_dir() == isolated_home / "data"
    monkeypatch.setenv("ROBUSTADDER_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_download_checks_md5_and_unpacks(tmp_path, isolated_home):
    x, y = fake_cifar(6)
    staging = tmp_path / "staging"
    write_python_batches(staging / "cifar-10-batches-py", x, y)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    dest = tmp_path / "dest"

    with pytest.raises(UserError, match="expected"):
        download_cifar10(dest, url=archive.as_uri(), md5="0" * 32)
    assert tree(dest) == []  # nothing half-written

    download_cifar10(dest, url=archive.as_uri(), md5=md5)
    np.testing.assert_array_equal(load_cifar10("test", dest).x, x)
    assert tree(dest) == sorted(
        ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{n}" for n in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]]
    )


def test_download_refuses_unsafe_archive_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        data = b"x"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(UserError):
        download_cifar10(tmp_path / "dest", url=archive.as_uri(), md5=md5)
    assert not (tmp_path / "escaped").exists()


def test_unreachable_download(tmp_path):
    with pytest.raises(UserError, match="could not download"):
        download_cifar10(tmp_path / "d", url=(tmp_path / "missing.tar.gz").as_uri(), md5="0" * 32)


# -- bad data ---------------------------------------------------------------------------------------
def test_missing_data_directory(tmp_path):
    with pytest.raises(UserError, match="data directory not found.*--data"):
        load_cifar10("test", tmp_path / "nowhere")
    with pytest.raises(UserError, match="no CIFAR-10 test data"):
        load_cifar10("test", tmp_path)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.uint8), "must be uint8 \\(N, 32, 32, 3\\)"),
        (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.uint8), "must be uint8"),
        (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, np.uint8), "labels must be"),
        (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 10, 2]), "out of range"),
        (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, -1, 1, 2]), "out of range"),
    ],
)
def test_wrong_shapes_and_labels(tmp_path, x, y, match):
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=y)
    with pytest.raises(UserError, match=match):
        load_cifar10("test", tmp_path)


def test_corrupt_npz(tmp_path):
    (tmp_path / "cifar10_test.npz").write_bytes(os.urandom(100))
    with pytest.raises(UserError, match="not a readable .npz"):
        load_cifar10("test", tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-batch",))


def test_python_batch_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(UserError, match="refusing to load global"):
        load_cifar10("test", tmp_path)
    assert not (tmp_path / "pwned-by-batch").exists()
