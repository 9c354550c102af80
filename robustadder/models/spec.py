"""What the product needs to know of any model: a general description, read off the module itself.

Results, reports and checks ask of a model what kind it is (AdderNet, CNN or a mix), whether it uses AWN,
how many classes it predicts and what images it takes — never which ResNet it is. :class:`ModelSpec` holds
exactly that, for the project's CIFAR ResNets as for any ``nn.Module`` a user hands in.

Kind: the AdderNet papers keep the first layer (stem) and the last (classifier) multiplicative, so a model
is an ANN when every *other* conv / linear layer is an adder layer, a CNN when it has no adder layer, and
``mixed`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..nn import Adder2d, AWNConv2d

#: what a layer of a registered architecture computes with: additions (adder) or multiplications (conv)
LAYER_KINDS = ("adder", "conv")
#: what a model is: every inner layer an adder (ANN), none (CNN), or some (mixed)
MODEL_KINDS = (*LAYER_KINDS, "mixed")


@dataclass(frozen=True)
class ModelSpec:
    """A model's identity for results: architecture name, family, kind, AWN, classes, input shape.

    The one description of a model in the package: the registry's architectures, checkpoints, zoo entries and
    wrapped user modules all describe themselves with it (``depth`` only for the CIFAR ResNets).
    """

    name: str
    family: str
    kind: str
    awn: bool
    num_classes: int
    input_shape: tuple[int, int, int] = (3, 32, 32)
    depth: int | None = None

    @classmethod
    def cifar_resnet(cls, depth: int, kind: str, awn: bool = False, num_classes: int = 10) -> ModelSpec:
        """The CIFAR ResNet of ``depth`` with ``kind`` layers (± AWN), named as registered: ``resnet20_adder_awn``."""
        name = f"resnet{depth}_{kind}" + ("_awn" if awn else "")
        return cls(name, f"resnet{depth}", kind, awn, int(num_classes), (3, 32, 32), depth)

    @property
    def variant(self) -> str:
        """Human label of the variant: ``ANN``, ``CNN`` or ``mixed``, ``+AWN`` when AWN is used."""
        base = {"adder": "ANN", "conv": "CNN"}.get(self.kind, "mixed")
        return base + ("+AWN" if self.awn else "")


def layer_kinds(model: nn.Module) -> list[str]:
    """``adder`` / ``mul`` for each conv-like layer in module order."""
    kinds = []
    for m in model.modules():
        if isinstance(m, Adder2d):
            kinds.append("adder")
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            kinds.append("mul")
    return kinds


def model_kind(model: nn.Module) -> str:
    """``adder``, ``conv`` or ``mixed`` (see the module docstring)."""
    kinds = layer_kinds(model)
    if "adder" not in kinds:
        return "conv"
    inner = kinds[1:-1] if len(kinds) > 2 else kinds
    return "adder" if all(k == "adder" for k in inner) else "mixed"


def uses_awn(model: nn.Module) -> bool:
    """Whether any layer computes with the AWN-reparametrized weight."""
    return any((isinstance(m, Adder2d) and m.awn) or isinstance(m, AWNConv2d) for m in model.modules())


def describe(model: nn.Module, name: str, family: str, num_classes: int, input_shape: tuple[int, int, int],
             depth: int | None = None) -> ModelSpec:  # fmt: skip
    """The :class:`ModelSpec` of a built model (kind and AWN read off its layers)."""
    return ModelSpec(name, family, model_kind(model), uses_awn(model), int(num_classes), tuple(input_shape), depth)
