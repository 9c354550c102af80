"""Datasets: images with stable sample ids, a registry of named datasets, and file-based ones.

See :mod:`robustadder.data.registry` for how datasets are named and what each one knows,
:mod:`robustadder.data.formats` for CIFAR-10 / CIFAR-100 / SVHN and :mod:`robustadder.data.files` for
``imagefolder:PATH`` and ``npz:PATH``.
"""

from . import files as _files  # noqa: F401  (registers the imagefolder: and npz: schemes)
from .core import DEFAULT_DATASET, ImageSet, check_n, default_data_dir, resolve_data_dir, to_tensor
from .formats import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    download_cifar10,
    download_cifar100,
    download_svhn,
    load_cifar10,
)
from .registry import (
    DATASETS,
    SCHEMES,
    Dataset,
    dataset_choices,
    dataset_ref,
    dataset_title,
    load_dataset,
    open_dataset,
    register_dataset,
    register_scheme,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DEFAULT_DATASET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SCHEMES",
    "Dataset",
    "ImageSet",
    "check_n",
    "dataset_choices",
    "dataset_ref",
    "dataset_title",
    "default_data_dir",
    "download_cifar10",
    "download_cifar100",
    "download_svhn",
    "load_cifar10",
    "load_dataset",
    "open_dataset",
    "register_dataset",
    "register_scheme",
    "resolve_data_dir",
    "to_tensor",
]
