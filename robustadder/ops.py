"""Operation counts and energy estimates per inference (one image).

Counting convention (stated so that hand counts can check it):

* adder layer, per output element: K subtractions + (K − 1) accumulations = 2K − 1 additions, no
  multiplications (K = C_in·k_h·k_w); |·| is a sign-bit operation and not counted; +1 addition with a bias;
* convolution / fully connected (a 1×1 conv here), per output element: K multiplications and K − 1
  additions (+1 addition with a bias);
* batch normalization at inference, per element: 1 multiplication and 1 addition (it folds into an
  affine map);
* the input normalization inside the model, per input element: 1 subtraction and 1 multiplication (by
  1/std);
* average pooling, per output element: window − 1 additions and 1 multiplication;
* ReLU, residual additions: ReLU is a comparison (not counted); each residual sum is 1 addition per element.

The AWN reparametrization and the per-filter weight statistics depend on the weights only; they are
computed once, not per inference, and not counted.

Energy uses the 45 nm figures the AdderNet papers quote from M. Horowitz, "Computing's energy problem
(and what we can do about it)", ISSCC 2014: 32-bit float addition 0.9 pJ, 32-bit float multiplication
3.7 pJ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .models.resnet import BasicBlock
from .nn import Adder2d

ADD_PJ = 0.9
MUL_PJ = 3.7
ENERGY_SOURCE = "Horowitz, ISSCC 2014, 45 nm: fp32 add 0.9 pJ, fp32 mult 3.7 pJ"


@dataclass
class OpCount:
    """Additions and multiplications of one inference, by layer type."""

    adds: dict[str, int]
    muls: dict[str, int]

    @property
    def total_adds(self) -> int:
        return sum(self.adds.values())

    @property
    def total_muls(self) -> int:
        return sum(self.muls.values())

    @property
    def energy_uj(self) -> float:
        """Estimated energy of one inference in microjoules."""
        return (self.total_adds * ADD_PJ + self.total_muls * MUL_PJ) * 1e-6

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for listings and reports."""
        out: dict[str, float] = {"adds": self.total_adds, "muls": self.total_muls, "energy_uj": round(self.energy_uj, 3)}
        for kind in sorted(set(self.adds) | set(self.muls)):
            out[f"adds_{kind}"] = self.adds.get(kind, 0)
            out[f"muls_{kind}"] = self.muls.get(kind, 0)
        return out


def count_ops(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> OpCount:
    """Count the operations of one forward pass of one image (hooks record actual shapes)."""
    shape = input_shape or getattr(model, "input_shape", (3, 32, 32))
    adds: dict[str, int] = {}
    muls: dict[str, int] = {}

    def add(kind: str, a: int, m: int) -> None:
        adds[kind] = adds.get(kind, 0) + int(a)
        muls[kind] = muls.get(kind, 0) + int(m)

    def on_adder(layer: Adder2d, inputs, out) -> None:
        k = layer.in_channels * layer.kernel_size**2
        add("adder", out.numel() * (2 * k - 1 + (layer.b is not None)), 0)

    def on_conv(layer: nn.Conv2d, inputs, out) -> None:
        k = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        kind = "fc" if layer is classifier and out.shape[-2:] == (1, 1) else "conv"  # a classifier sees pooled features
        add(kind, out.numel() * (k - 1 + (layer.bias is not None)), out.numel() * k)

    def on_linear(layer: nn.Linear, inputs, out) -> None:
        add("fc", out.numel() * (layer.in_features - 1 + (layer.bias is not None)), out.numel() * layer.in_features)

    def on_bn(layer, inputs, out) -> None:
        add("bn", out.numel(), out.numel())

    def on_pool(layer: nn.AvgPool2d, inputs, out) -> None:
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        add("pool", out.numel() * (k * k - 1), out.numel())

    def on_block(block: BasicBlock, inputs, out) -> None:
        add("residual", out.numel(), 0)

    classifier = next((m for m in reversed(list(model.modules())) if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    handles = []
    for m in model.modules():
        hook = {Adder2d: on_adder, nn.Linear: on_linear, nn.AvgPool2d: on_pool, BasicBlock: on_block}.get(type(m))
        if isinstance(m, nn.Conv2d):
            hook = on_conv
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hook = on_bn
        if hook is not None:
            handles.append(m.register_forward_hook(hook))
    if getattr(model, "normalized", False):
        n_in = int(torch.tensor(shape).prod())
        add("input_norm", n_in, n_in)
    was = model.training
    model.eval()
    try:
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *shape, dtype=param.dtype, device=param.device))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return OpCount(adds, muls)
