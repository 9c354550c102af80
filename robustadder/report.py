r"""Reports: robust-accuracy tables from the results store, rendered as CSV / LaTeX / Markdown / HTML.

Tables are generated from stored per-sample rows, never typed, and from **the store alone**: a sweep
records its grid when it runs (which cell each grid point is, its models' architectures, hashes and
operation counts; :func:`robustadder.sweep.record_plan`), so a report needs neither the weights nor
the data on the machine, and renders the same table with them present or absent. A report takes a
sweep file (a preset from ``attacks/`` or the user's), looks its grid points up in the store and reads
the cells it finds. Public API:

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

import base64
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import escape
from .attacks import format_eps
from .data import DATASETS, DEFAULT_DATASET, dataset_title
from .errors import UserError
from .resources import presets_dir
from .store import Store
from .summary import CONFIDENCE, proportion_interval, robust_flags, worst_case_accuracy
from .sweep import SETTING_KEYS, PlannedCell, SweepConfig, SweepPlan, attack_key, load_sweep, settings_key

PRESETS = {"paper": "paper.toml", "eps": "eps-sweep.toml", "settings": "settings.toml", "smoke": "smoke.toml"}
PRESET_DIR = presets_dir()
WORST = "Worst case"
FORMATS = ("csv", "latex", "md", "html")
DEFAULT_LAYOUT = {"rows": ["model"], "columns": ["attack"]}
#: a wide table never has more value columns than this: further column axes move to the rows
MAX_VALUE_COLUMNS = 8
ACCURACY_COLUMNS = ("clean_accuracy", "clean_ci_low", "clean_ci_high", "robust_accuracy", "robust_ci_low",
                    "robust_ci_high", "attack_success_rate")  # fmt: skip
_NAMES = {"eps_label": "eps", "batch_size": "batch size", "bn": "BN", "grad": "gradient"}


def preset_path(name: str) -> Path:
    """File of a preset sweep (``attacks/<preset>.toml``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)} or pass --sweep FILE")
    return PRESET_DIR / PRESETS[name]


# an absolute path (not part of a URL): /a/b/name, ~/a/name, C:/a/name
_ABS_PATH = re.compile(r"(?<![\w:/.~])(?:[A-Za-z]:)?(?:~|/)[^\s'\"(),;:]*/([^\s'\"(),;:/]+)")


def public_text(text: Any) -> str:
    """Text without machine-local paths: every absolute path becomes ``.../<file name>`` (URLs stay)."""
    return _ABS_PATH.sub(r".../\1", str(text))


# -- planning from the store -------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """A sweep's model as the store recorded it."""

    label: str
    ref: str
    weights_sha256: str | None
    info: dict[str, Any]


@dataclass
class ReportPlan:
    """A sweep's grid resolved against the store: each grid point's cell and its status."""

    config: SweepConfig
    n: int
    models: dict[str, ModelEntry]
    skipped: dict[str, str]
    cells: list[PlannedCell]
    errors: dict[str, str] = field(default_factory=dict)


def plan_report(store: Store, config: SweepConfig, n: int | None = None) -> ReportPlan:
    """Find the sweep's grid points in the store (recorded by ``robustadder sweep``); loads nothing else."""
    models_df, infos, grid = store.sweep_records(config.name)
    if grid.empty and models_df.empty:
        raise UserError(
            f"store {store.path} has no record of sweep '{config.name}': run 'robustadder sweep {config.path.name}' "
            "with this store (finished cells are reused, nothing is recomputed) before reporting it"
        )
    n = n or config.n
    recorded_n = sorted({int(v) for v in grid["n"]})
    if n is None:  # the whole test set: the largest grid recorded
        n = recorded_n[-1] if recorded_n else 0
    if recorded_n and n not in recorded_n:
        raise UserError(
            f"sweep '{config.name}' was run on {' / '.join(map(str, recorded_n))} images in store {store.path}, "
            f"not {n}; pass --n {recorded_n[-1]}"
        )
    by_label = {r.label: r for r in models_df.itertuples(index=False)}
    models: dict[str, ModelEntry] = {}
    skipped: dict[str, str] = {}
    for m in config.models:
        rec = by_label.get(m.label)
        if rec is not None and isinstance(rec.reason, str) and rec.reason:
            skipped[m.label] = public_text(rec.reason)
        elif rec is not None and isinstance(rec.weights_sha256, str):
            models[m.label] = ModelEntry(m.label, rec.ref, rec.weights_sha256, infos.get(rec.weights_sha256, {}))
    lookup = {(r.model, r.attack, r.settings): r.cell_id for r in grid[grid["n"] == n].itertuples(index=False)}
    cells, errors = [], {}
    for m in config.models:
        for settings in config.settings:
            for attack in config.attacks:
                cell = PlannedCell(m, attack, settings)
                if m.label in skipped:
                    cell.status, cell.reason = "skipped", skipped[m.label]
                else:
                    cell.cell_id = lookup.get((m.label, attack_key(attack), settings_key(settings)))
                    record = store.cell(cell.cell_id) if cell.cell_id else None
                    cell.status = record.status if record else "missing"
                    if record is not None and record.status == "failed":
                        errors[record.cell_id] = public_text(record.error or "unknown error")
                        cell.reason = errors[record.cell_id]
                cells.append(cell)
    return ReportPlan(config, n, models, skipped, cells, errors)


