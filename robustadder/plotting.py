r"""Figures as bytes, with user text shown as typed: the one place matplotlib is set up.

Model labels, sweep names and attack names are user text. Matplotlib reads a pair of ``$`` as mathtext,
so a label such as ``net$1`` crashed the plot and ``$\alpha$`` rendered as a Greek letter; every figure
is therefore drawn with ``text.parse_math`` off (no figure of the project uses mathtext). A figure is
rendered to bytes in memory and only then written (atomically, by :mod:`robustadder.fileio`), so a
failing plot or a full disk never leaves a half-written or empty file behind.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from .errors import UserError


@contextlib.contextmanager
def plain_text_figures() -> Iterator[Any]:
    """``matplotlib.pyplot`` on the Agg backend with mathtext off, for the duration of the block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield plt


def figure_bytes(fig: Any, fmt: str = "png", dpi: float | None = None) -> bytes:
    """The figure in ``fmt`` (png, pdf, svg, ...; what matplotlib supports), then closed."""
    import matplotlib.pyplot as plt

    fmt = fmt.lower()
    try:
        supported = fig.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise UserError(f"cannot write a plot as '.{fmt}': use one of {', '.join('.' + k for k in sorted(supported))}")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, **({"dpi": dpi} if dpi else {}))
        return buf.getvalue()
    finally:
        plt.close(fig)


def finish_robustness(
    fig: Any, ax: Any, title: str, path: Any = None, format: str | None = None, title_size: int = 9, eps_note: str = ""
) -> bytes:
    """``finish`` for a robust accuracy (%) over L∞ eps (×1/255) plot: the axes' labels, grid and legend, one way."""
    ax.set_xlabel("L∞ eps (×1/255)" + (f"; {eps_note}" if eps_note else ""))
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path, format)


def finish(fig: Any, path: Any = None, format: str | None = None) -> bytes:
    """Lay out and render a figure in ``format`` (default: ``path``'s extension, else PNG).

    With ``path`` it is also written there, atomically and never over a file this process read: the one
    ending of every plotting function that writes.
    """
    from pathlib import Path

    from .fileio import write_output

    fmt = (format or (Path(path).suffix.lstrip(".") if path is not None else "") or "png").lower()
    fig.tight_layout()
    data = figure_bytes(fig, fmt)
    if path is not None:
        write_output(path, data, option="--plot")
    return data


__all__ = ["figure_bytes", "finish", "finish_robustness", "plain_text_figures"]
