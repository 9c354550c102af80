"""The Triton backend's registry entry: availability and lazy import of the kernels.

Importing triton costs time and may not be installed (it comes with CUDA builds of torch), so the
kernels module is imported only when the backend is used.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from .base import AdderBackend, GradMode


class TritonBackend(AdderBackend):
    """Triton kernels on CUDA; on CPU tensors only under ``TRITON_INTERPRET=1`` (for tests)."""

    name = "triton"
    device_types = ("cuda",)

    def available(self, device: torch.device) -> tuple[bool, str]:
        if importlib.util.find_spec("triton") is None:
            return False, "triton is not installed"
        if device.type == "cuda":
            return (True, "") if torch.cuda.is_available() else (False, "no CUDA GPU is available")
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
            return True, ""
        return False, "it needs a CUDA GPU (or TRITON_INTERPRET=1 to interpret the kernels on the CPU)"

    def forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        from . import triton_adder

        return triton_adder.forward(x, w, stride, padding)

    def grad_input(
        self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int, mode: GradMode
    ) -> torch.Tensor:
        from . import triton_adder

        return triton_adder.grad_input(x, w, grad_out, stride, padding, mode)
