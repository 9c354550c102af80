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
from functools import partial

import torch
import torch.nn as nn

from ..data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported)
from ..nn import Adder2d, AWNConv2d
from .registry import REGISTRY, register_model
from .spec import LAYER_KINDS, ModelSpec

DEPTHS = (20, 32, 56)


def make_layer(kind: str, awn: bool, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Module:
    """The layer that an adder network computes with ``Adder2d``: adder or conv, ±AWN, no bias."""
    if kind == "adder":
        return Adder2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False, awn=awn)
    if kind == "conv":
        cls = AWNConv2d if awn else nn.Conv2d
        return cls(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
    raise ValueError(f"kind must be one of {LAYER_KINDS}, not {kind!r}")


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


def ArchSpec(depth: int, kind: str, awn: bool, num_classes: int = 10) -> ModelSpec:  # noqa: N802 - the old class name
    """Deprecated: the CIFAR ResNet's description is a :class:`ModelSpec` (``ModelSpec.cifar_resnet``)."""
    return ModelSpec.cifar_resnet(depth, kind, awn, num_classes)


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
        if kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {LAYER_KINDS}, not {kind!r}")
        self.spec = ModelSpec.cifar_resnet(depth, kind, awn, num_classes)
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


# -- registered by name (timm style: a name per variant) ---------------------------------------------------
for _depth in DEPTHS:
    for _kind in LAYER_KINDS:
        for _awn in (False, True):
            _spec = ModelSpec.cifar_resnet(_depth, _kind, _awn)
            register_model(_spec.name, family=_spec.family, kind=_kind, awn=_awn, depth=_depth)(
                partial(CifarResNet, _depth, _kind, _awn)
            )

#: Deprecated: the CIFAR ResNets' descriptions by name, a view of :data:`.registry.REGISTRY`
ARCHITECTURES: dict[str, ModelSpec] = {name: a.spec for name, a in REGISTRY.items() if a.cifar_resnet}
