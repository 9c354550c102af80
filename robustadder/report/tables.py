"""The report's tables: the paper-style wide table (means over seeds, intervals, ANN − CNN rows) and its text cells."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..attacks import format_eps
from ..store import Store
from ..summary import ci_text
from ..sweep import SETTING_KEYS, SweepConfig, SweepPlan, load_sweep
from .plan import (
    ACCURACY_COLUMNS,
    WORST,
    ReportPlan,
    _attack_order,
    _provenance,
    long_table,
    plan_report,
    preset_path,
    public_text,
)

FORMATS = ("csv", "latex", "md", "html")
DEFAULT_LAYOUT = {"rows": ["model"], "columns": ["attack"]}
#: a wide table never has more value columns than this: further column axes move to the rows
MAX_VALUE_COLUMNS = 8
_NAMES = {"eps_label": "eps", "batch_size": "batch size", "bn": "BN", "grad": "gradient"}


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
        elif key == "depth":  # numerically, models of no known depth last
            values = set(data[key])
            cats = sorted(v for v in values if v != "other") + ["other"]
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
    if "depth" in rows + cols:  # an axis of the model, not of the grid: read from what the store says of it
        depth = {label: (m.info.get("depth") or "other") for label, m in plan.models.items()}
        # looked up one by one: a mapping's misses would be NaN, turning every depth into a float (20.0)
        data = data.assign(depth=[depth.get(label, "other") for label in data["model"]])
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
    if "depth" in rows and "model" in rows:  # a model has one depth: not the product of the two axes
        pairs, at = set(zip(data["depth"], data["model"], strict=True)), (rows.index("depth"), rows.index("model"))
        wide = wide[[(k[at[0]], k[at[1]]) in pairs for k in wide.index]]
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
        delta_keys += [(*rest[:at], f"Δ {model} − {cnn}", *rest[at:]) for rest in common]
        values += [means.iloc[ann_rows[r]].to_numpy() - means.iloc[cnn_rows[r]].to_numpy() for r in common]
    if not delta_keys:
        return wide
    delta = pd.DataFrame(values, columns=means.columns).reindex(columns=wide.columns)
    all_keys = keys + delta_keys
    order = list(range(len(all_keys)))
    if at:  # rows grouped by outer axes (e.g. depth): each group's Δ rows right after its models
        first = {k[:at]: i for i, k in reversed(list(enumerate(all_keys)))}
        order.sort(key=lambda i: first[all_keys[i][:at]])
    all_keys = [all_keys[i] for i in order]
    combined = pd.concat([wide.reset_index(drop=True), delta], ignore_index=True).iloc[order].reset_index(drop=True)
    if len(names) > 1:
        index = pd.MultiIndex.from_tuples(all_keys, names=names)
    else:
        index = pd.Index([k[0] for k in all_keys], name=names[0])
    return combined.set_axis(index, axis=0)


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
    """A Δ row (ANN − CNN); its label stands at the model's level, which outer axes such as depth may precede."""
    return any(str(k).startswith("Δ") for k in (key if isinstance(key, tuple) else (key,)))


def _display(report: Report, fmt: str, intervals: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
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
                ci = ci_text((lows.iat[r, c], highs.iat[r, c]))
                if latex:
                    cell += f" {{\\scriptsize{ci}}}"
                elif fmt == "html":  # on a line of its own: a page of interval columns stays narrow
                    cell += f"<br><span class='ci'>{ci}</span>"
                else:
                    cell += f" {ci}"
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


# -- Markdown ----------------------------------------------------------------------------------------------------
def _flat_columns(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" / ".join(str(x) for x in c) for c in df.columns]
    return df


def energy_table(report: Report, intervals: bool = False) -> pd.DataFrame:
    """Per model: operations and energy per inference (counted when the sweep ran) next to its accuracy.

    The clean accuracy is that of any of the model's cells (every cell records it; BN in eval mode where
    the sweep has it). A worst-case robust accuracy is shown only when the sweep has one eps: a mean
    over budgets would be a number of no budget. With ``intervals`` each accuracy is text with its 95 % interval
    (for a mean over seeds, the envelope of the seeds' intervals), as in the main table.
    """

    def accuracy(rows: pd.DataFrame, kind: str) -> float | str:
        if rows.empty:
            return np.nan
        mean = float(rows[f"{kind}_accuracy"].mean())  # rounded with the table (.round(2)) when it stays a number
        if not intervals or rows[f"{kind}_ci_low"].isna().all():
            return mean
        return f"{mean:.2f} {ci_text((rows[f'{kind}_ci_low'].min(), rows[f'{kind}_ci_high'].max()))}"

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
            "clean acc (%)": accuracy(mine.iloc[:1], "clean"),
        }  # fmt: skip
        if len(eps_values) == 1:
            long_all = report.long
            worst = long_all[(long_all["model"] == label) & (long_all["attack"] == WORST) & (long_all["status"] == "done")]
            if worst.empty and long.loc[long["attack_name"] != "none", "attack"].nunique() == 1:
                worst = mine[mine["attack_name"] != "none"]  # the report's one attack: the worst case is its own
            if (worst["bn"] == "eval").any():
                worst = worst[worst["bn"] == "eval"]
            row[f"worst case at {format_eps(eps_values[0], 'Linf')} (%)"] = accuracy(worst, "robust")
        rows.append(row)
    return pd.DataFrame(rows).round(2)


# -- CSV ----------------------------------------------------------------------------------------------------------
def csv_table(report: Report) -> pd.DataFrame:
    """The tidy long table as written to CSV: accuracies rounded to 2 decimals, counts as integers."""
    out = report.long.copy()
    for col in ACCURACY_COLUMNS:
        out[col] = out[col].astype(float).round(2)
    out["n"] = out["n"].astype("Int64")
    out["reason"] = out["reason"].map(public_text)
    return out
