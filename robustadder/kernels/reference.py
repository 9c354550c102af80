"""Reference adder backend: the formulas of docs/design.md §2, literally, in bounded memory.

This backend exists to be *obviously correct*: each quantity is computed as a broadcast difference of
the unfolded input against the filters, exactly as written in the formulas, so that every faster backend
can be tested against it. The official implementation materializes the full (O, C·k², N·H·W) difference
(2.25 GiB per temporary for ResNet-20 stage 1 at batch 256); here the output is tiled into chunks of
samples × output rows × output columns × filters, sized so that the largest temporary — the broadcast
difference of one chunk — stays within ``budget_bytes`` whatever the batch size. Each chunk unfolds
only the input window it needs, padding it locally, so not even a padded copy of the whole batch exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import AdderBackend, GradMode, output_size

DEFAULT_BUDGET_BYTES = 256 * 2**20


@dataclass(frozen=True)
class _Chunk:
    n0: int
    n1: int
    r0: int
    r1: int
    c0: int
    c1: int


@dataclass(frozen=True)
class ChunkPlan:
    """How the output is tiled: samples, rows, columns and filters per chunk."""

    samples: int
    rows: int
    cols: int
    filters: int

    def temp_bytes(self, k: int, elem: int) -> int:
        """Size of the largest temporary of one chunk (the broadcast difference)."""
        return self.samples * self.rows * self.cols * self.filters * k * elem


def plan_chunks(n: int, o: int, k: int, hout: int, wout: int, elem: int, budget_bytes: int) -> ChunkPlan:
    """Largest tiling whose broadcast difference fits the budget (at least one position, one filter)."""
    pairs = max(1, budget_bytes // (k * elem))  # (position, filter) pairs that fit
    filters = min(o, pairs)
    positions = max(1, pairs // filters)
    per_sample = hout * wout
    if positions >= per_sample:
        return ChunkPlan(min(n, positions // per_sample), hout, wout, filters)
    if positions >= wout:
        return ChunkPlan(1, positions // wout, wout, filters)
    return ChunkPlan(1, 1, positions, filters)


def _ranges(total: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, step):
        yield start, min(total, start + step)


class ReferenceBackend(AdderBackend):
    """Exact, chunked, slow: the yardstick for every other backend."""

    name = "reference"

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes < 1:
            raise ValueError("budget_bytes must be positive")
        self.budget_bytes = budget_bytes

    # -- tiling -------------------------------------------------------------------------------------
    def _chunks(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int):
        n, _, h, wd = x.shape
        o, c, kh, kw = w.shape
        hout, wout = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
        plan = plan_chunks(n, o, c * kh * kw, hout, wout, x.element_size(), self.budget_bytes)
        chunks = [
            _Chunk(n0, n1, r0, r1, c0, c1)
            for n0, n1 in _ranges(n, plan.samples)
            for r0, r1 in _ranges(hout, plan.rows)
            for c0, c1 in _ranges(wout, plan.cols)
        ]
        return plan, hout, wout, chunks

    @staticmethod
    def _window(x: torch.Tensor, ch: _Chunk, kh: int, kw: int, stride: int, padding: int):
        """The zero-padded input window that output rows/cols of ``ch`` read, and where it lies in x.

        Returns the window and ``(a, b, pad_top, e, f, pad_left)``: rows ``a:b`` and columns ``e:f`` of
        the unpadded input are inside the window, starting at offset ``(pad_top, pad_left)``.
        """
        h, wd = x.shape[2:]
        top, bottom = ch.r0 * stride - padding, (ch.r1 - 1) * stride + kh - padding
        left, right = ch.c0 * stride - padding, (ch.c1 - 1) * stride + kw - padding
        a, b = min(max(top, 0), h), min(max(bottom, 0), h)
        e, f = min(max(left, 0), wd), min(max(right, 0), wd)
        pad_top, pad_left = a - top, e - left
        pads = (pad_left, (right - left) - (f - e) - pad_left, pad_top, (bottom - top) - (b - a) - pad_top)
        win = F.pad(x[ch.n0 : ch.n1, :, a:b, e:f], pads)
        return win, (a, b, pad_top, e, f, pad_left)

    @staticmethod
    def _cols(win: torch.Tensor, kh: int, kw: int, stride: int) -> torch.Tensor:
        """Unfolded window as (n, positions, C·kh·kw)."""
        return F.unfold(win, (kh, kw), stride=stride).transpose(1, 2)

    # -- the three quantities -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        o, _, kh, kw = w.shape
        plan, hout, wout, chunks = self._chunks(x, w, stride, padding)
        wcol = w.reshape(o, -1)
        out = x.new_empty(x.shape[0], o, hout, wout)
        for ch in chunks:
            win, _ = self._window(x, ch, kh, kw, stride, padding)
            cols = self._cols(win, kh, kw, stride)
            n, rows, ncols = ch.n1 - ch.n0, ch.r1 - ch.r0, ch.c1 - ch.c0
            for o0, o1 in _ranges(o, plan.filters):
                diff = cols.unsqueeze(2) - wcol[o0:o1]  # (n, P, oc, K)
                dist = diff.abs_().sum(-1)  # (n, P, oc)
                out[ch.n0 : ch.n1, o0:o1, ch.r0 : ch.r1, ch.c0 : ch.c1] = -dist.transpose(1, 2).reshape(n, o1 - o0, rows, ncols)
        return out

    def grad_input(
        self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int, mode: GradMode
    ) -> torch.Tensor:
        o, _, kh, kw = w.shape
        plan, _, _, chunks = self._chunks(x, w, stride, padding)
        wcol = w.reshape(o, -1)
        grad_x = torch.zeros_like(x)
        for ch in chunks:
            win, (a, b, pt, e, f, pl) = self._window(x, ch, kh, kw, stride, padding)
            cols = self._cols(win, kh, kw, stride)
            n = ch.n1 - ch.n0
            dcols = torch.zeros_like(cols)
            for o0, o1 in _ranges(o, plan.filters):
                diff = wcol[o0:o1] - cols.unsqueeze(2)  # (n, P, oc, K): W − X
                diff = diff.clamp_(-1.0, 1.0) if mode == "surrogate" else diff.sign_()
                g = grad_out[ch.n0 : ch.n1, o0:o1, ch.r0 : ch.r1, ch.c0 : ch.c1]
                diff.mul_(g.reshape(n, o1 - o0, -1).transpose(1, 2).unsqueeze(-1))
                dcols += diff.sum(2)
            dwin = F.fold(dcols.transpose(1, 2), win.shape[2:], (kh, kw), stride=stride)
            grad_x[ch.n0 : ch.n1, :, a:b, e:f] += dwin[:, :, pt : pt + b - a, pl : pl + f - e]
        return grad_x

    def grad_weight(self, x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        o, _, kh, kw = w.shape
        plan, _, _, chunks = self._chunks(x, w, stride, padding)
        wcol = w.reshape(o, -1)
        grad_w = torch.zeros_like(wcol)
        for ch in chunks:
            win, _ = self._window(x, ch, kh, kw, stride, padding)
            cols = self._cols(win, kh, kw, stride)
            n = ch.n1 - ch.n0
            for o0, o1 in _ranges(o, plan.filters):
                diff = cols.unsqueeze(2) - wcol[o0:o1]  # (n, P, oc, K): X − W
                g = grad_out[ch.n0 : ch.n1, o0:o1, ch.r0 : ch.r1, ch.c0 : ch.c1]
                diff.mul_(g.reshape(n, o1 - o0, -1).transpose(1, 2).unsqueeze(-1))
                grad_w[o0:o1] += diff.sum(dim=(0, 1))
        return grad_w.view_as(w)
