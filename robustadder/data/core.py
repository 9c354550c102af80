"""Images with stable sample ids, and the safe readers every dataset format shares (docs/design.md §7).

An :class:`ImageSet` holds images as stored (uint8 HWC), labels, and each sample's id in its release:
results are stored per id, so any subset, order or shard of a test set refers to the same images. The
data directory of the named datasets is ``--data PATH``, else ``$ROBUSTADDER_DATA``, else
``$ROBUSTADDER_HOME/data`` (where ``robustadder data download`` puts them).

Official releases that are Python pickles (CIFAR) are read with an unpickler that only admits the numpy
array constructors: a doctored batch file cannot run code.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..fetch import robustadder_home
from ..fileio import note_input

DEFAULT_DATASET = "cifar10"


@dataclass(frozen=True)
class ImageSet:
    """Images as stored (uint8 HWC), labels, and each sample's id in the original release.

    ``num_classes`` is the dataset's number of classes (None when the files do not say: only the labels
    are then checked against a model); ``dataset`` its stable name (``cifar10``, ``imagefolder:val``, ...).
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    source: str
    num_classes: int | None = 10
    dataset: str = DEFAULT_DATASET

    def __len__(self) -> int:
        return len(self.y)

    def take(self, positions: np.ndarray | slice) -> ImageSet:
        """Subset by position (ids travel with the samples)."""
        return dataclasses.replace(self, x=self.x[positions], y=self.y[positions], ids=self.ids[positions])

    def first(self, n: int | None) -> ImageSet:
        """The first ``n`` samples in the dataset's order (all when ``n`` is None)."""
        if n is None:
            return self
        check_n(n, len(self), self.source)
        return self if n == len(self) else self.take(slice(0, n))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images as models take them."""
        return (self.x.shape[3], self.x.shape[1], self.x.shape[2])

    def tensors(self, positions: np.ndarray | slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] (N, C, H, W) and int64 labels."""
        x = self.x if positions is None else self.x[positions]
        y = self.y if positions is None else self.y[positions]
        return to_tensor(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def check_n(n: int, available: int, source: str) -> None:
    """``--n`` is a positive number of samples the data has."""
    if n < 1:
        raise UserError(f"--n must be at least 1, not {n}")
    if n > available:
        raise UserError(f"--n {n} exceeds the {available} samples of {source}")


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


# -- checks every format passes ------------------------------------------------------------------------
def validate(
    x: np.ndarray, y: np.ndarray, source: str, num_classes: int | None, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Images uint8 (N, H, W, C), integer labels (N,) in range; returns the labels as int64.

    ``shape`` (H, W, C) pins the image size of a fixed-size dataset (CIFAR, SVHN).
    """
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3) or (shape is not None and x.shape[1:] != shape):
        want = f"(N, {', '.join(map(str, shape))})" if shape is not None else "(N, H, W, C) with C = 1 or 3"
        raise UserError(f"{source}: images must be uint8 {want}, found {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
        raise UserError(f"{source}: labels must be (N,) for {len(x)} images, found shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source}: labels must be integers, found {y.dtype}")
    top = num_classes - 1 if num_classes is not None else None
    if y.min() < 0 or (top is not None and y.max() > top):
        raise UserError(f"{source}: labels out of range 0..{top if top is not None else 'K-1'} (found {y.min()}..{y.max()})")
    return y.astype(np.int64)


def read_npz(path: Path, required: tuple[str, ...] = ("x", "y")) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (no pickled objects), the required ones checked present."""
    note_input(path, "a dataset file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise UserError(f"{path}: expected arrays {', '.join(map(repr, required))}, found {sorted(f.files)}")
            return {k: f[k] for k in f.files}
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc})") from None


# -- official pickled releases, read without trusting pickle --------------------------------------------
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


def read_pickled_batch(path: Path, label_key: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch of the official CIFAR python release: ``data`` (N, 3072) channel-major rows → (N, 32, 32, 3)."""
    note_input(path, "a dataset file")
    try:
        with open(path, "rb") as fh:
            batch: Any = _ArrayUnpickler(fh, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key])
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {exc}; this is not an official {what} batch file") from None
    except Exception as exc:
        raise UserError(f"{path} is not a readable {what} batch file ({type(exc).__name__}: {exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: expected data of shape (N, 3072), found {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