# -- collecting ------------------------------------------------------------------------------------------
def long_table(store: Store, plan: ReportPlan) -> pd.DataFrame:
    """One row per grid point (status, metrics and intervals when done) plus worst-case rows."""
    ids = sorted({c.cell_id for c in plan.cells if c.cell_id and c.status == "done"})
    samples = store.samples(ids) if ids else pd.DataFrame(columns=["cell_id"])
    by_cell = {cid: g for cid, g in samples.groupby("cell_id")} if len(samples) else {}
    rows = []
    for cell in plan.cells:
        entry = plan.models.get(cell.model.label)
        frame = by_cell.get(cell.cell_id) if cell.status == "done" else None
        row: dict[str, Any] = {
            "model": cell.model.label,
            "variant": entry.info.get("variant", "") if entry else "",
            "arch": entry.info.get("arch", "") if entry else "",
            "attack": cell.attack.label,
            "attack_name": cell.attack.name,
            "eps": cell.attack.eps,
            "eps_label": format_eps(cell.attack.eps, cell.attack.norm),
            "norm": cell.attack.norm,
            **{k: getattr(cell.settings, k) for k in SETTING_KEYS},
            "status": cell.status,
            "n": np.nan,
            **{c: np.nan for c in ACCURACY_COLUMNS},
            "cell_id": cell.cell_id or "",
            "reason": cell.reason,
        }
        if frame is not None:
            clean, robust = frame["clean_correct"].astype(bool), robust_flags(frame)
            n = len(frame)
            row.update(n=n, clean_accuracy=100 * clean.mean(), robust_accuracy=100 * robust.mean())
            row["clean_ci_low"], row["clean_ci_high"] = proportion_interval(int(clean.sum()), n)
            row["robust_ci_low"], row["robust_ci_high"] = proportion_interval(int(robust.sum()), n)
            if clean.any():
                row["attack_success_rate"] = 100 * (clean & ~frame["adv_correct"].astype(bool)).sum() / clean.sum()
        rows.append(row)
    out = pd.DataFrame(rows)
    # per-sample worst case over each group's attacks (clean excluded): robust only if robust in all
    group_keys = ["model", "norm", "eps", *SETTING_KEYS]
    worst_rows = []
    for key, group in out[out["attack_name"] != "none"].groupby(group_keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        # identity of a worst case = its component cells (so seeds that share every component share it)
        identity = "+".join(sorted(group["cell_id"].astype(str)))
        row = {**group.iloc[0].to_dict(), **dict(zip(group_keys, key, strict=True))}
        row.update(attack=WORST, attack_name="worst-case", cell_id=identity, attack_success_rate=np.nan, reason="")
        if (group["status"] == "done").all():
            accuracy, (low, high) = worst_case_accuracy([by_cell[cid] for cid in group["cell_id"]])
            row.update(status="done", robust_accuracy=accuracy, robust_ci_low=low, robust_ci_high=high)
        else:
            row.update(status="missing" if (group["status"] != "skipped").any() else "skipped",
                       robust_accuracy=np.nan, robust_ci_low=np.nan, robust_ci_high=np.nan)  # fmt: skip
        worst_rows.append(row)
    if worst_rows:
        out = pd.concat([out, pd.DataFrame(worst_rows)], ignore_index=True)
    # sweep order for models and attacks (worst case last), numeric order for eps
    models = {m.label: i for i, m in enumerate(plan.config.models)}
    attacks = {a: i for i, a in enumerate(_attack_order(plan))}
    order = pd.DataFrame({"m": out["model"].map(models), "a": out["attack"].map(attacks), "e": out["eps"]})
    return out.loc[order.sort_values(["m", "a", "e"], kind="stable").index].reset_index(drop=True)


def _attack_order(plan: ReportPlan) -> list[str]:
    """Attack labels in sweep order, the worst case last."""
    return list(dict.fromkeys([a.label for a in plan.config.attacks] + [WORST]))


def _data_provenance(store: Store, long: pd.DataFrame) -> dict[str, Any]:
    """The samples the cells saw, from a stored cell config: file name, content hash, id range."""
    for cid in long.loc[long["status"] == "done", "cell_id"]:
        record = store.cell(cid) if "+" not in cid else None
        if record is not None:
            d = record.config.get("data", {})
            return {"name": Path(str(d.get("source", "?"))).name, "sha256": d.get("fingerprint", "?"),
                    "first_id": d.get("first_id"), "last_id": d.get("last_id"), "n": d.get("n"),
                    "dataset": d.get("dataset", DEFAULT_DATASET)}  # fmt: skip
    return {"name": "?", "sha256": "?", "first_id": None, "last_id": None, "n": None, "dataset": DEFAULT_DATASET}


def _versions(store: Store, long: pd.DataFrame) -> dict[str, list[str]]:
    """Library versions of the runs that computed the report's cells."""
    ids = [c for c in long.loc[long["status"] == "done", "cell_id"] if c and "+" not in c]
    if not ids:
        return {}
    rows = store.conn.execute(
        "SELECT DISTINCT r.versions FROM runs r JOIN cells c ON c.run_id = r.run_id "
        f"WHERE c.cell_id IN ({', '.join('?' * len(ids))})",
        ids,
    ).fetchall()
    versions: dict[str, set] = {}
    for (text,) in rows:
        try:
            parsed = json.loads(text)
        except ValueError:
            raise UserError(f"store {store.path} is damaged: a run's versions are not valid JSON") from None
        for k, v in parsed.items():
            if k != "python":
                versions.setdefault(k, set()).add(v)
    return {k: sorted(v) for k, v in sorted(versions.items())}


def _fmt_alpha(value: float, norm: str) -> str:
    k = value * 255
    return f"{k:.3g}/255" if norm == "Linf" else f"{value:.3g}"


def attack_protocols(attacks) -> list[str]:
    """Each attack's full definition in words: eps values, steps, step size or rule, random start, restarts."""
    groups: dict[tuple, list] = {}
    for a in attacks:
        if a.name == "none":
            continue
        p = dict(a.params)
        if p.get("step_rule", "given") != "given":
            p.pop("alpha", None)  # a rule of eps: the same protocol at every eps
        groups.setdefault((a.label, a.norm, json.dumps(p, sort_keys=True, default=str)), []).append(a)
    out = []
    for (label, norm, params), members in groups.items():
        p = json.loads(params)
        eps = sorted({a.eps for a in members})
        if norm == "Linf" and all(abs(e * 255 - round(e * 255)) < 1e-6 or e * 255 < 1 for e in eps):
            eps_text = ", ".join(f"{e * 255:g}" for e in eps) + "/255"
        else:
            eps_text = ", ".join(format_eps(e, norm) for e in eps)
        parts = [f"{norm} eps {eps_text}"]
        if "steps" in p:
            parts.append(f"{p.pop('steps')} steps")
        rule = p.pop("step_rule", None)
        if "alpha" in p:
            parts.append(f"step {_fmt_alpha(p.pop('alpha'), norm)}" + (" (given)" if rule == "given" else ""))
        elif rule:
            parts.append(f"step {rule}")
        if "random_start" in p:
            parts.append("random start" if p.pop("random_start") else "no random start")
        if "restarts" in p:
            r = p.pop("restarts")
            parts.append(f"{r} restart{'s' if r != 1 else ''}")
        parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(p.items())]
        out.append(f"{label}: " + ", ".join(parts))
    return out


