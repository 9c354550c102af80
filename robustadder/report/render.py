"""A report rendered: Markdown, CSV (and reading it back), the HTML page, and ``render`` that picks one."""

from __future__ import annotations

import base64
import io
import os
import re

import numpy as np
import pandas as pd

from .. import escape
from ..errors import UserError
from .latex import to_latex
from .plots import plots
from .provenance import provenance_lines
from .tables import FORMATS, Report, _display, _flat_columns, best_mask, csv_table, energy_table


def to_markdown(report: Report, *, intervals: bool = True) -> str:
    """Markdown table (each accuracy with its 95 % interval; ``intervals=False``: means only), energy table, provenance."""
    from ..ops import ENERGY_SOURCE

    text, means = _display(report, "md", intervals)
    mask = best_mask(means)
    text = text.mask(mask, "**" + text.astype(str) + "**")
    # the cells are formatted strings ("0.00", "+8.33"): tabulate would parse a column of them back into numbers and
    # print "0" and "16.67" beside "0.00", dropping a difference's sign
    table = escape.frame_labels(_flat_columns(text), escape.markdown).reset_index()
    body = table.to_markdown(index=False, disable_numparse=True)
    energy = escape.frame_text(energy_table(report, intervals), escape.markdown, ["model", "variant"])
    energy = energy.astype(object).where(energy.notna(), "–").to_markdown(index=False, floatfmt=".2f")
    footer = "\n".join(f"- {line}" for line in provenance_lines(report, escape.markdown))
    return (
        f"### {escape.markdown(report.provenance['sweep'])}: robust accuracy (%)\n\n{body}\n\n"
        f"Bold: the best model of a column (only when unique). Accuracy, robustness and energy per inference "
        f"({ENERGY_SOURCE}; counting convention in robustadder/ops.py):\n\n{energy}\n\n{footer}\n"
    )


def to_csv(report: Report) -> str:
    """One row per (model, attack, eps, settings) grid point and worst case, with interval columns.

    Text cells a spreadsheet would run as formulas are quoted (:func:`robustadder.escape.csv_cell`);
    :func:`read_csv` undoes it.
    """
    return escape.csv_frame(csv_table(report)).to_csv(index=False)


def read_csv(source: str | os.PathLike | io.StringIO) -> pd.DataFrame:
    """A report CSV read back into the table it was written from (counts as nullable integers)."""
    text = ["model", "variant", "arch", "attack", "attack_name", "eps_label", "norm", "bn", "grad", "backend", "dtype",
            "device", "status", "cell_id", "reason"]  # fmt: skip
    frame = pd.read_csv(source, keep_default_na=True, dtype=dict.fromkeys(text, str))
    frame["n"] = frame["n"].astype("Int64")
    frame[text] = frame[text].fillna("").map(escape.csv_uncell)
    return frame


# -- HTML ---------------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "report"


def to_html(reports: list[Report], title: str = "robustadder report", extra_html: str = "", *, intervals: bool = True,
            extra_toc: list[tuple[str, str]] | None = None, lead_html: str = "") -> str:  # fmt: skip
    """A self-contained HTML page: ``lead_html`` first (the answer), then contents, per report its table, plots, provenance.

    Each table has its own ids and emphasis; ``extra_html`` (the checks) ends the page.
    """
    sections, toc = [], []
    for i, report in enumerate(reports):
        anchor = f"{_slug(report.provenance['sweep'])}-{i}"
        text, means = _display(report, "html", intervals)
        mask = best_mask(means)
        styler = (
            escape.frame_labels(_flat_columns(text), escape.html)
            .style.set_uuid(f"{anchor}-table")  # unique per table: its CSS applies to it alone
            .apply(lambda _, m=mask: np.where(m, "font-weight: bold;", ""), axis=None)
            .set_table_attributes('class="results"')
            .set_caption(
                f"Robust accuracy (%) — sweep {escape.html(report.provenance['sweep'])} (bold: best model, only when unique)"
            )
        )
        figs = "".join(
            f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{name}</figcaption></figure>"
            for name, png in plots(report)
        )
        prov = "".join(f"<li>{line}</li>" for line in provenance_lines(report, escape.html))
        energy_frame = escape.frame_text(energy_table(report, intervals), escape.html, ["model", "variant"])
        energy_style = energy_frame.style.hide(axis="index").set_uuid(f"{anchor}-energy")
        energy = energy_style.format(precision=2, na_rep="–").to_html()
        head = (
            f"<h2 id='{anchor}'>{_html_escape(report.provenance['sweep'])}</h2>"
            + (f"<p>{_html_escape(report.provenance['description'])}</p>" if report.provenance["description"] else "")
        )
        sections.append(
            f"<section>{head}<div class='scroll'>{styler.to_html()}</div><h3>Accuracy, robustness and energy per "
            f"inference</h3><div class='scroll'>{energy}</div>{figs}"
            f"<ul class='provenance'>{prov}</ul></section>"
        )
        toc.append((anchor, ": ".join(filter(None, (report.provenance["sweep"], report.provenance["description"])))))
    toc += extra_toc or []
    contents = "".join(f"<li><a href='#{a}'>{_html_escape(t)}</a></li>" for a, t in toc)
    css = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border-bottom:1px solid #ccc;padding:4px 10px;text-align:right;white-space:nowrap}"
        "thead th{white-space:normal;vertical-align:bottom}"
        "th.row_heading,th.index_name{text-align:left}figure{margin:1em 0}figure img{max-width:100%}"
        "ul.provenance{font-size:90%;color:#333}nav ul{line-height:1.6}div.scroll{overflow-x:auto}"
        "span.ci{font-size:80%;color:#555;font-weight:normal}"
    )
    nav = f"<nav><h2>Contents</h2><ul>{contents}</ul></nav>" if len(toc) > 1 else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html_escape(title)}</title><style>{css}</style></head>"
        f"<body><h1>{_html_escape(title)}</h1>{lead_html}{nav}{''.join(sections)}{extra_html}</body></html>\n"
    )


def _html_escape(text: str) -> str:
    return escape.html(text)


def render(report: Report, fmt: str, *, intervals: bool = True, wide: bool = False) -> str:
    """One report in one format."""
    if fmt == "csv":
        return to_csv(report)
    if fmt == "latex":
        return to_latex(report, wide=wide, intervals=intervals)
    if fmt == "md":
        return to_markdown(report, intervals=intervals)
    if fmt == "html":
        return to_html([report], title=f"robustadder — {report.provenance['sweep']}", intervals=intervals)
    raise UserError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
