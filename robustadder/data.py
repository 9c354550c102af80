"""CIFAR-10 loading with stable sample ids (DESIGN §7).

Two on-disk formats are read from a data directory:

* ``cifar10_{train,test}.npz`` with ``x`` uint8 (N, 32, 32, 3) and ``y`` (N,), original order;
* the official python release, ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``). Those
  files are pickles, so they are read with an unpickler that only admits the numpy array constructors —
  a doctored batch file cannot run code.

The directory is ``--data PATH``, else ``$ROBUSTADDER_DATA``, else ``$ROBUSTADDER_HOME/data``, where
:func:`download_cifar10` puts the official archive after checking its md5. Every sample keeps its index in
the original release as its id: results are stored per id, so any subset, order or shard of the test
set refers to the same images.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .fetch import download, robustadder_home

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
NUM_CLASSES = 10
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageSet:
    """Images as stored (uint8 HWC), labels, and each sample's id in the original release."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    source: str
    num_classes: int = NUM_CLASSES

    def __len__(self) -> int:
        return len(self.y)

    def take(self, positions: np.ndarray | slice) -> ImageSet:
        """Subset by position (ids travel with the samples)."""
        return ImageSet(self.x[positions], self.y[positions], self.ids[positions], self.source, self.num_classes)

    def first(self, n: int | None) -> ImageSet:
        """The first ``n`` samples in original order (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise UserError(f"--n must be at least 1, not {n}")
        if n > len(self):
            raise UserError(f"--n {n} exceeds the {len(self)} samples of {self.source}")
        return self.take(slice(0, n))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images as models take them."""
        return (self.x.shape[3], self.x.shape[1], self.x.shape[2])

    def tensors(self, positions: np.ndarray | slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] (N, C, H, W) and int64 labels."""
        x = self.x if positions is None else self.x[positions]
        y = self.y if positions is None else self.y[positions]
        return to_tensor(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 HWC images → float32 NCHW in [0, 1] (the only input scale models ever see)."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


# -- locating the data --------------------------------------------------------------------------------
def default_data_dir() -> Path:
    """Where downloaded data goes when neither --data nor $ROBUSTADDER_DATA says otherwise."""
    return robustadder_home() / "data"


def resolve_data_dir(data: str | os.PathLike | None = None) -> Path:
    """The data directory in effect: argument, then ``$ROBUSTADDER_DATA``, then the cache."""
    if data:
        return Path(data).expanduser()
    if os.environ.get("ROBUSTADDER_DATA"):
        return Path(os.environ["ROBUSTADDER_DATA"]).expanduser()
    return default_data_dir()


def load_cifar10(split: str = "test", data: str | os.PathLike | None = None) -> ImageSet:
    """Load a CIFAR-10 split from the data directory, validating shapes and labels."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    root = resolve_data_dir(data)
    hint = "pass --data PATH (data=PATH in Python), set ROBUSTADDER_DATA, or run 'robustadder data download'"
    if not root.is_dir():
        raise UserError(f"data directory not found: {root}; {hint}")
    npz = root / f"cifar10_{split}.npz"
    batches = root if (root / "test_batch").exists() else root / BATCHES_DIR
    if npz.is_file():
        x, y = _read_npz(npz)
        source = str(npz)
    elif batches.is_dir():
        x, y = _read_python_batches(batches, split)
        source = str(batches)
    else:
        raise UserError(f"no CIFAR-10 {split} data in {root} (expected cifar10_{split}.npz or {BATCHES_DIR}/); {hint}")
    _validate(x, y, source)
    return ImageSet(x, y.astype(np.int64), np.arange(len(y), dtype=np.int64), source)


def _validate(x: np.ndarray, y: np.ndarray, source: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise UserError(f"{source}: images must be uint8 (N, 32, 32, 3), found {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
        raise UserError(f"{source}: labels must be (N,) for {len(x)} images, found shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source}: labels must be integers, found {y.dtype}")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        raise UserError(f"{source}: labels out of range 0..{NUM_CLASSES - 1} (found {y.min()}..{y.max()})")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise UserError(f"{path}: expected arrays 'x' and 'y', found {sorted(f.files)}")
            return f["x"], f["y"]
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc})") from None


# -- the official python format, read without trusting pickle -----------------------------------------
def _numpy_globals() -> dict[tuple[str, str], object]:
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    import _codecs

    allowed[("_codecs", "encode")] = _codecs.encode  # how protocol-2 pickles spell bytes
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str):  # noqa: D102
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"])
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {exc}; this is not an official CIFAR-10 batch file") from None
    except Exception as exc:
        raise UserError(f"{path} is not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: expected data of shape (N, 3072), found {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_python_batches(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise UserError(f"{root}: missing {', '.join(missing)} of the official CIFAR-10 python release")
    parts = [_read_batch(root / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def download_cifar10(dest: str | os.PathLike | None = None, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Fetch the official python archive, check its md5, unpack ``cifar-10-batches-py`` into ``dest``.

    The archive is verified before anything is unpacked, unpacking goes to a temporary directory that
    is renamed into place, and only plain files are extracted (``tarfile`` data filter): a failed or
    hostile download leaves ``dest`` as it was.
    """
    root = resolve_data_dir(dest)
    target = root / BATCHES_DIR
    if (target / "test_batch").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = download(url, root / "cifar-10-python.tar.gz", digest=md5, algorithm="md5")
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(f"{BATCHES_DIR}/") and m.isfile()]
                tar.extractall(tmp, members=members, filter="data")
            if not (Path(tmp) / BATCHES_DIR / "test_batch").is_file():
                raise UserError(f"{url}: archive has no {BATCHES_DIR}/test_batch; not the CIFAR-10 python release")
            if target.exists():
                shutil.rmtree(target)
            os.replace(Path(tmp) / BATCHES_DIR, target)
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"could not unpack {archive}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    return target
