"""Direct loop implementations of the adder formulas (docs/design.md §2), written for clarity, not speed."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _geometry(x, w, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = F.pad(x, (padding,) * 4)
    return n, o, kh, kw, xp, (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1


def loop_forward(x, w, stride, padding):
    n, o, kh, kw, xp, ho, wo = _geometry(x, w, stride, padding)
    y = torch.zeros(n, o, ho, wo, dtype=x.dtype)
    for b in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[b, f, i, j] = -(patch - w[f]).abs().sum()
    return y


def loop_grads(x, w, g, stride, padding, mode):
    """(dL/dX in ``mode``, full-precision unscaled dL/dW) by explicit accumulation."""
    n, o, kh, kw, xp, ho, wo = _geometry(x, w, stride, padding)
    gxp = torch.zeros_like(xp)
    gw = torch.zeros_like(w)
    for b in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    sl = (b, slice(None), slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw))
                    d = w[f] - xp[sl]
                    fd = d.clamp(-1, 1) if mode == "surrogate" else d.sign()
                    gxp[sl] += g[b, f, i, j] * fd
                    gw[f] += (xp[sl] - w[f]) * g[b, f, i, j]
    h, wd = x.shape[2:]
    return gxp[:, :, padding : padding + h, padding : padding + wd], gw
