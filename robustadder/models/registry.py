"""The architecture registry: every architecture name the product knows, each with its description.

As timm's ``register_model`` / ``create_model``: a decorator beside each architecture's definition registers
a factory (no arguments needed) with what evaluating it requires (a :class:`~.spec.ModelSpec`, the input
normalization its training used) and, optionally, how to recognize its weights by their keys. Registry names
are accepted wherever a model is (``--model resnet50_adder_imagenet --weights FILE``, ``--arch`` of a
checkpoint without metadata). The CIFAR ResNets register in :mod:`.resnet`, the other papers' architectures
in :mod:`.architectures`; importing :mod:`robustadder.models` registers both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data import CIFAR10_MEAN, CIFAR10_STD
from ..errors import UserError
from .spec import ModelSpec


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its description, the normalization it was trained with, how to build it."""

    spec: ModelSpec
    mean: tuple[float, ...]
    std: tuple[float, ...]
    factory: Callable[..., nn.Module]
    recognizes: Callable[[Mapping[str, torch.Tensor]], bool] | None = None

    name = property(lambda self: self.spec.name)
    family = property(lambda self: self.spec.family)
    kind = property(lambda self: self.spec.kind)
    awn = property(lambda self: self.spec.awn)
    num_classes = property(lambda self: self.spec.num_classes)
    input_shape = property(lambda self: self.spec.input_shape)

    @property
    def cifar_resnet(self) -> bool:
        """Whether it is one of the project's CIFAR ResNets, the only architectures registered with a depth.

        Their checkpoints carry metadata and AWN variants that :func:`.checkpoint.build_model` reads.
        """
        return self.spec.depth is not None


REGISTRY: dict[str, Architecture] = {}


def register_model(
    name: str,
    *,
    family: str,
    kind: str,
    awn: bool = False,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
    depth: int | None = None,
    recognizes: Callable[[Mapping[str, torch.Tensor]], bool] | None = None,
):
    """Register the decorated factory under ``name`` (a name registered twice is a programming error)."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        spec = ModelSpec(name, family, kind, awn, int(num_classes), tuple(input_shape), depth)
        REGISTRY[name] = Architecture(spec, tuple(mean), tuple(std), factory, recognizes)
        return factory

    return decorate


def architecture(name: str) -> Architecture:
    """The registered architecture ``name``; an unknown name is one line listing the known ones."""
    if name not in REGISTRY:
        raise UserError(f"unknown architecture '{name}': choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build any registered architecture by name (``resnet20_adder``, ``vgg_small_conv``, ...), untrained.

    ``kwargs`` go to its factory (e.g. ``num_classes``); an unknown name is a :class:`UserError`.
    """
    return architecture(name).factory(**kwargs)


def infer_registered(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the one architecture that recognizes a state dict by its keys (None: none or several do)."""
    found = [name for name, a in REGISTRY.items() if a.recognizes is not None and a.recognizes(state)]
    return found[0] if len(found) == 1 else None
