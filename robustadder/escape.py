r"""Text a user supplied, made inert in each output format: the one place every renderer escapes through.

Model labels, sweep names and descriptions, attack specs, dataset names and failure reasons reach LaTeX,
HTML, Markdown and CSV. Unescaped, a label could ``\input`` a file or ``\write18`` a shell command in a
LaTeX build, end a ``%`` comment with a newline, run a script in a browser, pass raw HTML through a
Markdown renderer or become a spreadsheet formula (``=HYPERLINK(...)``). Each function here returns text
that the format shows as typed and cannot interpret; the project's own markup is added around it.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

# -- LaTeX ------------------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}  # fmt: skip
# the few non-ASCII symbols the reports use, as pdflatex can set them
LATEX_SYMBOLS = {"Δ": "$\\Delta$", "−": "$-$", "–": "--", "—": "---", "∞": "$\\infty$", "×": "$\\times$",
                 "±": "$\\pm$", "µ": "$\\mu$", "≤": "$\\le$", "≥": "$\\ge$", "·": "$\\cdot$"}  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: Any) -> str:
    """``text`` with every line break and control character turned into a space."""
    return _CONTROL.sub(" ", str(text))


def latex(text: Any) -> str:
    """Plain text for LaTeX: specials escaped, line breaks made spaces, the reports' symbols as math.

    Characters pdflatex cannot set (beyond Latin-1 and the symbols above) become ``?``: a label must never
    stop a paper from compiling.
    """
    out = []
    for ch in one_line(text):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ch in LATEX_SYMBOLS:
            out.append(LATEX_SYMBOLS[ch])
        elif ord(ch) > 0xFF or 0x7F <= ord(ch) <= 0x9F:  # beyond Latin-1, or C1 controls: no glyph in pdflatex
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def latex_comment(text: Any) -> str:
    """Text after a ``%``: one line (a newline would end the comment and let the rest run as LaTeX)."""
    return one_line(text)


def latex_label(text: Any) -> str:
    r"""A ``\label`` key: letters, digits and ``:-_.`` only."""
    return re.sub(r"[^A-Za-z0-9:._-]+", "-", str(text))


# -- HTML and Markdown ------------------------------------------------------------------------------------------
def html(text: Any) -> str:
    """Text for HTML content or a quoted attribute: ``< > & " '`` as entities."""
    return _html.escape(str(text), quote=True)


_MD_SPECIAL = {"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def markdown(text: Any) -> str:
    r"""Text for a Markdown line or table cell: no raw HTML, autolink or link, no column break; one line.

    ``<``, ``>`` and ``&`` become entities (no HTML, no ``<url>``), ``|`` and ``\\`` are escaped (no new column)
    and ``](`` is broken (no ``[text](url)`` link or image). Emphasis and code spans are left alone: they change
    how a label looks, never what the page does.
    """
    out = "".join(_MD_SPECIAL.get(ch, ch) for ch in one_line(text))
    return out.replace("](", "]\\(")


# -- CSV --------------------------------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...) gets a leading ``'``.

    Numbers (``-1.5``) and a lone ``-`` are left as they are; non-text values pass through.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and value != "-" and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_uncell(value: Any) -> Any:
    """The inverse of :func:`csv_cell` (reading a CSV this package wrote)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell and header made formula-safe (see :func:`csv_cell`)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


# -- frames -----------------------------------------------------------------------------------------------------
def _index(index: pd.Index, fn: Callable[[Any], str]) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(fn(v) for v in key) for key in index], names=index.names)
    return pd.Index([fn(v) for v in index], name=index.name)


def frame_labels(df: pd.DataFrame, fn: Callable[[Any], str]) -> pd.DataFrame:
    """``df`` with its row and column labels passed through ``fn`` (a format's escape)."""
    out = df.copy()
    out.index = _index(out.index, fn)
    out.columns = _index(out.columns, fn)
    if isinstance(out.index, pd.MultiIndex) or out.index.name is not None:
        out.index.names = [None if n is None else fn(n) for n in out.index.names]
    return out


def frame_text(df: pd.DataFrame, fn: Callable[[Any], str], columns: list[Any] | None = None) -> pd.DataFrame:
    """``df`` with its labels and its text cells (all, or those of ``columns``) passed through ``fn``."""
    out = df.copy()
    for col in columns if columns is not None else list(out.columns):
        out[col] = out[col].map(lambda v: fn(v) if isinstance(v, str) else v)
    return frame_labels(out, fn)


__all__ = [
    "LATEX_SYMBOLS",
    "csv_cell",
    "csv_frame",
    "csv_uncell",
    "frame_labels",
    "frame_text",
    "html",
    "latex",
    "latex_comment",
    "latex_label",
    "markdown",
    "one_line",
]