def _provenance(store: Store, plan: ReportPlan, long: pd.DataFrame) -> dict[str, Any]:
    cfg = plan.config
    settings = {k: list(dict.fromkeys(str(getattr(s, k)) for s in cfg.settings)) for k in SETTING_KEYS}
    planned = long[long["attack"] != WORST]
    status = planned.drop_duplicates("cell_id") if (planned["cell_id"] != "").all() else planned
    counts = planned["status"].value_counts()
    distinct = status["status"].value_counts()
    return {
        "sweep": cfg.name,
        "sweep_file": cfg.path.name,
        "description": public_text(cfg.description),
        "n_samples": plan.n,
        "data": _data_provenance(store, long),
        "attacks": attack_protocols(cfg.attacks),
        "settings": settings,
        "seeds": cfg.seeds,
        "models": {label: e.weights_sha256 for label, e in plan.models.items()},
        "versions": _versions(store, long),
        "grid_points": int(len(planned)),
        "cells_done": int(counts.get("done", 0)),
        "cells_failed": int(counts.get("failed", 0)),
        "cells_missing": int(counts.get("missing", 0) + counts.get("running", 0)),
        "cells_skipped": int(counts.get("skipped", 0)),
        "distinct_cells_done": int(distinct.get("done", 0)),
        "failed": dict(plan.errors),
        "skipped": dict(plan.skipped),
    }


@dataclass
class Report:
    """A built report: the wide table, the long one, layout and provenance."""

    wide: pd.DataFrame
    long: pd.DataFrame
    rows: list[str]
    columns: list[str]
    provenance: dict[str, Any]
    plan: ReportPlan


