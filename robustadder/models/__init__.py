"""Architectures, checkpoint I/O and the model zoo."""

from .checkpoint import LoadedModel, load_checkpoint, save_checkpoint, weights_sha256
from .resnet import ARCHITECTURES, CIFAR10_MEAN, CIFAR10_STD, ArchSpec, CifarResNet, create_model
from .zoo import ZooEntry, count_parameters, load_zoo, resolve_model

__all__ = [
    "ARCHITECTURES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ArchSpec",
    "CifarResNet",
    "LoadedModel",
    "ZooEntry",
    "count_parameters",
    "create_model",
    "load_checkpoint",
    "load_zoo",
    "resolve_model",
    "save_checkpoint",
    "weights_sha256",
]
