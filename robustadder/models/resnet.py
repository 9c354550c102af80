"""CIFAR ResNet-20/32/56 in four variants: adder or conv, with or without AWN.

The module tree and state-dict keys are exactly those of the official AdderNet ``resnet20.py``
(docs/design.md §3), so official and third-party checkpoints load with ``strict=True``:

* stem ``conv1`` (3×3 conv, multiplicative), ``bn1``, ReLU;
* ``layer1..3`` of BasicBlocks (widths 16/32/64, stride 2 at the first block of layers 2 and 3), each
  ``conv1 → bn1 → ReLU → conv2 → bn2`` plus shortcut, then ReLU; the strided blocks' shortcut is
  ``downsample = Sequential(1×1 stride-2 layer, BatchNorm2d)``;
* head ``AvgPool2d(8)`` → ``fc`` (1×1 conv, multiplicative) → ``bn2`` on the logits.

"adder" variants use :class:`Adder2d` for the block and shortcut layers (weight key ``adder``); "conv"
variants use ``nn.Conv2d`` there (key ``weight``). AWN reparametrizes exactly those layers. The stem
and the classifier stay multiplicative in every variant, as in the paper.

Inputs are images in [0, 1]: the input normalization (mean/std) is part of the model, held in
non-persistent buffers so that it never shows up in (or breaks) official state dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported)
from ..nn import Adder2d, AWNConv2d

DEPTHS = (20, 32, 56)
KINDS = ("adder", "conv")


def make_layer(kind: str, awn: bool, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Module:
    """The layer that an adder network computes with ``Adder2d``: adder or conv, ±AWN, no bias."""
    if kind == "adder":
        return Adder2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False, awn=awn)
    if kind == "conv":
        cls = AWNConv2d if awn else nn.Conv2d
        return cls(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
    raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


class BasicBlock(nn.Module):
    """Official AdderNet BasicBlock (expansion 1)."""

    expansion = 1

    def __init__(
        self,
        layer: Callable[..., nn.Module],
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = layer(inplanes, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = layer(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


@dataclass(frozen=True)
class ArchSpec:
    """What identifies an architecture: depth, layer kind, AWN, classes."""

    depth: int
    kind: str
    awn: bool
    num_classes: int = 10

    @property
    def name(self) -> str:
        """Registry name, e.g. ``resnet20_adder_awn``."""
        return f"resnet{self.depth}_{self.kind}" + ("_awn" if self.awn else "")

    @property
    def variant(self) -> str:
        """Human label of the variant, e.g. ``ANN+AWN``."""
        return ("ANN" if self.kind == "adder" else "CNN") + ("+AWN" if self.awn else "")

    @property
    def family(self) -> str:
        """Architecture family without the layer kind, e.g. ``resnet20`` (what counterparts share)."""
        return f"resnet{self.depth}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the registry's models take."""
        return (3, 32, 32)


class CifarResNet(nn.Module):
    """CIFAR ResNet with the official AdderNet structure; takes [0, 1] images, returns logits."""

    normalized = True  # the input normalization happens inside (counted by robustadder.ops)

    def __init__(
        self,
        depth: int = 20,
        kind: str = "adder",
        awn: bool = False,
        num_classes: int = 10,
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, not {depth}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.spec = ArchSpec(depth, kind, awn, num_classes)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        blocks = (depth - 2) // 6

        def layer(i: int, o: int, k: int, s: int, p: int) -> nn.Module:
            return make_layer(kind, awn, i, o, k, s, p)

        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(layer, 16, blocks)
        self.layer2 = self._make_layer(layer, 32, blocks, stride=2)
        self.layer3 = self._make_layer(layer, 64, blocks, stride=2)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Conv2d(64, num_classes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, layer: Callable[..., nn.Module], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(layer(self.inplanes, planes, 1, stride, 0), nn.BatchNorm2d(planes))
        layers = [BasicBlock(layer, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(layer, planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model takes (the 8×8 average pool fixes 32×32)."""
        return (self.conv1.in_channels, 32, 32)

    @property
    def normalization(self) -> dict[str, list[float]]:
        """Input normalization as plain lists (for checkpoint metadata)."""
        return {
            "mean": [round(v, 6) for v in self.input_mean.flatten().tolist()],
            "std": [round(v, 6) for v in self.input_std.flatten().tolist()],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_std
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.bn2(self.fc(self.avgpool(x)))
        return x.flatten(1)


# -- registry (timm style: a name per variant, created by name) -----------------------------------
ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec for spec in (ArchSpec(d, k, a) for d in DEPTHS for k in KINDS for a in (False, True))
}


def create_model(name: str, **kwargs) -> CifarResNet:
    """Build an architecture by registry name (``resnet20_adder``, ``resnet56_conv_awn``, ...)."""
    if name not in ARCHITECTURES:
        raise KeyError(name)
    spec = ARCHITECTURES[name]
    kwargs.setdefault("num_classes", spec.num_classes)
    return CifarResNet(spec.depth, spec.kind, spec.awn, **kwargs)
