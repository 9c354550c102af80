"""Datasets by name: what a model is evaluated (or trained) on, with its classes, image shape and statistics.

A dataset is named by ``--dataset`` on the command line, ``dataset =`` in sweep files and ``dataset=`` in
Python: a registered name (``cifar10``, ``cifar100``, ``svhn``; ``robustadder data list``) or a file-based
one, ``imagefolder:PATH`` (images in class sub-folders, e.g. an ImageNet validation set laid out that way)
or ``npz:PATH`` (arrays ``x``, ``y``). Each one knows

* its stable name, stored with every cell (``cifar100``, ``imagefolder:val``), and a title for reports;
* its number of classes and image shape, so that a model that does not fit is one line before any work
  (an image folder has no fixed size: it is resized and centre-cropped to the model's input);
* the normalization (mean, std) of models trained on it: what ``train`` builds into a model, and a name
  ``--normalization`` accepts;
* stable sample ids: the index in the official release order (CIFAR, SVHN), the ``ids`` array or the row
  of an npz file, the position in the sorted (class, file) list of an image folder.

New datasets register with :func:`register_dataset` (a reader of one split) or :func:`register_scheme` (a
``scheme:PATH`` family), like the model architectures' ``@register_model``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .core import DEFAULT_DATASET, ImageSet, check_n, resolve_data_dir, validate

Stats = tuple[tuple[float, ...], tuple[float, ...]]
Shape = tuple[int, int, int]
# (split, directory or path, n or None for all, the model's (C, H, W) or None) → the first n samples
Reader = Callable[[str, Path, "int | None", "Shape | None"], ImageSet]


@dataclass(frozen=True)
class Dataset:
    """One dataset: identity, classes, image shape, training statistics, and how to read a split."""

    name: str
    title: str
    num_classes: int | None  # None: as the files say (an npz without 'num_classes')
    input_shape: Shape | None  # (C, H, W); None: resized to the model's (image folders)
    normalization: Stats | None  # (mean, std) of models trained on it
    splits: tuple[str, ...]
    reader: Reader
    where: str  # what is read, in words (``data list``, errors)
    flip: bool = True  # horizontal flips are label-preserving (not for digits)
    path: Path | None = None  # file-based datasets: their own location (no data directory)
    download: Callable[[Path, Sequence[str]], Path] | None = None

    def load(
        self,
        split: str = "test",
        data: str | os.PathLike | None = None,
        *,
        n: int | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> ImageSet:
        """The first ``n`` samples of a split (all when None), in the dataset's order, validated.

        ``data`` is the data directory of a registered dataset (``--data``); ``image_shape`` the model's
        (C, H, W), which only a resizable dataset uses.
        """
        if split not in self.splits:
            raise UserError(f"{self.title} has no {split} split (it has {', '.join(self.splits)})")
        if n is not None and n < 1:
            raise UserError(f"--n must be at least 1, not {n}")
        root = self.path if self.path is not None else resolve_data_dir(data)
        shape = tuple(int(v) for v in image_shape) if image_shape is not None else None
        return self.reader(split, root, n, shape).first(n)  # type: ignore[arg-type]


    def inputs(self, split: str = "test", data: str | os.PathLike | None = None) -> list[Path]:
        """The files and folders reading ``split`` may touch: what no output of the command may overwrite.

        A file-based dataset is its own path; a registered one the candidates its ``where`` names in the
        data directory (``cifar10_test.npz``, ``cifar-10-batches-py/``), whether present or not.
        """
        if self.path is not None:
            return [self.path]
        root = resolve_data_dir(data)
        return [root / part.strip().format(split=split).rstrip("/") for part in self.where.split(" or ")]


DATASETS: dict[str, Dataset] = {}
SCHEMES: dict[str, Callable[[Path], Dataset]] = {}


def register_dataset(
    name: str,
    *,
    title: str,
    num_classes: int,
    input_shape: Shape,
    normalization: Stats,
    where: str,
    splits: tuple[str, ...] = ("train", "test"),
    flip: bool = True,
    download: Callable[[Path, Sequence[str]], Path] | None = None,
) -> Callable:
    """Decorator: register ``read(split, root) -> (x, y, source)`` as a named dataset.

    Sample ids are the positions in the arrays the reader returns (the official release order); the
    images are checked to be uint8 of ``input_shape`` and the labels to lie in ``0..num_classes-1``.
    """

    def deco(read: Callable[[str, Path], tuple[np.ndarray, np.ndarray, str]]) -> Callable:
        c, h, w = input_shape

        def reader(split: str, root: Path, n: int | None, _shape: Shape | None) -> ImageSet:
            x, y, source = read(split, root)
            labels = validate(x, y, source, num_classes, (h, w, c))
            return ImageSet(x, labels, np.arange(len(labels), dtype=np.int64), source, num_classes, name)

        DATASETS[name] = Dataset(name, title, num_classes, input_shape, normalization, splits, reader, where, flip,
                                 download=download)  # fmt: skip
        return read

    return deco


def register_scheme(scheme: str) -> Callable:
    """Decorator: register ``make(path) -> Dataset`` for references ``scheme:PATH``."""

    def deco(make: Callable[[Path], Dataset]) -> Callable[[Path], Dataset]:
        SCHEMES[scheme] = make
        return make

    return deco


def dataset_choices() -> str:
    """The accepted dataset references, in words (help texts and errors)."""
    return ", ".join([*DATASETS, *(f"{s}:PATH" for s in SCHEMES)])


def dataset_ref(ref: str, relative_to: str | os.PathLike | None = None) -> str:
    """A dataset reference checked for form only (nothing is read, so reports need no data).

    A registered name in lower case, or ``scheme:PATH`` with PATH made absolute against ``relative_to``
    (a sweep file's folder).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise UserError(f"a dataset is a name or scheme:PATH ({dataset_choices()}), not {ref!r}")
    text = ref.strip()
    if text.lower() in DATASETS:
        return text.lower()
    scheme, sep, rest = text.partition(":")
    if not (sep and scheme.lower() in SCHEMES):
        raise UserError(f"unknown dataset '{text}': use {dataset_choices()}")
    if not rest.strip():
        raise UserError(f"dataset '{text}' needs a path: {scheme.lower()}:PATH")
    path = Path(os.path.expandvars(rest.strip())).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = (Path(relative_to) / path).resolve()
    return f"{scheme.lower()}:{path}"


def open_dataset(ref: str | os.PathLike | Dataset | None = None) -> Dataset:
    """A dataset reference (name or ``scheme:PATH``; None → CIFAR-10) → its :class:`Dataset`."""
    if isinstance(ref, Dataset):
        return ref
    text = dataset_ref(str(ref)) if ref is not None else DEFAULT_DATASET
    if text in DATASETS:
        return DATASETS[text]
    scheme, _, path = text.partition(":")
    return SCHEMES[scheme](Path(path))


def load_dataset(
    ref: str | os.PathLike | Dataset | None = None,
    split: str = "test",
    data: str | os.PathLike | None = None,
    *,
    n: int | None = None,
    image_shape: Sequence[int] | None = None,
) -> ImageSet:
    """Shorthand for ``open_dataset(ref).load(split, data, n=n, image_shape=image_shape)``."""
    return open_dataset(ref).load(split, data, n=n, image_shape=image_shape)


def dataset_title(name: str | None) -> str:
    """What reports call a stored dataset name (old cells have none: CIFAR-10)."""
    name = name or DEFAULT_DATASET
    return DATASETS[name].title if name in DATASETS else name


__all__ = [
    "DATASETS",
    "SCHEMES",
    "Dataset",
    "check_n",
    "dataset_choices",
    "dataset_ref",
    "dataset_title",
    "load_dataset",
    "open_dataset",
    "register_dataset",
    "register_scheme",
]
