"""The registered datasets: CIFAR-10, CIFAR-100 (official python release or npz) and SVHN (official .mat).

Each is found in the data directory (``--data``, ``$ROBUSTADDER_DATA``, ``$ROBUSTADDER_HOME/data``) in one
of its formats, and ``robustadder data download --dataset NAME`` fetches the official files there after
checking their md5 (the digests the releases publish, as torchvision checks them):

* CIFAR-10: ``cifar10_{train,test}.npz`` (``x`` uint8 (N, 32, 32, 3), ``y``) or ``cifar-10-batches-py/``;
* CIFAR-100: ``cifar100_{train,test}.npz`` or ``cifar-100-python/{train,test}`` (the 100 fine labels);
* SVHN: ``svhn_{train,test}.npz`` or ``svhn/{train,test}_32x32.mat`` (label 10 of the release is digit 0,
  as in torchvision, so that class d is digit d).

Sample ids are the positions in the official release order.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fetch import download
from ..fileio import note_input
from .core import ImageSet, read_npz, read_pickled_batch, resolve_data_dir
from .registry import load_dataset, register_dataset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # image folders (ImageNet layout) and the registry's ImageNet models
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_DIR = "cifar-100-python"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/{name}"
SVHN_FILES = {"train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
              "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")}  # fmt: skip
NUM_CLASSES = 10
SPLITS = ("train", "test")


def _hint(name: str) -> str:
    return f"pass --data PATH (data=PATH in Python), set ROBUSTADDER_DATA, or run 'robustadder data download --dataset {name}'"


def _data_root(root: Path, name: str) -> Path:
    if not root.is_dir():
        raise UserError(f"data directory not found: {root}; {_hint(name)}")
    return root


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    arrays = read_npz(path)
    return arrays["x"], arrays["y"], str(path)


def _cifar_batches(root: Path, folder: str, names: list[str], label_key: str, title: str) -> tuple[np.ndarray, np.ndarray, str]:
    batches = root if (root / names[0]).is_file() else root / folder  # the data dir, or the release's folder itself
    missing = [n for n in names if not (batches / n).is_file()]
    if missing:
        raise UserError(f"{batches}: missing {', '.join(missing)} of the official {title} python release")
    parts = [read_pickled_batch(batches / n, label_key, title) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), str(batches)


# -- downloads ------------------------------------------------------------------------------------------
# the official releases are 64-182 MB (CIFAR-10 170 MB, CIFAR-100 169 MB, SVHN train 182 MB): a download that
# sends more is not the release
RELEASE_MAX_BYTES = 256 * 2**20

def _download_archive(dest: str | os.PathLike | None, url: str, md5: str, folder: str, marker: str, title: str) -> Path:
    """Fetch an official archive, check its md5, unpack ``folder`` into the data directory.

    The archive is verified before anything is unpacked, unpacking goes to a temporary directory that
    is renamed into place, and only plain files are extracted (``tarfile`` data filter): a failed or
    hostile download leaves the directory as it was.
    """
    root = resolve_data_dir(dest)
    target = root / folder
    if (target / marker).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = download(url, root / Path(url).name, digest=md5, algorithm="md5", max_bytes=RELEASE_MAX_BYTES)
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(f"{folder}/") and m.isfile()]
                tar.extractall(tmp, members=members, filter="data")
            if not (Path(tmp) / folder / marker).is_file():
                raise UserError(f"{url}: archive has no {folder}/{marker}; not the {title} python release")
            if target.exists():
                shutil.rmtree(target)
            os.replace(Path(tmp) / folder, target)
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"could not unpack {archive}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    return target


def download_cifar10(dest: str | os.PathLike | None = None, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """The official CIFAR-10 python release (md5-checked) unpacked as ``cifar-10-batches-py`` in ``dest``."""
    return _download_archive(dest, url, md5, BATCHES_DIR, "test_batch", "CIFAR-10")


def download_cifar100(dest: str | os.PathLike | None = None, *, url: str = CIFAR100_URL, md5: str = CIFAR100_MD5) -> Path:
    """The official CIFAR-100 python release (md5-checked) unpacked as ``cifar-100-python`` in ``dest``."""
    return _download_archive(dest, url, md5, CIFAR100_DIR, "test", "CIFAR-100")


def download_svhn(dest: str | os.PathLike | None = None, splits: Sequence[str] = ("test",), *, url: str = SVHN_URL,
                  md5: dict[str, str] | None = None) -> Path:  # fmt: skip
    """The official SVHN ``{split}_32x32.mat`` files (md5-checked) into ``dest/svhn``."""
    target = resolve_data_dir(dest) / "svhn"
    for split in splits:
        if split not in SVHN_FILES:
            raise UserError(f"SVHN has no {split} split (it has {', '.join(SVHN_FILES)})")
        name, digest = SVHN_FILES[split]
        if not (target / name).is_file():
            download(url.format(name=name), target / name, digest=(md5 or {}).get(split, digest), algorithm="md5",
                     max_bytes=RELEASE_MAX_BYTES)  # fmt: skip
    return target


# -- the registered datasets --------------------------------------------------------------------------------
@register_dataset("cifar10", title="CIFAR-10", num_classes=10, input_shape=(3, 32, 32), normalization=(CIFAR10_MEAN, CIFAR10_STD),
                  where=f"cifar10_{{split}}.npz or {BATCHES_DIR}/", download=lambda root, _s: download_cifar10(root))  # fmt: skip
def read_cifar10(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """CIFAR-10 from the npz pair or the official python batches."""
    root = _data_root(root, "cifar10")
    npz = root / f"cifar10_{split}.npz"
    if npz.is_file():
        return _from_npz(npz)
    if (root / "test_batch").exists() or (root / BATCHES_DIR).is_dir():
        names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        return _cifar_batches(root, BATCHES_DIR, names, "labels", "CIFAR-10")
    raise UserError(f"no CIFAR-10 {split} data in {root} (expected cifar10_{split}.npz or {BATCHES_DIR}/); {_hint('cifar10')}")


@register_dataset("cifar100", title="CIFAR-100", num_classes=100, input_shape=(3, 32, 32),
                  normalization=(CIFAR100_MEAN, CIFAR100_STD), where=f"cifar100_{{split}}.npz or {CIFAR100_DIR}/",
                  download=lambda root, _s: download_cifar100(root))  # fmt: skip
def read_cifar100(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """CIFAR-100 (fine labels) from the npz pair or the official python files ``train`` / ``test``."""
    root = _data_root(root, "cifar100")
    npz = root / f"cifar100_{split}.npz"
    if npz.is_file():
        return _from_npz(npz)
    if (root / CIFAR100_DIR).is_dir() or ((root / "test").is_file() and (root / "meta").is_file()):
        return _cifar_batches(root, CIFAR100_DIR, [split], "fine_labels", "CIFAR-100")
    raise UserError(
        f"no CIFAR-100 {split} data in {root} (expected cifar100_{split}.npz or {CIFAR100_DIR}/); {_hint('cifar100')}"
    )


@register_dataset("svhn", title="SVHN", num_classes=10, input_shape=(3, 32, 32), normalization=(SVHN_MEAN, SVHN_STD),
                  where="svhn_{split}.npz or svhn/{split}_32x32.mat", flip=False,
                  download=lambda root, splits: download_svhn(root, splits))  # fmt: skip
def read_svhn(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """SVHN (cropped digits) from an npz or the official ``{split}_32x32.mat`` (MATLAB v5, read by scipy)."""
    root = _data_root(root, "svhn")
    npz = root / f"svhn_{split}.npz"
    if npz.is_file():
        return _from_npz(npz)
    name = SVHN_FILES[split][0]
    path = next((p for p in (root / "svhn" / name, root / name) if p.is_file()), None)
    if path is None:
        raise UserError(f"no SVHN {split} data in {root} (expected svhn/{name} or svhn_{split}.npz); {_hint('svhn')}")
    from scipy.io import loadmat

    note_input(path, "a dataset file")
    try:
        mat = loadmat(path, variable_names=["X", "y"])
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except Exception as exc:
        raise UserError(f"{path} is not a readable SVHN .mat file ({type(exc).__name__}: {exc})") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise UserError(f"{path}: expected X of shape (32, 32, 3, N), found {x.shape}")
    y = y.astype(np.int64)
    y[y == 10] = 0  # the release labels digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y, str(path)


def load_cifar10(split: str = "test", data: str | os.PathLike | None = None) -> ImageSet:
    """A CIFAR-10 split (the product's default dataset), validated, ids = release order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return load_dataset("cifar10", split, data)
