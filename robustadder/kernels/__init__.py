"""Adder compute backends and their selection.

A backend is chosen by name (``reference``, ``cpu``, ``triton``) or ``auto``, which picks the fastest
backend that is correct on the tensor's device: ``cpu`` (tiled SIMD kernel) on CPUs, ``triton`` on CUDA
GPUs, and the chunked ``reference`` wherever neither can run (no C++ compiler, other devices). All agree
with the reference to float rounding; the tests hold them to it.
"""

from __future__ import annotations

import sys

import torch

from ..errors import UserError
from .base import GRAD_MODES, AdderBackend, GradMode, output_size
from .cpu import CpuBackend
from .gpu import TritonBackend
from .reference import ReferenceBackend

__all__ = [
    "GRAD_MODES",
    "AdderBackend",
    "CpuBackend",
    "GradMode",
    "ReferenceBackend",
    "TritonBackend",
    "backend_names",
    "get_backend",
    "output_size",
    "register_backend",
]

# name -> backend, in ``auto`` preference order (fastest first); the reference is always last.
_REGISTRY: dict[str, AdderBackend] = {}


def register_backend(backend: AdderBackend, *, preferred: bool = True) -> None:
    """Add a backend; ``preferred`` puts it ahead of those already registered for ``auto``."""
    global _REGISTRY
    others = {k: v for k, v in _REGISTRY.items() if k != backend.name}
    _REGISTRY = {backend.name: backend, **others} if preferred else {**others, backend.name: backend}


def backend_names() -> tuple[str, ...]:
    """Names accepted by ``--backend``."""
    return ("auto", *_REGISTRY)


_SAID: set[str] = set()


def _say_fallback(device: torch.device, reasons: list[str]) -> None:
    """Say once per process that a faster backend could not be used, and why (never silently slow)."""
    key = f"{device.type}|{'|'.join(reasons)}"
    if key not in _SAID:
        _SAID.add(key)
        print(f"note: using the slow reference adder backend on {device.type} ({'; '.join(reasons)})", file=sys.stderr)


def get_backend(name: str | AdderBackend, device: torch.device | str = "cpu") -> AdderBackend:
    """Resolve a backend name (or ``auto``) for ``device``; a user-chosen one must be available there."""
    if isinstance(name, AdderBackend):
        return name
    device = torch.device(device)
    if name == "auto":
        passed_over = []
        for backend in _REGISTRY.values():
            if device.type not in backend.device_types:
                continue  # e.g. Triton's CPU interpreter: a test aid, never the automatic choice
            ok, why = backend.available(device)
            if ok:
                if backend.name == "reference" and passed_over:
                    _say_fallback(device, passed_over)
                return backend
            passed_over.append(f"{backend.name}: {why}")  # a backend meant for this device cannot run here
        raise RuntimeError(f"no adder backend available on {device}")  # the reference always is
    if name not in _REGISTRY:
        raise UserError(f"unknown adder backend '{name}': choose one of {', '.join(backend_names())}")
    backend = _REGISTRY[name]
    ok, why = backend.available(device)
    if not ok:
        raise UserError(f"adder backend '{name}' cannot run on {device}: {why}; use --backend auto")
    return backend


# auto order: cpu, triton, reference
register_backend(ReferenceBackend())
register_backend(TritonBackend())
register_backend(CpuBackend())
