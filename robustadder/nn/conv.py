"""Convolutions whose per-sample results do not depend on the process layout.

PyTorch's CPU convolutions (oneDNN, or im2col + MKL GEMM) choose their algorithm and the split of each
reduction by the thread count and the batch size: on AVX2-only machines the same sample gave different
logits and input gradients with 1 and 2 threads, and in a batch of 4 vs 128 (float32 rounding, ~1e-7
relative, which moves a PGD iterate and can move a decision). Robustness results must be a function of
the cell alone: torchrun ranks (one thread each), a plain run (all cores) and a resumed cell must store
the same rows. The adder kernels already guarantee that (every output reduced by one thread in a fixed
order); :func:`set_deterministic_convs` gives ``nn.Conv2d`` layers the same guarantee by running them on
the same CPU kernel library in its multiplicative mode. Layers the kernel does not cover (groups,
dilation, non-zero padding modes, other devices) keep PyTorch's implementation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from ..kernels import get_backend


class ConvFunction(torch.autograd.Function):
    """Convolution (no bias) on the deterministic CPU kernel; the weight gradient is PyTorch's."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, backend):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, backend)
        return backend.conv_forward(x, weight, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        stride, padding, backend = ctx.conf
        grad_out = grad_out.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = backend.conv_grad_input(x, weight, grad_out, stride, padding)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad_out, stride=stride, padding=padding)
        return grad_x, grad_w, None, None, None


def _supported(conv: nn.Conv2d) -> bool:
    """Geometry the kernel computes: groups 1, no dilation, zero padding, equal strides and paddings."""
    return (
        conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.stride[0] == conv.stride[1]
        and conv.padding[0] == conv.padding[1]
    )


class DeterministicConvMixin:
    """Routes ``_conv_forward`` of a CPU float32/float64 input through the deterministic kernel."""

    def _conv_forward(self, input, weight, bias):  # noqa: D102 - nn.Conv2d's hook, same signature
        if input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64) and input.dim() == 4:
            out = ConvFunction.apply(input, weight.to(input.dtype), self.stride[0], self.padding[0], get_backend("cpu"))
            return out if bias is None else out + bias.view(1, -1, 1, 1)
        return super()._conv_forward(input, weight, bias)


@functools.cache
def _deterministic_class(cls: type) -> type:
    return type(f"Deterministic{cls.__name__}", (DeterministicConvMixin, cls), {"__module__": cls.__module__})


def set_deterministic_convs(model: nn.Module, enabled: bool = True) -> int:
    """Switch the model's supported ``nn.Conv2d`` layers (and subclasses) to the deterministic kernel.

    The layers keep their parameters, state-dict keys and class behaviour (the class is swapped for a
    subclass that only overrides ``_conv_forward``); ``enabled=False`` restores the original classes.
    Needs the CPU kernel library (a C++ compiler); returns how many layers were switched (0 without it).
    """
    if enabled and not get_backend("auto", "cpu").name == "cpu":
        return 0
    count = 0
    for module in model.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        cls = type(module)
        if enabled and not isinstance(module, DeterministicConvMixin) and _supported(module):
            module.__class__ = _deterministic_class(cls)
            count += 1
        elif not enabled and isinstance(module, DeterministicConvMixin):
            module.__class__ = next(c for c in cls.__mro__[1:] if not issubclass(c, DeterministicConvMixin))
            count += 1
    return count
