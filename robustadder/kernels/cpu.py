"""Fast CPU adder backend: a tiled SIMD kernel in C++, compiled on first use and cached on disk.

Why a hand-written kernel: an adder layer is a GEMM-shaped reduction with ``|a − b|`` in place of
``a·b``, which no BLAS provides. The kernel (``adder_cpu.cc``) uses an implicit im2col: each thread
copies its sample into a zero-padded buffer; per tile of 2 vectors of output positions it reads the
tile's slice of the im2col matrix in place (stride 1) or gathers it into a per-thread buffer that stays
in cache, then runs a register-blocked reduction — (positions × 4 or 8 filters) for the forward,
(positions × 2 or 4 input rows, reduced over filters) for the input gradient, which is folded straight
back into dx. A sample whose inputs are all ≥ 0 (ReLU outputs: every adder layer of a ResNet) takes
sign-split paths instead, on wider tiles read in place through the input's stride phases: the terms whose
value the signs decide (``min(x, w) = w`` for ``w ≤ 0``; a gradient term that is ``−g`` whatever x is) are
folded into per-call and per-tile sums, so only about half the terms are computed. No im2col matrix is
materialized at all: the temporaries are a few tile buffers and one padded sample (and its padded
gradient, and their stride phases) per thread. Every output is reduced by one thread in a fixed order,
every sample's input gradient is accumulated by one thread, and a sample's path depends on its own values
only, so results are deterministic and independent of thread count, batch size and batch composition.

Why not ``torch.compile``: it reaches similar forward speed but costs tens of seconds of compilation
per process shape set (seconds with a warm cache), needs the same compiler, and gives no control over
the backward's memory. This kernel compiles in about a second with the system C++ compiler, once per
machine: the shared object is cached under ``$ROBUSTADDER_KERNEL_CACHE`` (default
``$ROBUSTADDER_HOME/kernels``), keyed by the source, compiler, flags and the CPU's instruction sets.
It is loaded with ``ctypes`` (no torch headers, no Python extension ABI) and shares torch's OpenMP
runtime. The weight gradient is a GEMM (``AdderBackend.grad_weight``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ..fetch import file_digest, robustadder_home
from ..fileio import atomic_write
from .base import AdderBackend, GradMode, output_size

_SOURCES = ("adder_cpu.cc",)
_FLAGS = ["-O3", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
#: input-gradient modes of the library: the adder's two, and the multiplicative convolution's
_GRAD_MODES = {"surrogate": 0, "exact": 1, "conv": 2}

#: how the shared object was obtained in this process: path, whether it was compiled now, seconds, variant
BUILD_INFO: dict[str, object] = {}


def kernel_cache_dir() -> Path:
    """Where compiled kernels are cached across processes."""
    return Path(os.environ.get("ROBUSTADDER_KERNEL_CACHE") or robustadder_home() / "kernels")


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def default_march() -> str:
    """The ``-march`` the library is built for: ``$ROBUSTADDER_KERNEL_MARCH`` or ``native``."""
    return os.environ.get("ROBUSTADDER_KERNEL_MARCH") or "native"


def _verified(path: Path) -> bool:
    """Whether a cached library is complete: its sha256 matches the one recorded when it was built.

    A library cut short (a full disk, a killed copy) maps fine and then kills the process with SIGBUS
    at the first call into a missing page; checking the digest first turns that into a rebuild.
    """
    stamp = path.with_name(path.name + ".sha256")
    try:
        return path.is_file() and stamp.read_text().strip() == file_digest(path)
    except OSError:
        return False


@functools.lru_cache(maxsize=4)
def load_library(march: str | None = None) -> ctypes.CDLL:
    """Compile (once per machine and ``march``) and load the kernel library; RuntimeError when impossible.

    ``march`` is the target instruction set (``native`` by default; ``haswell`` builds the AVX2 code
    path on any x86-64 machine whose CPU runs it). The cache key covers the source, compiler, flags,
    target and the CPU's features; a cached library is loaded only after its sha256 is verified.
    """
    march = march or default_march()
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    here = Path(__file__).parent
    flags = [f"-march={march}", *_FLAGS]
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    h.update(" ".join([version, *flags, _cpu_signature()]).encode())
    path = kernel_cache_dir() / f"adder_cpu-{h.hexdigest()[:16]}.so"
    start = time.perf_counter()
    compiled = False
    if not _verified(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".adder_cpu-", suffix=".so", dir=path.parent)
        os.close(fd)
        try:
            proc = subprocess.run([cxx, *flags, str(here / "adder_cpu.cc"), "-o", tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"compiling the CPU adder kernel failed: {proc.stderr.strip()[:500]}")
            os.chmod(tmp, 0o755)
            digest = file_digest(tmp)
            os.replace(tmp, path)  # atomic: concurrent processes never load a half-written library
            atomic_write(path.with_name(path.name + ".sha256"), lambda fh: fh.write(f"{digest}\n".encode()))
            compiled = True
        finally:
            Path(tmp).unlink(missing_ok=True)
    lib = ctypes.CDLL(str(path))
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for sfx in _SUFFIX.values():
        getattr(lib, f"adder_forward_{sfx}").argtypes = [ptr] * 4 + [i64] * 11 + [cint, cint]
        getattr(lib, f"adder_grad_input_{sfx}").argtypes = [ptr] * 5 + [i64] * 11 + [cint, cint]
        getattr(lib, f"adder_scratch_per_thread_{sfx}").argtypes = [i64, i64]
        getattr(lib, f"adder_scratch_per_thread_{sfx}").restype = i64
    lib.adder_build_variant.restype = ctypes.c_char_p
    if march == default_march():
        BUILD_INFO.update(path=str(path), compiled=compiled, seconds=time.perf_counter() - start, march=march,
                          variant=lib.adder_build_variant().decode())  # fmt: skip
    return lib


class CpuBackend(AdderBackend):
    """Tiled SIMD kernels for float32/float64 CPU tensors (``march``: the target instruction set)."""

    name = "cpu"
    device_types = ("cpu",)

    def __init__(self, march: str | None = None) -> None:
        self.march = march

    def available(self, device: torch.device) -> tuple[bool, str]:
        if device.type != "cpu":
            return False, "it computes on the CPU only"
        try:
            load_library(self.march)
        except (RuntimeError, OSError) as exc:
            return False, str(exc)
        return True, ""

    def _prepare(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int):
        for t in (x, w):
            if t.dtype not in _SUFFIX or t.device.type != "cpu":
                raise TypeError(f"cpu adder backend supports float32/float64 CPU tensors, not {t.dtype} on {t.device}")
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        ho, wo = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
        threads = torch.get_num_threads()
        lib, sfx = load_library(self.march), _SUFFIX[x.dtype]
        per_thread = getattr(lib, f"adder_scratch_per_thread_{sfx}")(c * kh * kw, o)
        scratch = torch.empty(threads * per_thread, dtype=x.dtype)  # tile buffers: a few KiB per thread
        geometry = (n, c, h, wd, kh, kw, stride, padding, ho, wo, o)
        return lib, sfx, geometry, scratch, threads

    def _forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, conv: bool) -> torch.Tensor:
        x, w = x.contiguous(), w.to(x.dtype)
        lib, sfx, geom, scratch, threads = self._prepare(x, w, stride, padding)
        wt = w.reshape(w.shape[0], -1).t().contiguous()
        y = torch.empty(geom[0], geom[-1], geom[8], geom[9], dtype=x.dtype)
        getattr(lib, f"adder_forward_{sfx}")(
            x.data_ptr(), wt.data_ptr(), y.data_ptr(), scratch.data_ptr(), *geom, int(conv), threads
        )
        return y

    def _grad_input(self, x, w, grad_out, stride: int, padding: int, mode: str) -> torch.Tensor:
        x, w, g = x.contiguous(), w.to(x.dtype).contiguous(), grad_out.to(x.dtype).contiguous()
        lib, sfx, geom, scratch, threads = self._prepare(x, w, stride, padding)
        dx = torch.empty_like(x)
        getattr(lib, f"adder_grad_input_{sfx}")(
            x.data_ptr(), w.data_ptr(), g.data_ptr(), dx.data_ptr(), scratch.data_ptr(), *geom,
            _GRAD_MODES[mode], threads,
        )  # fmt: skip
        return dx

    def forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        return self._forward(x, w, stride, padding, conv=False)

    def grad_input(
        self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int, mode: GradMode
    ) -> torch.Tensor:
        return self._grad_input(x, w, grad_out, stride, padding, mode)

    def conv_forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        """The multiplicative convolution (no bias) with the adder kernel's fixed reduction order."""
        return self._forward(x, w, stride, padding, conv=True)

    def conv_grad_input(
        self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int
    ) -> torch.Tensor:
        """dL/dX of the multiplicative convolution, accumulated per sample in a fixed order."""
        return self._grad_input(x, w, grad_out, stride, padding, "conv")
