"""Architectures, checkpoint I/O and the model zoo."""

from .checkpoint import LoadedModel, save_checkpoint, weights_sha256
from .module import (
    InputAdapter,
    Normalization,
    announce,
    check_fits,
    conversion_note,
    evaluation_images,
    from_module,
    load_checkpoint,
    load_factory,
    module_input_shape,
    opened_dataset,
)
from .resnet import ARCHITECTURES, CIFAR10_MEAN, CIFAR10_STD, ArchSpec, CifarResNet, create_model
from .spec import ModelSpec, describe
from .zoo import ZooEntry, as_loaded, count_parameters, load_zoo, model_inputs, resolve_model

__all__ = [
    "ARCHITECTURES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ArchSpec",
    "CifarResNet",
    "InputAdapter",
    "LoadedModel",
    "ModelSpec",
    "Normalization",
    "ZooEntry",
    "announce",
    "as_loaded",
    "check_fits",
    "conversion_note",
    "count_parameters",
    "create_model",
    "describe",
    "evaluation_images",
    "from_module",
    "load_factory",
    "load_checkpoint",
    "load_zoo",
    "model_inputs",
    "module_input_shape",
    "opened_dataset",
    "resolve_model",
    "save_checkpoint",
    "weights_sha256",
]
