"""A report's provenance in words: what was measured, on what, with which code (no machine-local path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import escape
from ..data import DATASETS, DEFAULT_DATASET, dataset_title
from ..summary import CONFIDENCE
from .plan import WORST
from .tables import _NAMES, Report, _is_delta


# -- provenance in words ---------------------------------------------------------------------------------------
def provenance_lines(report: Report, esc: Callable[[Any], str] = escape.one_line) -> list[str]:
    """Human-readable provenance, one fact per line (no machine-local paths).

    ``esc`` escapes the user's text (names, descriptions, attack specs, reasons) for the output format;
    the lines' own words and markup are the project's.
    """
    p = report.provenance
    d = p["data"]
    lines = [
        f"sweep: {esc(p['sweep'])} ({esc(p['sweep_file'])})" + (f" — {esc(p['description'])}" if p["description"] else ""),
        f"samples: the first {p['n_samples']} {esc(dataset_title(d.get('dataset')))} test images "
        f"(ids {d['first_id']}..{d['last_id']}, {_order(d)}); "
        f"data {esc(d['name'])}, samples sha256 {d['sha256']}",
        "attacks: " + "; ".join(esc(a) for a in p["attacks"]),
        "settings: " + ", ".join(f"{_NAMES.get(k, k)}={esc('/'.join(v))}" for k, v in p["settings"].items()),
        f"seeds: {', '.join(map(str, p['seeds']))} (mean over seeds; ± std only where seeds gave different cells)",
        f"intervals: {CONFIDENCE:.0%} Wilson score intervals over the {p['n_samples']} samples (for means over seeds: "
        "the envelope of the seeds' intervals)",
        "weights sha256: " + "; ".join(f"{esc(m)} {sha[:16]}" for m, sha in p["models"].items()),
        _cells_line(p, esc),
        "versions: " + ", ".join(f"{k} {esc('/'.join(v))}" for k, v in p["versions"].items()),
        f"robust accuracy: share of all samples correct with and without attack; {WORST}: per sample, over the row's attacks",
    ]
    if _has_deltas(report):
        lines.append(
            "Δ rows: differences in points between an ANN and its CNN counterpart, models of different clean accuracy "
            "(the Clean column's Δ); `robustadder compare` tests such differences (McNemar, intervals) and gives the "
            "view on the samples both classify correctly"
        )
    for model, reason in p["skipped"].items():
        lines.append(f"skipped model {esc(model)}: {esc(reason)}")
    for cell, error in p["failed"].items():
        lines.append(f"failed cell {esc(cell)}: {esc(error)}")
    return lines


def _order(d: dict[str, Any]) -> str:
    """How the samples were taken: a registered dataset's release order, else the dataset's own order."""
    return "original order" if d.get("dataset", DEFAULT_DATASET) in DATASETS else "dataset order"


def _cells_line(p: dict[str, Any], esc: Callable[[Any], str]) -> str:
    parts = [f"{p['cells_done']}/{p['grid_points'] - p['cells_skipped']} grid points present"]
    if p["cells_missing"]:
        parts.append(f"{p['cells_missing']} missing, shown as – (run: robustadder sweep {esc(p['sweep_file'])})")
    if p["cells_failed"]:
        parts.append(f"{p['cells_failed']} failed (errors below)")
    if p["cells_skipped"]:
        parts.append(f"{p['cells_skipped']} of skipped models not counted")
    return "cells: " + "; ".join(parts) + f" ({p['distinct_cells_done']} distinct computations)"


def _has_deltas(report: Report) -> bool:
    return any(_is_delta(k) for k in report.wide.index)


def _caption(report: Report, intervals: bool) -> str:
    """LaTeX caption with the whole protocol: eps, attacks' steps and step rules, settings, n, hashes."""
    p = report.provenance
    d = p["data"]
    settings = p["settings"]
    seeds = p["seeds"]
    spread = f"; $\\pm$ std over seeds {', '.join(map(str, seeds))} where they differ" if len(seeds) > 1 else ""
    attacks = "; ".join(escape.latex(a) for a in p["attacks"])
    weights = "; ".join(f"{escape.latex(m)} \\texttt{{{sha[:12]}}}" for m, sha in p["models"].items())
    text = (
        f"Robust accuracy (\\%) on the first {p['n_samples']} {escape.latex(dataset_title(d.get('dataset')))} test images "
        f"(\\texttt{{{escape.latex(d['name'])}}}, samples sha256 \\texttt{{{d['sha256'][:12]}}}); mean{spread}"
        + (f"; brackets: {CONFIDENCE * 100:.0f}\\% Wilson intervals" if intervals else "")
        + f". Attacks: {attacks}. "
        f"Gradient: {'/'.join(settings['grad'])} (both: per sample the worst case of the two adder gradients); "
        f"BN: {'/'.join(settings['bn'])}; batch size {'/'.join(settings['batch_size'])}. "
        + (f"torch {'/'.join(p['versions']['torch'])}. " if p["versions"].get("torch") else "")
        + f"{WORST}: per sample over the row's attacks. "
        + ("$\\Delta$: ANN minus CNN in points (models of different clean accuracy). " if _has_deltas(report) else "")
        + f"Weights sha256: {weights}."
    )
    return text
