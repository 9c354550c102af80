"""Architectures of the AdderNet papers besides the CIFAR ResNets, registered by name (:mod:`.registry`).

* ``vgg_small_{adder,conv}`` — the AdderNet paper's CIFAR VGG-small (LQ-Nets' layout: 128-128-M-256-256-M-
  512-512-M, a BN + ReLU after every layer, linear classifier); the first layer and the classifier stay
  multiplicative in the adder variant, as in the paper;
* ``resnet18_{adder,conv}_imagenet`` and ``resnet50_{adder,conv}_imagenet`` — ImageNet ResNets with the
  module tree and state-dict keys of the official AdderNet ``resnet50.py`` (7×7 conv stem, max pool, stages
  ``layer1..4``, shortcut ``downsample = Sequential(1×1 layer, BN)``, classifier ``fc`` a 1×1 conv with bias
  followed by ``bn2`` on the logits), so the official ImageNet ResNet-50 AdderNet checkpoint loads by path.

Each registration says how to recognize its weights by their keys, so a checkpoint without metadata loads
by path (``recognizes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
import torch.nn as nn

from ..data import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_model
from .resnet import make_layer
from .spec import LAYER_KINDS


def _layer_kind(state: Mapping[str, torch.Tensor]) -> str:
    return "adder" if any(k.endswith(".adder") for k in state) else "conv"


def _is_vgg_small(state: Mapping[str, torch.Tensor], kind: str) -> bool:
    return any(k.startswith("features.") for k in state) and "fc.weight" in state and _layer_kind(state) == kind


def _is_imagenet_resnet(state: Mapping[str, torch.Tensor], family: str, kind: str) -> bool:
    bottleneck = any(".conv3." in k for k in state)  # ResNet-50's blocks have a third layer, ResNet-18's do not
    return any(k.startswith("layer4.") for k in state) and bottleneck == (family == "resnet50") and _layer_kind(state) == kind


def layer(kind: str, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Module:
    """The layer an adder network computes with adders: adder or conv, no bias, no AWN."""
    return make_layer(kind, False, in_ch, out_ch, kernel, stride, padding)


# -- VGG-small (CIFAR) -------------------------------------------------------------------------------------
class VGGSmall(nn.Module):
    """The AdderNet paper's CIFAR VGG-small; ``features`` holds layers, BNs, ReLUs and pools in order."""

    CONFIG = (128, 128, "M", 256, 256, "M", 512, 512, "M")

    def __init__(self, kind: str = "adder", num_classes: int = 10) -> None:
        super().__init__()
        items: list[nn.Module] = []
        channels, first = 3, True
        for value in self.CONFIG:
            if value == "M":
                items.append(nn.MaxPool2d(2))
                continue
            conv = nn.Conv2d(channels, value, 3, padding=1, bias=False) if first else layer(kind, channels, value, 3, 1, 1)
            items += [conv, nn.BatchNorm2d(value), nn.ReLU(inplace=True)]
            channels, first = value, False
        self.features = nn.Sequential(*items)
        self.fc = nn.Linear(512 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


for _kind in LAYER_KINDS:

    @register_model(f"vgg_small_{_kind}", family="vgg_small", kind=_kind, recognizes=partial(_is_vgg_small, kind=_kind))
    def _vgg(kind: str = _kind, **kwargs) -> nn.Module:
        return VGGSmall(kind, **kwargs)


# -- ImageNet ResNets with the official AdderNet module tree ------------------------------------------------
class BasicBlockIN(nn.Module):
    """ResNet-18/34 block: 3×3 → BN → ReLU → 3×3 → BN, + shortcut, ReLU."""

    expansion = 1

    def __init__(self, kind: str, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = layer(kind, inplanes, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = layer(kind, planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """ResNet-50 block: 1×1 → 3×3 (stride) → 1×1 (×4), BN after each, + shortcut, ReLU."""

    expansion = 4

    def __init__(self, kind: str, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = layer(kind, inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = layer(kind, planes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = layer(kind, planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ImageNetResNet(nn.Module):
    """ImageNet ResNet; adder variant = every block and shortcut layer an adder, stem and classifier not."""

    def __init__(self, block: type[nn.Module], blocks: tuple[int, ...], kind: str = "adder", num_classes: int = 1000):
        super().__init__()
        self.kind, self.inplanes = kind, 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, blocks[0])
        self.layer2 = self._stage(block, 128, blocks[1], 2)
        self.layer3 = self._stage(block, 256, blocks[2], 2)
        self.layer4 = self._stage(block, 512, blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Conv2d(512 * block.expansion, num_classes, 1)  # with bias, as the official file
        self.bn2 = nn.BatchNorm2d(num_classes)

    def _stage(self, block, planes: int, count: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(layer(self.kind, self.inplanes, planes * block.expansion, 1, stride),
                                       nn.BatchNorm2d(planes * block.expansion))  # fmt: skip
        items = [block(self.kind, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        items += [block(self.kind, self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(self.fc(self.avgpool(x))).flatten(1)


IMAGENET = {"resnet18": (BasicBlockIN, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}
for _family, (_block, _blocks) in IMAGENET.items():
    for _kind in LAYER_KINDS:

        @register_model(f"{_family}_{_kind}_imagenet", family=f"{_family}_imagenet", kind=_kind, num_classes=1000,
                        input_shape=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        recognizes=partial(_is_imagenet_resnet, family=_family, kind=_kind))  # fmt: skip
        def _imagenet(block=_block, blocks=_blocks, kind: str = _kind, **kwargs) -> nn.Module:
            return ImageNetResNet(block, blocks, kind, **kwargs)
