r"""Reports: robust-accuracy tables from the results store, rendered as CSV / LaTeX / Markdown / HTML.

Tables are generated from stored per-sample rows, never typed, and from **the store alone**: a sweep
records its grid when it runs (which cell each grid point is, its models' architectures, hashes and
operation counts; :func:`robustadder.sweep.record_plan`), so a report needs neither the weights nor
the data on the machine, and renders the same table with them present or absent. A report takes a
sweep file (a preset from ``attacks/`` or the user's), looks its grid points up in the store and reads
the cells it finds. A package: :mod:`.plan` (the grid in the store, the long table), :mod:`.tables` (the wide table and its
cells), :mod:`.provenance` (in words), :mod:`.latex`, :mod:`.plots`, :mod:`.render` (Markdown, CSV, HTML). Public API:

* :func:`long_table` — one row per grid point (model, attack, eps, settings, seed → clean and robust
  accuracy with their 95 % Wilson intervals, attack success rate, n), plus a per-sample *worst case*
  pseudo-attack per (model, eps, settings, seed) over the row's attacks; rounded, it is the CSV;
* :func:`table` — the paper-style wide table: rows and columns from the sweep's ``[report]`` layout
  (numeric axes in numeric order, never more than :data:`MAX_VALUE_COLUMNS` value columns), mean over
  seeds, the spread over seeds only where seeds gave different cells, the interval (the envelope of
  the seeds' intervals), ANN − CNN delta rows, and its provenance in ``attrs``;
* :func:`render` — Markdown, LaTeX (booktabs; fits ``\columnwidth`` unless ``wide``; bold = the best
  model of a column only when unique; a caption with the whole protocol) or an HTML page (table of
  contents, per-table emphasis, plots with intervals on a log eps axis).

Missing cells (not yet run) show as "–"; failed cells and skipped models are listed with their reason.
No report holds a timing, a date or a machine-local path: data and weights appear by name and sha256.
"""

from __future__ import annotations

from .latex import fit_to_width, to_latex  # noqa: F401
from .plan import (  # noqa: F401
    ACCURACY_COLUMNS,
    EVAL_CELLS,
    PRESET_DIR,
    PRESETS,
    WORST,
    ModelEntry,
    ReportPlan,
    attack_protocols,
    eval_plans,
    long_table,
    plan_report,
    preset_path,
    public_text,
    recorded_size,
    stored_sweeps,
)
from .plots import DPI, FIGURE_WIDTH_IN, plots  # noqa: F401
from .provenance import provenance_lines  # noqa: F401
from .render import read_csv, render, to_csv, to_html, to_markdown  # noqa: F401
from .tables import (  # noqa: F401
    DEFAULT_LAYOUT,
    FORMATS,
    MAX_VALUE_COLUMNS,
    Report,
    _display,
    _is_delta,
    best_mask,
    build,
    csv_table,
    energy_table,
    make_report,
    table,
)
