"""The committed reference reports (reports/) meet the same bar as freshly generated ones.

They are what a reader of the repository sees first: LaTeX that compiles and fits a NeurIPS column,
no machine-local path, eps in numeric order, tidy rounded CSVs that read back with pandas, an HTML page
whose tables have their own ids.
"""

from __future__ import annotations

import io
import re

import pytest

from robustadder import report as rep

from helpers import REPO, compile_latex

REPORTS = REPO / "reports"
TEX = sorted(REPORTS.glob("*.tex"))
CSV = sorted(p for p in REPORTS.glob("*.csv") if not p.name.startswith("compare-"))
TEXT = sorted([*REPORTS.glob("*.md"), *REPORTS.glob("*.tex"), *REPORTS.glob("*.csv"), *REPORTS.glob("*.html"),
               *REPORTS.glob("*.json"), *REPORTS.glob("*.txt")])  # fmt: skip


@pytest.mark.parametrize("path", TEX, ids=lambda p: p.name)
def test_committed_latex_compiles_and_fits_a_neurips_column(path, tmp_path):
    log = compile_latex(tmp_path, path.read_text(), path.stem)
    assert "Overfull \\hbox" not in log


@pytest.mark.parametrize("path", TEXT, ids=lambda p: p.name)
def test_committed_reports_hold_no_machine_local_path(path):
    text = path.read_text(errors="replace")
    for pattern in (r"/home/", r"/root/", r"/tmp/", r"/work/", r"/Users/", r"[A-Z]:\\\\", r"\.cache/robustadder"):
        assert not re.search(pattern, text), (path.name, pattern)


@pytest.mark.parametrize("path", CSV, ids=lambda p: p.name)
def test_committed_csvs_are_tidy_and_rounded(path):
    frame = rep.read_csv(path)
    again = rep.read_csv(io.StringIO(frame.to_csv(index=False)))
    assert frame.equals(again)
    for col in ("clean_accuracy", "robust_accuracy", "robust_ci_low", "robust_ci_high"):
        values = frame[col].dropna()
        assert (values.round(2) == values).all(), col
    keys = ["model", "attack", "eps", "bn", "shuffle", "seed", "batch_size", "grad", "backend", "dtype", "device"]
    assert not frame.duplicated(keys).any()


def _eps_order(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"\b(\d+(?:\.\d+)?)/255\b", text)]


@pytest.mark.parametrize("path", sorted(REPORTS.glob("eps-sweep.*")), ids=lambda p: p.name)
def test_committed_eps_columns_are_in_numeric_order(path):
    if path.suffix not in (".md", ".tex"):
        pytest.skip("tables only")
    text = path.read_text()
    start = text.index("\\begin{tabular}") if path.suffix == ".tex" else text.index("| model")
    header = text[start:].splitlines()[2 if path.suffix == ".tex" else 0]
    order = _eps_order(header)
    assert order == sorted(order) and len(order) >= 2, header


def test_committed_html_tables_have_their_own_ids():
    page = REPORTS / "index.html"
    if not page.exists():
        pytest.skip("no page")
    ids = re.findall(r'<table id="([^"]+)"', page.read_text())
    assert ids and len(ids) == len(set(ids))
    assert "Contents" in page.read_text()
