"""The contract every adder compute backend fulfils.

The adder layer (``robustadder.nn.Adder2d``) owns the semantics — which gradient mode, the adaptive
weight-gradient scaling, the bias; a backend only computes three tensors. Keeping the contract this
small is what lets a fast kernel be swapped in and checked against the reference on equal terms.

Notation (docs/design.md §2), for input X (N, C, H, W) and weight W (O, C, kh, kw), zero padding p, stride s,
and Xpad the zero-padded input unfolded at every output position:

* forward:       Y[n, o, y, x]   = − Σ_K | Xpad[n, K, y, x] − W[o, K] |
* grad_input:    dX (folded)     = Σ_o g[n, o, y, x] · f(W[o, K] − Xpad[n, K, y, x])
                 f = clamp(·, −1, 1) for mode ``surrogate`` (official), sign(·) for mode ``exact``
* grad_weight:   dW[o, K]        = Σ_{n, y, x} (Xpad[n, K, y, x] − W[o, K]) · g[n, o, y, x]
                 (full precision, *before* the adaptive scaling the layer applies)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch

GradMode = Literal["surrogate", "exact"]
GRAD_MODES: tuple[str, ...] = ("surrogate", "exact")


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a sliding window, as ``F.unfold``/``F.conv2d`` compute it."""
    return (size + 2 * padding - kernel) // stride + 1


class AdderBackend(ABC):
    """One way of computing the adder layer's forward and gradients."""

    #: registry name, as given to ``--backend``
    name: str = ""
    #: the device types the backend is meant for (``auto`` says so when one of them cannot be used)
    device_types: tuple[str, ...] = ("cpu", "cuda")

    def available(self, device: torch.device) -> tuple[bool, str]:
        """Whether this backend can run on ``device``; the string says why not."""
        return True, ""

    @abstractmethod
    def forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        """Y = −Σ|X − W| for every output position; shape (N, O, Hout, Wout)."""

    @abstractmethod
    def grad_input(
        self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int, mode: GradMode
    ) -> torch.Tensor:
        """dL/dX in the given mode; shape of ``x``."""

    def grad_weight(self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        """Full-precision dL/dW = Σ (X − W)·g, unscaled; shape of ``w``.

        Σ_{n,pos} X·g is exactly the convolution weight gradient and Σ W·g factorizes, so this is one
        GEMM plus a rank-one correction on every device — no backend needs its own version.
        """
        gx = torch.nn.grad.conv2d_weight(x, w.shape, grad_out, stride=stride, padding=padding)
        return gx - w * grad_out.sum(dim=(0, 2, 3)).view(-1, 1, 1, 1)
