"""The adder layer: Y = −Σ|X − W| with the official AdderNet semantics (huawei-noah/AdderNet, docs/design.md §2).

Two things make an adder layer differ from "a conv with a different inner product":

* Its **input gradient** is a design choice. The official layer back-propagates the surrogate
  ``HardTanh(W − X)`` instead of the true subgradient ``sign(W − X)``. White-box attacks follow whatever
  the layer returns, so an honest robustness evaluation must be able to run both: ``grad_mode`` is
  ``"surrogate"`` (official) or ``"exact"``, per layer or for a whole model (:func:`set_grad_mode`).
* Its **weight gradient** is the full-precision ``Σ (X − W)·g``, rescaled per layer to norm
  ``η·sqrt(numel)`` (the adaptive learning rate, η = 0.2). ``eta=None`` switches the rescaling off.
  With AWN the rescaling applies to the gradient of the raw weight ``adder`` (the parameter the
  adaptive learning rate was designed for), not to the gradient of the reparametrized weight: rescaling
  the latter would hand the per-filter gains an artificially amplified gradient, and they grow without
  bound (measured: gains of 100–190 after three epochs, BN running statistics hundreds of standard
  deviations off, test accuracy stuck at 10 %).

The arithmetic is delegated to a backend (``robustadder.kernels``) chosen by name per call, so a fast
kernel can be swapped in without touching these semantics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..kernels import GRAD_MODES, AdderBackend, GradMode, get_backend
from .awn import AWN_EPS, awn_weight

DEFAULT_ETA = 0.2


def adaptive_scale(grad_w: torch.Tensor, eta: float | None) -> torch.Tensor:
    """Rescale a weight gradient to norm η·sqrt(numel) (official adaptive learning rate)."""
    if eta is None:
        return grad_w
    return grad_w * (eta * math.sqrt(grad_w.numel()) / grad_w.norm(p=2).clamp(min=1e-12))


class AdderFunction(torch.autograd.Function):
    """Autograd function of the adder layer; the backend computes, this class decides what."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, grad_mode, eta, backend):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, grad_mode, eta, backend)
        return backend.forward(x, weight, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        stride, padding, grad_mode, eta, backend = ctx.conf
        grad_out = grad_out.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = backend.grad_input(x, weight, grad_out, stride, padding, grad_mode)
        if ctx.needs_input_grad[1]:
            grad_w = adaptive_scale(backend.grad_weight(x, weight, grad_out, stride, padding), eta)
        return grad_x, grad_w, None, None, None, None, None


def adder2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int = 1,
    padding: int = 0,
    *,
    grad_mode: GradMode = "surrogate",
    eta: float | None = DEFAULT_ETA,
    backend: str | AdderBackend = "auto",
) -> torch.Tensor:
    """Functional adder convolution (no bias); see :class:`Adder2d`."""
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, not {grad_mode!r}")
    if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"adder2d: input {tuple(x.shape)} does not fit weight {tuple(weight.shape)}")
    impl = get_backend(backend, x.device)
    return AdderFunction.apply(x, weight, stride, padding, grad_mode, eta, impl)


class Adder2d(nn.Module):
    """Adder convolution with the official parameter names (``adder``, optional bias ``b``).

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as ``nn.Conv2d`` (square kernels,
            zero padding, no dilation or groups — what the official layer supports).
        bias: add a learnable per-channel bias ``b`` (official default: no bias).
        awn: use the AWN-reparametrized weight (docs/design.md §4); adds the per-filter gain ``awn_gain``.
        grad_mode: input gradient, ``"surrogate"`` (HardTanh, official) or ``"exact"`` (sign).
        eta: adaptive weight-gradient scale η (official 0.2); ``None`` leaves the gradient unscaled.
        backend: compute backend name or instance (``"auto"`` picks the fastest for the device).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        *,
        awn: bool = False,
        grad_mode: GradMode = "surrogate",
        eta: float | None = DEFAULT_ETA,
        backend: str | AdderBackend = "auto",
    ) -> None:
        super().__init__()
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode must be one of {GRAD_MODES}, not {grad_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.grad_mode: GradMode = grad_mode
        self.eta = eta
        self.backend = backend
        # official initialisation: standard normal weights, uniform [0, 1) bias
        self.adder = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.b = nn.Parameter(torch.rand(out_channels)) if bias else None
        self.awn = awn
        self.awn_eps = AWN_EPS
        self.awn_form = "standardize"  # see awn.AWN_FORMS
        # where the adaptive learning rate acts under AWN: "raw" (the stored weight's gradient, the default)
        # or "normalized" (the gradient of the weight the forward uses, as without AWN); training only
        self.awn_eta = "raw"
        self.awn_gain = nn.Parameter(torch.ones(out_channels)) if awn else None
        if awn:
            self.adder.register_hook(self._scale_raw_gradient)

    def _scale_raw_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """AWN: the adaptive learning rate acts on the raw weight's gradient (see the module docstring)."""
        return adaptive_scale(grad, self.eta) if self.awn_eta == "raw" else grad

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward actually uses (AWN-reparametrized when ``awn``)."""
        if self.awn_gain is None:
            return self.adder
        return awn_weight(self.adder, self.awn_gain, self.awn_eps, self.awn_form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = adder2d(
            x,
            self.effective_weight(),
            self.stride,
            self.padding,
            grad_mode=self.grad_mode,
            eta=None if self.awn and self.awn_eta == "raw" else self.eta,  # AWN: by default the raw gradient is rescaled
            backend=self.backend,
        )
        if self.b is not None:
            out = out + self.b.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.b is not None}"
        )
        return s + f", awn={self.awn}, grad_mode={self.grad_mode}, eta={self.eta}"


def adder_layers(model: nn.Module) -> list[Adder2d]:
    """All adder layers of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, Adder2d)]


def set_grad_mode(model: nn.Module, mode: GradMode) -> None:
    """Set the input-gradient mode of every adder layer of ``model``."""
    if mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, not {mode!r}")
    for layer in adder_layers(model):
        layer.grad_mode = mode


def set_backend(model: nn.Module, backend: str | AdderBackend) -> None:
    """Set the compute backend of every adder layer of ``model``."""
    for layer in adder_layers(model):
        layer.backend = backend


@contextmanager
def adder_settings(
    model: nn.Module, *, grad_mode: GradMode | None = None, backend: str | AdderBackend | None = None
) -> Iterator[nn.Module]:
    """Temporarily set grad mode and/or backend of every adder layer; restores each layer's own."""
    layers = adder_layers(model)
    saved = [(layer.grad_mode, layer.backend) for layer in layers]
    try:
        if grad_mode is not None:
            set_grad_mode(model, grad_mode)
        if backend is not None:
            set_backend(model, backend)
        yield model
    finally:
        for layer, (mode, impl) in zip(layers, saved, strict=True):
            layer.grad_mode, layer.backend = mode, impl