def _layout(plan: ReportPlan, data: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Rows and columns: the sweep's layout, every varying axis placed, at most MAX_VALUE_COLUMNS columns."""
    layout = {**DEFAULT_LAYOUT, **plan.config.report}
    rows, cols = list(layout["rows"]), list(layout["columns"])
    varying = [k for k in SETTING_KEYS if k != "seed" and len({getattr(s, k) for s in plan.config.settings}) > 1]
    if len({a.eps for a in plan.config.attacks if a.name != "none"}) > 1 and "eps_label" not in rows + cols:
        varying.append("eps_label")
    for k in varying:
        if k not in rows and k not in cols:
            rows.append(k)
    # a header of 16 value columns wraps letter by letter: move the innermost column axes to the rows
    while len(cols) > 1 and len(data[cols].drop_duplicates()) > MAX_VALUE_COLUMNS:
        rows.append(cols.pop())
    return rows, cols


def _counterpart(plan: ReportPlan, model: str) -> str | None:
    """The CNN of the same family (depth, for stores from before families) and AWN flag as an ANN model."""
    ann = plan.models.get(model)
    if ann is None or ann.info.get("kind") != "adder":
        return None
    key = "family" if "family" in ann.info else "depth"
    for label, other in plan.models.items():
        o = other.info
        if o.get("kind") == "conv" and o.get(key) == ann.info.get(key) and o.get("awn") == ann.info.get("awn"):
            return label
    return None


def _ordered(data: pd.DataFrame, plan: ReportPlan, keys: list[str]) -> pd.DataFrame:
    """Axes as ordered categories: models and attacks in sweep order, eps and numbers numerically."""
    data = data.copy()
    for key in keys:
        if key == "attack":
            cats = _attack_order(plan)
        elif key == "model":
            cats = [m.label for m in plan.config.models]
        elif key == "eps_label":
            cats = list(dict.fromkeys(data.sort_values("eps")["eps_label"]))
        elif key == "shuffle":
            data[key] = data[key].map(lambda v: "yes" if v else "no")
            cats = ["no", "yes"]
        elif pd.api.types.is_numeric_dtype(data[key]):
            cats = sorted(data[key].dropna().unique())
        else:
            cats = list(dict.fromkeys(str(getattr(s, key)) for s in plan.config.settings)) if key in SETTING_KEYS else None
            cats = cats or list(dict.fromkeys(data[key]))
        data[key] = pd.Categorical(data[key], categories=[c for c in cats if c in set(data[key])], ordered=True)
    return data


def build(store: Store, sweep: SweepConfig | SweepPlan | ReportPlan, *, n: int | None = None) -> Report:
    """Long table, wide table (mean / std / interval over seeds) with deltas, and provenance, from the store."""
    if isinstance(sweep, ReportPlan):
        plan = sweep
    elif isinstance(sweep, SweepPlan):
        plan = plan_report(store, sweep.config, n or len(sweep.data))
    else:
        plan = plan_report(store, sweep, n)
    long = long_table(store, plan)
    data = long[long["status"] != "skipped"]
    rows, cols = _layout(plan, data)
    if "attack" not in rows + cols:
        data = data[data["attack"] != WORST]
    if "eps_label" in rows and "attack" in cols:  # clean accuracy has no eps: show it on every eps row
        attacked = data["attack_name"] != "none"
        budgets = list(data.loc[attacked, ["eps", "eps_label"]].drop_duplicates().itertuples(index=False))
        clean = data[~attacked]
        if budgets and len(clean):
            copies = [clean.assign(eps=e, eps_label=lab) for e, lab in budgets]
            data = pd.concat([data[attacked], *copies], ignore_index=True)
    data = _ordered(data, plan, rows + cols)
    grouped = data.groupby(rows + cols, observed=True, dropna=False)
    stats = grouped["robust_accuracy"].agg(["mean", "std"])
    stats["low"] = grouped["robust_ci_low"].min()  # envelope of the seeds' intervals
    stats["high"] = grouped["robust_ci_high"].max()
    # a spread over seeds exists only where seeds gave different cells: grid points that share one cell (a
    # seed that cannot change the result) have std 0 by construction, which is no evidence of stability
    stats.loc[grouped["cell_id"].nunique() <= 1, "std"] = np.nan
    stats = stats.reset_index()
    values = ["mean", "std", "low", "high"]
    wide = stats.pivot_table(index=rows, columns=cols, values=values, observed=True, dropna=False, sort=True)
    wide = wide.reorder_levels(list(range(1, wide.columns.nlevels)) + [0], axis=1)
    wide = wide.sort_index(axis=1, level=list(range(wide.columns.nlevels - 1)), sort_remaining=False)
    wide.index = wide.index.remove_unused_levels() if isinstance(wide.index, pd.MultiIndex) else wide.index
    if "model" in rows:
        wide = _with_deltas(wide, plan)
    wide.index = wide.index.set_names([_NAMES.get(k, k) for k in wide.index.names])
    wide.columns = wide.columns.set_names([_NAMES.get(k, k) for k in wide.columns.names])
    provenance = _provenance(store, plan, long)
    wide.attrs["provenance"] = provenance
    return Report(wide, long, rows, cols, provenance, plan)


def _with_deltas(wide: pd.DataFrame, plan: ReportPlan) -> pd.DataFrame:
    """Append ANN − CNN rows (differences of the means) for each ANN with a CNN counterpart.

    A Δ row's key is the label followed by the row's other axes; it is kept where both models have the row.
    """
    names = list(wide.index.names)
    at = names.index("model")
    keys = [k if isinstance(k, tuple) else (k,) for k in wide.index]
    means = wide.xs("mean", axis=1, level=-1, drop_level=False)

    def rows_of(model: str) -> dict[tuple, int]:  # the model's rows by their other axes
        return {k[:at] + k[at + 1 :]: i for i, k in enumerate(keys) if k[at] == model}

    delta_keys, values = [], []
    for model in [m.label for m in plan.config.models]:
        cnn = _counterpart(plan, model)
        if cnn is None:
            continue
        ann_rows, cnn_rows = rows_of(model), rows_of(cnn)
        common = [rest for rest in ann_rows if rest in cnn_rows]
        delta_keys += [(f"Δ {model} − {cnn}", *rest) for rest in common]
        values += [means.iloc[ann_rows[r]].to_numpy() - means.iloc[cnn_rows[r]].to_numpy() for r in common]
    if not delta_keys:
        return wide
    delta = pd.DataFrame(values, columns=means.columns).reindex(columns=wide.columns)
    all_keys = keys + delta_keys
    if len(names) > 1:
        index = pd.MultiIndex.from_tuples(all_keys, names=names)
    else:
        index = pd.Index([k[0] for k in all_keys], name=names[0])
    return pd.concat([wide.reset_index(drop=True), delta], ignore_index=True).set_axis(index, axis=0)


def table(
    store: str | os.PathLike | Store | None = None,
    preset: str | None = "paper",
    *,
    sweep: str | os.PathLike | None = None,
    n: int | None = None,
) -> pd.DataFrame:
    """The paper-style table of a preset (or sweep file) from a store: mean/std/interval columns, deltas."""
    return make_report(store, preset=preset, sweep=sweep, n=n).wide


def _open(store) -> Store:
    return store if isinstance(store, Store) else Store.open(store, readonly=True)


def make_report(
    store: str | os.PathLike | Store | None = None,
    *,
    preset: str | None = None,
    sweep: str | os.PathLike | None = None,
    n: int | None = None,
) -> Report:
    """Build the report of a preset or sweep file from a store (read-only; no weights or data needed)."""
    path = Path(sweep) if sweep else preset_path(preset or "paper")
    db = _open(store)
    try:
        return build(db, load_sweep(path), n=n)
    finally:
        if not isinstance(store, Store):
            db.close()


# -- display -------------------------------------------------------------------------------------------------
def _is_delta(key: Any) -> bool:
    return str(key[0] if isinstance(key, tuple) else key).startswith("Δ")


def _display(report: Report, fmt: str, intervals: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cell strings ("mean", "± std" only where seeds differ, "[low, high]" with ``intervals``) and the means."""
    wide = report.wide
    means = wide.xs("mean", axis=1, level=-1)
    stds, lows, highs = (wide.xs(v, axis=1, level=-1).reindex_like(means) for v in ("std", "low", "high"))
    latex = fmt == "latex"
    text = means.copy().astype(object)
    for r in range(means.shape[0]):
        delta = _is_delta(means.index[r])
        for c in range(means.shape[1]):
            m, s = means.iat[r, c], stds.iat[r, c]
            if pd.isna(m):
                text.iat[r, c] = "--" if latex else "–"
                continue
            if delta:
                value = f"{m:+.2f}"
                text.iat[r, c] = f"${value}$" if latex else value.replace("-", "−")
                continue
            cell = f"{m:.2f}"
            if pd.notna(s):
                cell += f"{{\\scriptsize$\\pm${s:.2f}}}" if latex else f" ± {s:.2f}"
            if intervals and pd.notna(lows.iat[r, c]):
                lo, hi = lows.iat[r, c], highs.iat[r, c]
                if latex:
                    cell += f" {{\\scriptsize[{lo:.1f}, {hi:.1f}]}}"
                elif fmt == "html":  # on a line of its own: a page of interval columns stays narrow
                    cell += f"<br><span class='ci'>[{lo:.1f}, {hi:.1f}]</span>"
                else:
                    cell += f" [{lo:.1f}, {hi:.1f}]"
            text.iat[r, c] = cell
    return text, means


def best_mask(means: pd.DataFrame) -> pd.DataFrame:
    """Bold cells: per column, the best model among rows that differ only in the model — only when unique.

    Δ rows never compete; a tie at the printed precision (e.g. every model at 0.00) bolds nothing. When the
    models are columns, the best model of each row (among columns that differ only in the model) is bold.
    """
    mask = pd.DataFrame(False, index=means.index, columns=means.columns)
    rounded = means.round(2)
    row_names, col_names = list(means.index.names), list(means.columns.names)

    def pick(values: pd.Series) -> list[Any]:
        values = values.dropna()
        if len(values) < 2:
            return []
        top = values.max()
        return list(values.index[values == top]) if (values == top).sum() == 1 else []

    if "model" in row_names:
        keep = [not _is_delta(k) for k in means.index]
        others = [n for n in row_names if n != "model"]
        sub = rounded[keep]
        groups = sub.groupby(level=others, observed=True, sort=False) if others else [(None, sub)]
        for _, g in groups:
            for c in means.columns:
                for key in pick(g[c]):
                    mask.loc[key, c] = True
    elif "model" in col_names:
        others = [n for n in col_names if n != "model"]
        for r in means.index:
            row = rounded.loc[r]
            groups = row.groupby(level=others, sort=False) if others else [(None, row)]
            for _, g in groups:
                for key in pick(g):
                    mask.loc[r, key] = True
    return mask


# -- provenance in words ---------------------------------------------------------------------------------------
def provenance_lines(report: Report, esc: Callable[[Any], str] = escape.one_line) -> list[str]:
    """Human-readable provenance, one fact per line (no machine-local paths).

    ``esc`` escapes the user's text (names, descriptions, attack specs, reasons) for the output format;
    the lines' own words and markup are the project's.
    """
    p = report.provenance
    d = p["data"]
    lines = [
        f"sweep: {esc(p['sweep'])} ({esc(p['sweep_file'])}) — {esc(p['description'])}",
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


# -- Markdown ----------------------------------------------------------------------------------------------------
def _flat_columns(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" / ".join(str(x) for x in c) for c in df.columns]
    return df


def energy_table(report: Report) -> pd.DataFrame:
    """Per model: operations and energy per inference (counted when the sweep ran) next to its accuracy.

    The clean accuracy is that of any of the model's cells (every cell records it; BN in eval mode where
    the sweep has it). A worst-case robust accuracy is shown only when the sweep has one eps: a mean
    over budgets would be a number of no budget.
    """
    long = report.long[report.long["status"] == "done"]
    eps_values = sorted(long.loc[long["attack_name"] != "none", "eps"].unique())
    rows = []
    for label, entry in report.plan.models.items():
        ops = entry.info.get("ops") or {}
        mine = long[(long["model"] == label) & (long["attack"] != WORST)]
        if (mine["bn"] == "eval").any():  # the model's own numbers, not those of BN in train mode
            mine = mine[mine["bn"] == "eval"]
        row = {
            "model": label, "variant": entry.info.get("variant", ""),
            "additions (M)": ops.get("adds", np.nan) / 1e6, "multiplications (M)": ops.get("muls", np.nan) / 1e6,
            "energy (µJ)": ops.get("energy_uj", np.nan),
            "clean acc (%)": mine["clean_accuracy"].iloc[0] if len(mine) else np.nan,
        }  # fmt: skip
        if len(eps_values) == 1:
            long_all = report.long
            worst = long_all[(long_all["model"] == label) & (long_all["attack"] == WORST) & (long_all["status"] == "done")]
            if (worst["bn"] == "eval").any():
                worst = worst[worst["bn"] == "eval"]
            row[f"worst case at {format_eps(eps_values[0], 'Linf')} (%)"] = (
                worst["robust_accuracy"].mean() if len(worst) else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows).round(2)


def to_markdown(report: Report, *, intervals: bool = False) -> str:
    """Markdown table, energy table and provenance footer."""
    from .ops import ENERGY_SOURCE

    text, means = _display(report, "md", intervals)
    mask = best_mask(means)
    text = text.mask(mask, "**" + text.astype(str) + "**")
    body = escape.frame_labels(_flat_columns(text), escape.markdown).reset_index().to_markdown(index=False)
    energy = escape.frame_text(energy_table(report), escape.markdown, ["model", "variant"])
    energy = energy.astype(object).where(energy.notna(), "–").to_markdown(index=False, floatfmt=".2f")
    footer = "\n".join(f"- {line}" for line in provenance_lines(report, escape.markdown))
    return (
        f"### {escape.markdown(report.provenance['sweep'])}: robust accuracy (%)\n\n{body}\n\n"
        f"Bold: the best model of a column (only when unique). Accuracy, robustness and energy per inference "
        f"({ENERGY_SOURCE}; counting convention in robustadder/ops.py):\n\n{energy}\n\n{footer}\n"
    )


# -- LaTeX --------------------------------------------------------------------------------------------------------
def to_latex(report: Report, *, label: str | None = None, wide: bool = False, intervals: bool = False) -> str:
    r"""A booktabs table that fits ``\columnwidth`` (``\textwidth`` in a ``table*`` with ``wide``).

    The tabular is set in a box and scaled down only when it is wider than the column, so no page
    geometry can make it overflow. Needs ``booktabs`` and ``graphicx``.
    """
    text, means = _display(report, "latex", intervals)
    mask = best_mask(means)
    row_levels, col_levels = text.index.nlevels, text.columns.nlevels
    lines = [f"\\begin{{tabular}}{{{'l' * row_levels}{'r' * text.shape[1]}}}", "\\toprule"]
    cols = list(text.columns) if col_levels > 1 else [(c,) for c in text.columns]
    for level in range(col_levels):
        cells, rules, start = [""] * row_levels, [], row_levels + 1
        if level == col_levels - 1:
            cells = [escape.latex(_NAMES.get(n, n) or "") for n in text.index.names]
        groups: list[tuple[Any, int]] = []
        for c in cols:
            key = c[: level + 1]
            if groups and groups[-1][0] == key:
                groups[-1] = (key, groups[-1][1] + 1)
            else:
                groups.append((key, 1))
        for key, span in groups:
            name = escape.latex(key[-1])
            if span > 1:
                cells.append(f"\\multicolumn{{{span}}}{{c}}{{{name}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
            else:
                cells.append(name)
            start += span
        lines.append(" & ".join(cells) + " \\\\")
        if rules:
            lines.append(" ".join(rules))
    lines.append("\\midrule")
    previous: tuple = ()
    for r, key in enumerate(text.index):
        key = key if isinstance(key, tuple) else (key,)
        if r and (_is_delta(key) and not _is_delta(previous) or (row_levels > 1 and key[0] != previous[0])):
            lines.append("\\midrule")  # before the differences, and between groups of the outer row axis
        labels = [("" if i < len(previous) and key[: i + 1] == previous[: i + 1] else escape.latex(v)) for i, v in enumerate(key)]
        values = [f"\\textbf{{{v}}}" if mask.iat[r, c] else str(v) for c, v in enumerate(text.iloc[r])]
        lines.append(" & ".join(labels + values) + " \\\\")
        previous = key
    lines += ["\\bottomrule", "\\end{tabular}"]
    width = "\\textwidth" if wide else "\\columnwidth"
    env = "table*" if wide else "table"
    notes = "\n".join(f"% {line}" for line in provenance_lines(report, escape.latex_comment))
    name = escape.latex_label(label or f"tab:robustadder-{report.provenance['sweep']}")
    return "\n".join([
        "% generated by robustadder report; requires \\usepackage{booktabs} and \\usepackage{graphicx}",
        notes,
        f"\\begin{{{env}}}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{_caption(report, intervals)}}}",
        f"\\label{{{name}}}",
        "\\setlength{\\tabcolsep}{4pt}",
        fit_to_width("\n".join(lines), width),
        f"\\end{{{env}}}",
        "",
    ])  # fmt: skip


def fit_to_width(tabular: str, width: str = "\\columnwidth") -> str:
    """A tabular in a box: scaled to ``width`` only when wider, to 0.8 text height only when taller.

    Plain LaTeX + graphicx. No page geometry can then make the table overflow, and a table that fits keeps its font size.
    """
    return "\n".join([
        "\\ifdefined\\robustadderbox\\else\\newsavebox\\robustadderbox\\fi",
        "\\sbox\\robustadderbox{%",
        tabular.rstrip("\n"),
        "}%",
        f"\\ifdim\\wd\\robustadderbox>{width}\\sbox\\robustadderbox{{\\resizebox{{{width}}}{{!}}{{\\usebox\\robustadderbox}}}}\\fi",
        # and a long table (e.g. the settings view) to the page height: a float cannot break across pages
        "\\ifdim\\dimexpr\\ht\\robustadderbox+\\dp\\robustadderbox\\relax>0.8\\textheight"
        "\\sbox\\robustadderbox{\\resizebox*{!}{0.8\\textheight}{\\usebox\\robustadderbox}}\\fi",
        "\\usebox\\robustadderbox",
    ])  # fmt: skip


# -- CSV ----------------------------------------------------------------------------------------------------------
def csv_table(report: Report) -> pd.DataFrame:
    """The tidy long table as written to CSV: accuracies rounded to 2 decimals, counts as integers."""
    out = report.long.copy()
    for col in ACCURACY_COLUMNS:
        out[col] = out[col].astype(float).round(2)
    out["n"] = out["n"].astype("Int64")
    out["reason"] = out["reason"].map(public_text)
    return out


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


# -- plots -----------------------------------------------------------------------------------------------------------
FIGURE_WIDTH_IN = 9.0  # at 110 dpi ~990 px: readable at 100 % zoom in a 1100 px page
DPI = 110


def plots(report: Report) -> list[tuple[str, bytes]]:
    """PNG figures of a report.

    Robust accuracy vs eps per attack (log eps axis, intervals as error bars, n in the title) when eps
    varies; the spread across settings and seeds when they vary.
    """
    from .plotting import plain_text_figures

    with plain_text_figures() as plt:
        return _plots(report, plt)


def _plots(report: Report, plt: Any) -> list[tuple[str, bytes]]:
    figures: list[tuple[str, bytes]] = []
    data = report.long[(report.long["status"] == "done") & (report.long["attack_name"] != "none")]
    if data.empty:
        return figures
    n = report.provenance["n_samples"]
    if data["eps"].nunique() > 1:
        attacks = list(dict.fromkeys(data["attack"]))
        line_keys = [k for k in SETTING_KEYS if k != "seed" and data[k].nunique() > 1]  # one line per setting
        ncols = min(2, len(attacks))
        nrows = -(-len(attacks) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(FIGURE_WIDTH_IN, 3.6 * nrows), squeeze=False, sharey=True)
        for ax, attack in zip(axes.flat, attacks, strict=False):
            sub = data[data["attack"] == attack]
            for key, g in sub.groupby(["model", *line_keys], sort=False):
                name = " ".join(str(k) for k in key) if line_keys else key[0]
                agg = g.groupby("eps").agg(mean=("robust_accuracy", "mean"), low=("robust_ci_low", "min"),
                                           high=("robust_ci_high", "max")).sort_index()  # fmt: skip
                err = np.vstack([agg["mean"] - agg["low"], agg["high"] - agg["mean"]]).clip(min=0)
                ax.errorbar(agg.index * 255, agg["mean"], yerr=err, marker="o", capsize=3, label=name)
            ax.set_xscale("log", base=2)
            ticks = sorted(sub["eps"].unique() * 255)
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.set_title(f"{attack} (n = {n})")
            ax.set_xlabel("L∞ eps (×1/255, log scale)")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(attacks) :]:
            ax.set_visible(False)
        for row in axes:
            row[0].set_ylabel("robust accuracy (%)")
        axes.flat[0].legend(fontsize=8)
        fig.suptitle(f"Robust accuracy vs eps, {CONFIDENCE:.0%} Wilson intervals", fontsize=10)
        fig.tight_layout()
        figures.append(("Robust accuracy vs eps", _png(fig)))
    varying = [k for k in SETTING_KEYS if k != "seed" and data[k].nunique() > 1]
    groups = list(data.groupby(["model", "attack"], sort=False))
    if not varying:  # seeds only: a spread exists only where seeds gave different cells
        groups = [(k, g) for k, g in groups if g["cell_id"].nunique() > 1]
    if groups and (varying or any(g["robust_accuracy"].nunique() > 1 for _, g in groups)):
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, max(2.5, 0.32 * len(groups) + 1.2)))
        ax.boxplot([g["robust_accuracy"].to_numpy() for _, g in groups], orientation="horizontal", showmeans=True)
        for i, (_, g) in enumerate(groups, start=1):
            ax.scatter(g["robust_accuracy"], np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g)), s=10, alpha=0.6)
        ax.set_yticks(range(1, len(groups) + 1), [f"{m} · {a}" for (m, a), _ in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("robust accuracy (%)")
        what = ", ".join(_NAMES.get(k, k) for k in varying)
        ax.set_title(f"Spread across inference settings ({what + '; ' if what else ''}seeds), n = {n}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        figures.append(("Spread across inference settings and seeds", _png(fig)))
    return figures


def _png(fig) -> bytes:
    from .plotting import figure_bytes

    return figure_bytes(fig, "png", DPI)


# -- HTML ---------------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "report"


def to_html(reports: list[Report], title: str = "robustadder report", extra_html: str = "", *, intervals: bool = False,
            extra_toc: list[tuple[str, str]] | None = None) -> str:  # fmt: skip
    """A self-contained HTML page: contents, then per report its table (own ids and emphasis), plots, provenance."""
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
        energy_frame = escape.frame_text(energy_table(report), escape.html, ["model", "variant"])
        energy_style = energy_frame.style.hide(axis="index").set_uuid(f"{anchor}-energy")
        energy = energy_style.format(precision=2, na_rep="–").to_html()
        head = (
            f"<h2 id='{anchor}'>{_html_escape(report.provenance['sweep'])}</h2>"
            f"<p>{_html_escape(report.provenance['description'])}</p>"
        )
        sections.append(
            f"<section>{head}<div class='scroll'>{styler.to_html()}</div><h3>Accuracy, robustness and energy per "
            f"inference</h3><div class='scroll'>{energy}</div>{figs}"
            f"<ul class='provenance'>{prov}</ul></section>"
        )
        toc.append((anchor, f"{report.provenance['sweep']}: {report.provenance['description']}"))
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
        f"<body><h1>{_html_escape(title)}</h1>{nav}{''.join(sections)}{extra_html}</body></html>\n"
    )


def _html_escape(text: str) -> str:
    return escape.html(text)


def render(report: Report, fmt: str, *, intervals: bool = False, wide: bool = False) -> str:
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
