"""GPU adder backend in Triton: implicit-im2col kernels for the forward and both input-gradient modes.

Forward: each program owns a tile of output positions (flattened N·Ho·Wo) × output channels and
reduces over C·kh·kw one tap at a time: a vector of input values (one per position, read straight from
the NCHW input with zero padding by masking — no im2col matrix exists) against a vector of filter
values (one per channel), accumulated as an outer "difference product" ``acc += |x ⊖ w|`` in registers.

Input gradient: each program owns a tile of *input* pixels × input channels and gathers, for every
kernel tap (i, j) that maps the pixel onto an output position, ``Σ_o g · f(w − x)`` — the col2im is done
by the gather itself, so there are no atomics and the summation order is fixed (deterministic).

Weight gradient: a GEMM plus a rank-one term (``AdderBackend.grad_weight``), i.e. cuDNN.

Expected speed: tensor cores compute products, not L1 distances, so these kernels run on the FP32
(CUDA-core) pipeline. Each (position, filter, tap) costs two FP32 instructions (a subtraction and an
add with the |·| operand modifier) where a convolution costs one FMA on tensor cores. On an H100
(~67 TFLOP/s FP32 = ~33 T FP32 instructions/s vs ~495 TFLOP/s dense TF32 tensor-core) the honest
ceiling for a compute-bound adder layer is therefore ≈ 2× a cuDNN FP32 (non-TF32) convolution and
≈ 15× a TF32 tensor-core convolution; small CIFAR layers are closer to memory- and launch-bound,
where the gap shrinks. ``robustadder bench kernels`` measures it on the machine at hand.

Tests run these kernels on the CPU under ``TRITON_INTERPRET=1`` (the interpreter executes the same
kernel code with numpy); there the backend accepts CPU tensors and uses one small fixed configuration.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .base import GradMode, output_size


def interpreting() -> bool:
    """Whether Triton runs in interpreter mode (set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _adder_forward_kernel(
    x_ptr, wt_ptr, y_ptr,
    N, C, H, W, OC, Ho, Wo, stride, pad,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr,
):  # fmt: skip
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # flattened (n, oy, ox)
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    L = Ho * Wo
    p_ok = p < N * L
    o_ok = o < OC
    n = p // L
    l = p % L  # noqa: E741
    iy0 = (l // Wo) * stride - pad
    ix0 = (l % Wo) * stride - pad
    x_base = n * C * H * W
    acc = tl.zeros((BLOCK_P, BLOCK_O), dtype=y_ptr.dtype.element_ty)
    for c in range(0, C):
        for i in tl.static_range(KH):
            iy = iy0 + i
            row_ok = p_ok & (iy >= 0) & (iy < H)
            for j in tl.static_range(KW):
                ix = ix0 + j
                # zero padding: padded taps read 0 and still count |0 − w|, as the official unfold does
                xv = tl.load(x_ptr + x_base + (c * H + iy) * W + ix, mask=row_ok & (ix >= 0) & (ix < W), other=0.0)
                wv = tl.load(wt_ptr + ((c * KH + i) * KW + j) * OC + o, mask=o_ok, other=0.0)
                acc += tl.abs(xv[:, None] - wv[None, :])
    y_off = (n[:, None] * OC + o[None, :]) * L + l[:, None]
    tl.store(y_ptr + y_off, -acc, mask=p_ok[:, None] & o_ok[None, :])


@triton.jit
def _adder_grad_input_kernel(
    x_ptr, w_ptr, g_ptr, dx_ptr,
    N, C, H, W, OC, Ho, Wo, stride, pad,
    EXACT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)  # flattened (n, iy, ix)
    cc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    HW = H * W
    q_ok = q < N * HW
    c_ok = cc < C
    n = q // HW
    r = q % HW
    iy = r // W
    ix = r % W
    x_off = (n[:, None] * C + cc[None, :]) * HW + r[:, None]
    mask = q_ok[:, None] & c_ok[None, :]
    xv = tl.load(x_ptr + x_off, mask=mask, other=0.0)
    acc = tl.zeros((BLOCK_Q, BLOCK_C), dtype=dx_ptr.dtype.element_ty)
    for i in tl.static_range(KH):
        ty = iy + pad - i  # = oy * stride when tap i of output row oy reads this pixel
        oy = ty // stride
        y_ok = q_ok & (ty >= 0) & (ty % stride == 0) & (oy < Ho)
        for j in tl.static_range(KW):
            tx = ix + pad - j
            ox = tx // stride
            ok = y_ok & (tx >= 0) & (tx % stride == 0) & (ox < Wo)
            for o in range(0, OC):
                gv = tl.load(g_ptr + ((n * OC + o) * Ho + oy) * Wo + ox, mask=ok, other=0.0)
                wv = tl.load(w_ptr + ((o * C + cc) * KH + i) * KW + j, mask=c_ok, other=0.0)
                d = wv[None, :] - xv
                if EXACT:
                    f = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
                else:
                    f = tl.minimum(tl.maximum(d, -1.0), 1.0)
                acc += gv[:, None] * f
    tl.store(dx_ptr + x_off, acc, mask=mask)


# Autotuning candidates: tiles from one warp's worth to 256×64, narrow channel tiles for the 16-channel
# stage, and several warp counts (the first ResNet stage has 16 filters: a 64-wide channel tile would idle
# three quarters of its lanes, which the tuner sees and avoids).
_FWD_CONFIGS = [
    triton.Config({"BLOCK_P": bp, "BLOCK_O": bo}, num_warps=nw)
    for bp, bo, nw in [
        (64, 16, 2), (128, 16, 4), (256, 16, 4), (256, 16, 8), (64, 32, 4), (128, 32, 4), (256, 32, 8),
        (64, 64, 4), (128, 64, 8), (32, 64, 2),
    ]
]  # fmt: skip
_BWD_CONFIGS = [
    triton.Config({"BLOCK_Q": bq, "BLOCK_C": bc}, num_warps=nw)
    for bq, bc, nw in [
        (64, 16, 2), (64, 16, 4), (128, 16, 4), (256, 16, 8), (64, 32, 4), (128, 32, 8), (256, 32, 8), (32, 64, 4),
        (64, 64, 8),
    ]
]  # fmt: skip
_INTERPRET_FWD = {"BLOCK_P": 16, "BLOCK_O": 8}
_INTERPRET_BWD = {"BLOCK_Q": 16, "BLOCK_C": 4}

if interpreting():  # autotuning times kernels with CUDA events: not in the interpreter
    _forward_kernel = _adder_forward_kernel
    _grad_input_kernel = _adder_grad_input_kernel
else:  # pragma: no cover - needs a GPU
    _forward_kernel = triton.autotune(_FWD_CONFIGS, key=["C", "OC", "Ho", "Wo", "KH", "stride"])(_adder_forward_kernel)
    _grad_input_kernel = triton.autotune(_BWD_CONFIGS, key=["C", "OC", "H", "W", "KH", "stride"])(_adder_grad_input_kernel)


def chosen_config(kernel: str) -> str | None:
    """The tile configuration the autotuner chose at the kernel's most recent launch (None if not tuned)."""
    fn = _forward_kernel if kernel == "forward" else _grad_input_kernel
    best = getattr(fn, "best_config", None)
    if best is None:
        return None
    return ", ".join(f"{k}={v}" for k, v in best.kwargs.items()) + f", num_warps={best.num_warps}"


def forward(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """Adder forward on CUDA tensors (or CPU tensors under the interpreter)."""
    x = x.contiguous()
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
    wt = w.to(x.dtype).reshape(o, -1).t().contiguous()
    y = torch.empty(n, o, ho, wo, device=x.device, dtype=x.dtype)
    args = (x, wt, y, n, c, h, wd, o, ho, wo, stride, padding)
    if interpreting():
        cfg = _INTERPRET_FWD
        grid = (triton.cdiv(n * ho * wo, cfg["BLOCK_P"]), triton.cdiv(o, cfg["BLOCK_O"]))
        _forward_kernel[grid](*args, KH=kh, KW=kw, **cfg)
    else:  # pragma: no cover - needs a GPU

        def grid(meta):
            return triton.cdiv(n * ho * wo, meta["BLOCK_P"]), triton.cdiv(o, meta["BLOCK_O"])

        _forward_kernel[grid](*args, KH=kh, KW=kw)
    return y


def grad_input(
    x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int, mode: GradMode
) -> torch.Tensor:
    """dL/dX in ``mode`` on CUDA tensors (or CPU tensors under the interpreter)."""
    x = x.contiguous()
    w = w.to(x.dtype).contiguous()
    g = grad_out.to(x.dtype).contiguous()
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = g.shape[2:]
    dx = torch.empty_like(x)
    args = (x, w, g, dx, n, c, h, wd, o, ho, wo, stride, padding)
    exact = mode == "exact"
    if interpreting():
        cfg = _INTERPRET_BWD
        grid = (triton.cdiv(n * h * wd, cfg["BLOCK_Q"]), triton.cdiv(c, cfg["BLOCK_C"]))
        _grad_input_kernel[grid](*args, EXACT=exact, KH=kh, KW=kw, **cfg)
    else:  # pragma: no cover - needs a GPU

        def grid(meta):
            return triton.cdiv(n * h * wd, meta["BLOCK_Q"]), triton.cdiv(c, meta["BLOCK_C"])

        _grad_input_kernel[grid](*args, EXACT=exact, KH=kh, KW=kw)
    return dx
