"""Architectures, checkpoint I/O and the model zoo.

Loading flows one way: a name is resolved (:mod:`.zoo`) → a module is wrapped or a checkpoint read
(:mod:`.module`, :mod:`.checkpoint`) → an architecture is built from the one registry (:mod:`.registry`, where
:mod:`.resnet` and :mod:`.architectures` register theirs) and described by one :class:`ModelSpec`.
"""

from . import architectures  # noqa: F401 - registers VGG-small and the ImageNet ResNets
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
from .registry import REGISTRY, Architecture, architecture, create_model, register_model
from .resnet import ARCHITECTURES, CIFAR10_MEAN, CIFAR10_STD, ArchSpec, CifarResNet
from .spec import LAYER_KINDS, MODEL_KINDS, ModelSpec, describe
from .zoo import ZooEntry, as_loaded, count_parameters, load_zoo, model_inputs, resolve_model

__all__ = [
    "ARCHITECTURES",
    "LAYER_KINDS",
    "MODEL_KINDS",
    "REGISTRY",
    "Architecture",
    "architecture",
    "register_model",
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
