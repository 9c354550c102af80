"""Reports: robust-accuracy tables from the results store, rendered as CSV / LaTeX / Markdown / HTML.

Tables are generated from stored per-sample rows, never typed: a report takes a sweep (a preset from
``attacks/`` or any sweep file), expands its grid exactly as ``robustadder sweep`` does, and reads the
cells it finds. Public API:

* :func:`long_table` — one row per cell (model, attack, eps, settings, seed → clean and robust accuracy,
  attack success rate, n), plus a per-sample *worst case* pseudo-attack per (model, eps, settings,
  seed) over the row's attacks; this is what CSV holds (it round-trips through ``pandas.read_csv``);
* :func:`table` — the paper-style wide table: rows and columns from the sweep's ``[report]`` layout,
  mean and std over seeds (numeric ``(column, "mean"|"std")`` columns), ANN − CNN delta rows, and its
  provenance in ``attrs``;
* :func:`render` — Markdown, LaTeX (booktabs, best value per column in bold, caption, label) or an HTML
  page with the tables and plots; every rendering carries the provenance (samples, ids, eps, attack
  parameters, settings, library versions).

Missing cells (not yet run) show as "–" with a note; skipped models are listed with their reason. A
report holds no timings or dates: it depends only on the stored per-sample rows, so a sweep that was
interrupted and resumed renders exactly like one that ran straight through.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError
from .store import Store
from .summary import robust_flags
from .sweep import SETTING_KEYS, SweepPlan, load_sweep, plan_sweep

PRESETS = {"paper": "paper.toml", "eps": "eps-sweep.toml", "settings": "settings.toml", "smoke": "smoke.toml"}
PRESET_DIR = Path(__file__).resolve().parents[1] / "attacks"
WORST = "Worst case"
FORMATS = ("csv", "latex", "md", "html")
DEFAULT_LAYOUT = {"rows": ["model"], "columns": ["attack"]}


def preset_path(name: str) -> Path:
    """File of a preset sweep (``attacks/<preset>.toml``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)} or pass --sweep FILE")
    return PRESET_DIR / PRESETS[name]


def _fmt_eps(eps: float, norm: str) -> str:
    if eps == 0:
        return "–"
    k = eps * 255
    return f"{round(k)}/255" if norm == "Linf" and abs(k - round(k)) < 1e-6 else f"{eps:g} ({norm})"


def _settings_label(row: pd.Series | dict, keys: list[str]) -> str:
    short = {"bn": "BN", "shuffle": "shuffle", "batch_size": "bs", "grad": "grad", "backend": "backend", "dtype": "",
             "device": ""}  # fmt: skip
    parts = []
    for k in keys:
        v = row[k]
        if k == "shuffle":
            v = "yes" if v else "no"
        parts.append(f"{short.get(k, k)}={v}" if short.get(k, k) else str(v))
    return " ".join(parts)


# -- collecting ------------------------------------------------------------------------------------------
def long_table(store: Store, plan: SweepPlan) -> pd.DataFrame:
    """One row per planned cell (status, metrics when done) plus worst-case rows; see module docstring."""
    ids = [c.cell_id for c in plan.cells if c.cell_id]
    samples = store.samples(ids) if ids else pd.DataFrame(columns=["cell_id"])
    by_cell = {cid: g for cid, g in samples.groupby("cell_id")} if len(samples) else {}
    rows = []
    for cell in plan.cells:
        loaded = plan.models.get(cell.model.label)
        record = store.cell(cell.cell_id) if cell.cell_id else None
        status = "skipped" if cell.status == "skipped" else (record.status if record else "missing")
        frame = by_cell.get(cell.cell_id) if status == "done" else None
        row: dict[str, Any] = {
            "model": cell.model.label,
            "variant": loaded.arch.variant if loaded else "",
            "arch": loaded.arch.name if loaded else "",
            "attack": cell.attack.label,
            "attack_name": cell.attack.name,
            "eps": cell.attack.eps,
            "eps_label": _fmt_eps(cell.attack.eps, cell.attack.norm),
            "norm": cell.attack.norm,
            **{k: getattr(cell.settings, k) for k in SETTING_KEYS},
            "status": status,
            "n": len(frame) if frame is not None else np.nan,
            "clean_accuracy": 100 * frame["clean_correct"].mean() if frame is not None else np.nan,
            "robust_accuracy": 100 * robust_flags(frame).mean() if frame is not None else np.nan,
            "attack_success_rate": np.nan,
            "cell_id": cell.cell_id or "",
            "reason": cell.reason,
        }
        if frame is not None and frame["clean_correct"].any():
            clean = frame["clean_correct"]
            row["attack_success_rate"] = 100 * (clean & ~frame["adv_correct"]).sum() / clean.sum()
        rows.append(row)
    out = pd.DataFrame(rows)
    # per-sample worst case over each group's attacks (clean excluded): robust only if robust in all
    group_keys = ["model", "norm", "eps", *SETTING_KEYS]
    worst_rows = []
    attacked = out[(out["attack_name"] != "none")]
    for key, group in attacked.groupby(group_keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        base = dict(zip(group_keys, key, strict=True))
        # identity of a worst case = its component cells (so seeds that share every component share it)
        identity = "+".join(sorted(group["cell_id"].astype(str)))
        row = {**group.iloc[0].to_dict(), **base, "attack": WORST, "attack_name": "worst-case", "cell_id": identity}
        if (group["status"] == "done").all():
            flags = None
            for cid in group["cell_id"]:
                f = robust_flags(by_cell[cid]).set_axis(by_cell[cid]["sample_id"].to_numpy())
                flags = f if flags is None else flags & f
            row.update(status="done", robust_accuracy=100 * flags.mean(), attack_success_rate=np.nan)
        else:
            row.update(status="missing" if (group["status"] != "skipped").any() else "skipped",
                       robust_accuracy=np.nan, attack_success_rate=np.nan)  # fmt: skip
        worst_rows.append(row)
    if worst_rows:
        out = pd.concat([out, pd.DataFrame(worst_rows)], ignore_index=True)
    return out


def _provenance(store: Store, plan: SweepPlan, long: pd.DataFrame) -> dict[str, Any]:
    runs = store.runs()
    versions: dict[str, set] = {}
    for v in runs["versions"] if len(runs) else []:
        for k, val in v.items():
            versions.setdefault(k, set()).add(val)
    settings = {k: sorted({str(getattr(s, k)) for s in plan.config.settings}) for k in SETTING_KEYS}
    attacks = []
    for a in plan.config.attacks:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(a.params.items()))
        attacks.append(f"{a.label} [{a.norm}, eps {_fmt_eps(a.eps, a.norm)}{', ' + params if params else ''}]")
    return {
        "sweep": plan.config.name,
        "sweep_file": str(plan.config.path),
        "description": plan.config.description,
        "n_samples": len(plan.data),
        "sample_ids": f"{int(plan.data.ids.min())}..{int(plan.data.ids.max())} (CIFAR-10 test, original order)",
        "data": plan.data.source,
        "attacks": attacks,
        "settings": settings,
        "seeds": plan.config.seeds,
        "versions": {k: sorted(v) for k, v in sorted(versions.items())},
        "cells_total": int(len(long[long["attack"] != WORST])),
        "cells_missing": int(((long["status"] != "done") & (long["status"] != "skipped") & (long["attack"] != WORST)).sum()),
        "skipped": {m: r for m, r in plan.skipped.items()},
    }


@dataclass
class Report:
    """A built report: the wide table, the long one, layout and provenance."""

    wide: pd.DataFrame
    long: pd.DataFrame
    rows: list[str]
    columns: list[str]
    provenance: dict[str, Any]
    plan: SweepPlan


def _layout(plan: SweepPlan) -> tuple[list[str], list[str]]:
    layout = {**DEFAULT_LAYOUT, **plan.config.report}
    rows, cols = list(layout["rows"]), list(layout["columns"])
    # settings axes with more than one value must appear somewhere (seeds are aggregated)
    varying = [k for k in SETTING_KEYS if k != "seed" and len({getattr(s, k) for s in plan.config.settings}) > 1]
    if len({a.eps for a in plan.config.attacks if a.name != "none"}) > 1 and "eps_label" not in rows + cols:
        varying.append("eps_label")
    for k in varying:
        if k not in rows and k not in cols:
            rows.append(k)
    return rows, cols


def _counterpart(plan: SweepPlan, model: str) -> str | None:
    """The CNN of the same depth and AWN flag as an ANN model of the sweep, if the sweep has one."""
    ann = plan.models.get(model)
    if ann is None or ann.arch.kind != "adder":
        return None
    for label, other in plan.models.items():
        if other.arch.kind == "conv" and other.arch.depth == ann.arch.depth and other.arch.awn == ann.arch.awn:
            return label
    return None


def build(store: Store, plan: SweepPlan) -> Report:
    """Long table, wide (pivoted, mean/std over seeds) table with deltas, and provenance."""
    long = long_table(store, plan)
    rows, cols = _layout(plan)
    data = long[long["status"] != "skipped"].copy()
    data["shuffle"] = data["shuffle"].map(lambda v: "yes" if v else "no")
    if "attack" in rows + cols:  # keep the sweep's attack order, the worst case last
        order = [a.label for a in plan.config.attacks] + [WORST]
        data["attack"] = pd.Categorical(data["attack"], categories=list(dict.fromkeys(order)), ordered=True)
    if "model" in rows + cols:
        data["model"] = pd.Categorical(data["model"], categories=[m.label for m in plan.config.models], ordered=True)
    if "attack" not in rows + cols:
        data = data[data["attack"] != WORST]
    grouped = data.groupby(rows + cols, observed=True, dropna=False)["robust_accuracy"]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    # a spread over seeds exists only where seeds gave different cells: grid points that share one cell (a
    # seed that cannot change the result) have std 0 by construction, which is no evidence of stability
    distinct = data.groupby(rows + cols, observed=True, dropna=False)["cell_id"].nunique().reset_index(drop=True)
    stats.loc[distinct.to_numpy() <= 1, "std"] = np.nan
    wide = stats.pivot_table(index=rows, columns=cols, values=["mean", "std"], observed=True, dropna=False, sort=False)
    wide = wide.reorder_levels(list(range(1, wide.columns.nlevels)) + [0], axis=1) if wide.columns.nlevels > 1 else wide
    wide = wide.sort_index(axis=1, level=list(range(wide.columns.nlevels - 1)), sort_remaining=False)
    # ANN − CNN deltas of the means, for each ANN with a CNN counterpart in the sweep
    if "model" in rows:
        deltas = []
        means = wide.xs("mean", axis=1, level=-1, drop_level=False)
        for model in [m.label for m in plan.config.models]:
            cnn = _counterpart(plan, model)
            if cnn is None:
                continue
            try:
                a = means.xs(model, level="model", drop_level=False) if wide.index.nlevels > 1 else means.loc[[model]]
                b = means.xs(cnn, level="model", drop_level=False) if wide.index.nlevels > 1 else means.loc[[cnn]]
            except KeyError:
                continue
            diff = a.to_numpy() - b.to_numpy()
            label = f"Δ {model} − {cnn}"
            idx = a.index.map(lambda k, label=label: (label, *k[1:]) if isinstance(k, tuple) else label)
            deltas.append(pd.DataFrame(diff, index=idx, columns=means.columns))
        if deltas:
            delta = pd.concat(deltas)
            delta.index.names = wide.index.names
            wide = pd.concat([wide.astype(float), delta.reindex(columns=wide.columns)])
    names = {"eps_label": "eps", "batch_size": "batch size", "bn": "BN", "grad": "gradient"}
    wide.index = wide.index.set_names([names.get(n, n) for n in wide.index.names])
    wide.columns = wide.columns.set_names([names.get(n, n) for n in wide.columns.names])
    wide.attrs["provenance"] = _provenance(store, plan, long)
    return Report(wide, long, rows, cols, wide.attrs["provenance"], plan)


def table(
    store: str | os.PathLike | Store | None = None,
    preset: str | None = "paper",
    *,
    sweep: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The paper-style table of a preset (or sweep file) from a store: mean/std columns, deltas, provenance."""
    with _open(store) as db:
        return build(db, plan_sweep(load_sweep(sweep or preset_path(preset or "paper")), data=data, store=db)).wide


def _open(store) -> Store:
    return store if isinstance(store, Store) else Store.open(store, readonly=True)


# -- rendering -------------------------------------------------------------------------------------------
def _display(report: Report, fmt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strings "mean ± std" (std only where several seeds) and the numeric means, same shape."""
    wide = report.wide
    means = wide.xs("mean", axis=1, level=-1)
    stds = wide.xs("std", axis=1, level=-1).reindex_like(means)
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    text = means.copy().astype(object)
    for r in range(means.shape[0]):
        for c in range(means.shape[1]):
            m, s = means.iat[r, c], stds.iat[r, c]
            is_delta = str(means.index[r][0] if isinstance(means.index[r], tuple) else means.index[r]).startswith("Δ")
            if pd.isna(m):
                text.iat[r, c] = "–"
            elif is_delta:
                text.iat[r, c] = f"{m:+.2f}"
            else:
                text.iat[r, c] = f"{m:.2f}" + (f"{pm}{s:.2f}" if pd.notna(s) else "")
    return text, means


def _best_mask(means: pd.DataFrame) -> pd.DataFrame:
    """Best (highest) value per column among model rows (delta rows excluded)."""
    model_rows = [not str(k[0] if isinstance(k, tuple) else k).startswith("Δ") for k in means.index]
    mask = pd.DataFrame(False, index=means.index, columns=means.columns)
    for c in means.columns:
        col = means[c][model_rows]
        if col.notna().any():
            best = col.max()
            mask[c] = [bool(ok and v == best) for ok, v in zip(model_rows, means[c], strict=True)]
    return mask


def _bold_best(text: pd.DataFrame, means: pd.DataFrame):
    """Styler of the display table with the best value per column in bold (CSS, converted for LaTeX)."""
    mask = _best_mask(means)
    styler = text.style.set_uuid("robustadder")  # fixed ids: the same rows always render the same page
    return styler.apply(lambda _: np.where(mask, "font-weight: bold;", ""), axis=None)


def _caption(report: Report) -> str:
    """Short LaTeX caption carrying the provenance that matters for reading the numbers."""
    p = report.provenance
    eps = sorted({_fmt_eps(a.eps, a.norm) for a in report.plan.config.attacks if a.name != "none"})
    seeds = p["seeds"]
    first_ids = p["sample_ids"].split(" ")[0]
    spread = " $\\pm$ std over seeds " + ", ".join(map(str, seeds)) if len(seeds) > 1 else ""
    torch_versions = ", ".join(p["versions"].get("torch", ["?"]))
    return (
        f"Robust accuracy (\\%) on the first {p['n_samples']} CIFAR-10 test images (ids {first_ids}), "
        f"eps {', '.join(eps)}; mean{spread}. {WORST}: per sample over the row's attacks. "
        + (
            "$\\Delta$ rows: ANN minus CNN in points, models of different clean accuracy (Clean column). "
            if _has_deltas(report)
            else ""
        )
        + f"Sweep '{p['sweep']}'; torch {torch_versions}."
    )


def provenance_lines(report: Report) -> list[str]:
    """Human-readable provenance, one fact per line."""
    p = report.provenance
    missing = (
        f" — {p['cells_missing']} missing, shown as – (run: robustadder sweep {p['sweep_file']})" if p["cells_missing"] else ""
    )
    lines = [
        f"sweep: {p['sweep']} ({p['sweep_file']}) — {p['description']}",
        f"samples: {p['n_samples']}, ids {p['sample_ids']}, data {p['data']}",
        f"attacks: {'; '.join(p['attacks'])}",
        "settings: " + ", ".join(f"{k}={'/'.join(v)}" for k, v in p["settings"].items()),
        f"seeds: {', '.join(map(str, p['seeds']))} (mean ± std across seeds, only where seeds gave different cells)",
        f"cells: {p['cells_total'] - p['cells_missing']}/{p['cells_total']} present{missing}",
        "versions: " + ", ".join(f"{k} {'/'.join(v)}" for k, v in p["versions"].items()),
        f"robust accuracy: share of all samples correct with and without attack; {WORST}: per-sample, over the row's attacks",
    ]
    if _has_deltas(report):
        lines.append(
            "Δ rows: differences in points between an ANN and its CNN counterpart, models of different clean accuracy "
            "(the Clean column's Δ); `robustadder compare` tests such differences (McNemar, intervals) and gives the "
            "view on the samples both classify correctly"
        )
    for model, reason in p["skipped"].items():
        lines.append(f"skipped model {model}: {reason}")
    return lines


def _has_deltas(report: Report) -> bool:
    return any(str(k[0] if isinstance(k, tuple) else k).startswith("Δ") for k in report.wide.index)


def _flat_columns(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" / ".join(str(x) for x in c) for c in df.columns]
    return df


def energy_table(report: Report) -> pd.DataFrame:
    """Per model of the sweep: operations and energy per inference next to clean and worst-case accuracy."""
    from .ops import count_ops

    long = report.long[report.long["status"] == "done"]
    rows = []
    for label, loaded in report.plan.models.items():
        counts = count_ops(loaded.model)
        mine = long[long["model"] == label]
        if (mine["bn"] == "eval").any():  # the model's own numbers, not those of BN in train mode
            mine = mine[mine["bn"] == "eval"]
        clean = mine[mine["attack_name"] == "none"]["robust_accuracy"]
        worst = mine[mine["attack"] == WORST]["robust_accuracy"]
        rows.append({
            "model": label, "variant": loaded.arch.variant,
            "additions (M)": round(counts.total_adds / 1e6, 2), "multiplications (M)": round(counts.total_muls / 1e6, 2),
            "energy (µJ)": round(counts.energy_uj, 2),
            "clean acc (%)": round(float(clean.mean()), 2) if len(clean) else np.nan,
            "worst-case robust acc (%)": round(float(worst.mean()), 2) if len(worst) else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def to_markdown(report: Report) -> str:
    """Markdown table, energy table and provenance footer."""
    from .ops import ENERGY_SOURCE

    text, _ = _display(report, "md")
    text = _flat_columns(text)
    body = text.reset_index().to_markdown(index=False)
    energy = energy_table(report).to_markdown(index=False)
    footer = "\n".join(f"- {line}" for line in provenance_lines(report))
    return (
        f"### {report.provenance['sweep']}: robust accuracy (%)\n\n{body}\n\n"
        f"Accuracy, robustness and energy per inference ({ENERGY_SOURCE}; counting convention in robustadder/ops.py):\n\n"
        f"{energy}\n\n{footer}\n"
    )


def _latex_escape_label(value: Any) -> str:
    from pandas.io.formats.style_render import _escape_latex

    return _escape_latex(str(value)).replace("Δ", "$\\Delta$").replace("−", "--")


def to_latex(report: Report, *, label: str | None = None) -> str:
    """Booktabs table environment (needs the booktabs package), best per column in bold."""
    text, means = _display(report, "latex")
    styler = _bold_best(text, means).format_index(_latex_escape_label, axis=0).format_index(_latex_escape_label, axis=1)
    column_format = "l" * text.index.nlevels + "r" * text.shape[1]
    latex = styler.to_latex(
        column_format=column_format,
        hrules=True, caption=_caption(report), label=label or f"tab:robustadder-{report.provenance['sweep']}",
        convert_css=True, position_float="centering", multirow_align="naive", multicol_align="c",
    )  # fmt: skip
    notes = "\n".join(f"% {line}" for line in provenance_lines(report))
    return f"% generated by robustadder report; requires \\usepackage{{booktabs}}\n{notes}\n{latex}"


def to_csv(report: Report) -> str:
    """The long table (one row per cell and worst case) as CSV."""
    return report.long.to_csv(index=False)


# -- plots -------------------------------------------------------------------------------------------------
def plots(report: Report) -> list[tuple[str, bytes]]:
    """PNG figures: robust accuracy vs eps per model (when eps varies); spread across settings (when they vary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    data = report.long[(report.long["status"] == "done") & (report.long["attack_name"] != "none")]
    if data.empty:
        return figures
    if data["eps"].nunique() > 1:
        attacks = list(dict.fromkeys(data["attack"]))
        fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.4), squeeze=False, sharey=True)
        for ax, attack in zip(axes[0], attacks, strict=True):
            sub = data[data["attack"] == attack]
            for model, g in sub.groupby("model", sort=False):
                agg = g.groupby("eps")["robust_accuracy"].agg(["mean", "std"]).sort_index()
                ax.errorbar(agg.index * 255, agg["mean"], yerr=agg["std"].fillna(0), marker="o", capsize=3, label=model)
            ax.set_title(attack)
            ax.set_xlabel("eps (×1/255)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("robust accuracy (%)")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        figures.append(("Robust accuracy vs eps", _png(fig)))
    varying = [k for k in SETTING_KEYS if k != "seed" and data[k].nunique() > 1]
    if varying or data["seed"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * data.groupby(["model", "attack"]).ngroups), 3.8))
        groups = list(data.groupby(["model", "attack"], sort=False))
        ax.boxplot([g["robust_accuracy"].to_numpy() for _, g in groups], showmeans=True)
        for i, (_, g) in enumerate(groups, start=1):
            ax.scatter(np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g)), g["robust_accuracy"], s=10, alpha=0.6)
        ax.set_xticks(range(1, len(groups) + 1), [f"{m}\n{a}" for (m, a), _ in groups], fontsize=7)
        ax.set_ylabel("robust accuracy (%)")
        ax.set_title("Spread across inference settings" + (f" ({', '.join(varying)}; seeds)" if varying else " (seeds)"))
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        figures.append(("Spread across inference settings and seeds", _png(fig)))
    return figures


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def to_html(reports: list[Report], title: str = "robustadder report", extra_html: str = "") -> str:
    """A self-contained HTML page: each report's table (best in bold), its plots and provenance."""
    sections = []
    for report in reports:
        text, means = _display(report, "html")
        styler = (
            _bold_best(text, means)
            .set_table_attributes('class="results"')
            .set_caption(f"Robust accuracy (%) — sweep {report.provenance['sweep']}")
        )
        figs = "".join(
            f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{name}</figcaption></figure>"
            for name, png in plots(report)
        )
        prov = "".join(f"<li>{_html_escape(line)}</li>" for line in provenance_lines(report))
        energy = energy_table(report).style.hide(axis="index").set_uuid("energy").format(precision=2).to_html()
        figs = f"<h3>Accuracy, robustness and energy per inference</h3>{energy}" + figs
        head = f"<h2>{_html_escape(report.provenance['sweep'])}</h2><p>{_html_escape(report.provenance['description'])}</p>"
        sections.append(f"<section>{head}{styler.to_html()}{figs}<ul class='provenance'>{prov}</ul></section>")
    css = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table.results{border-collapse:collapse;margin:1em 0}"
        "table.results td,table.results th{border-bottom:1px solid #ccc;padding:4px 10px;text-align:right}"
        "figure img{max-width:100%}ul.provenance{font-size:90%;color:#333}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html_escape(title)}</title><style>{css}</style></head>"
        f"<body><h1>{_html_escape(title)}</h1>{''.join(sections)}{extra_html}</body></html>\n"
    )


def _html_escape(text: str) -> str:
    import html

    return html.escape(str(text))


def render(report: Report, fmt: str) -> str:
    """One report in one format."""
    if fmt == "csv":
        return to_csv(report)
    if fmt == "latex":
        return to_latex(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html([report], title=f"robustadder — {report.provenance['sweep']}")
    raise UserError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")


def make_report(
    store: str | os.PathLike | Store | None = None,
    *,
    preset: str | None = None,
    sweep: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
) -> Report:
    """Build the report of a preset or sweep file from a store (read-only)."""
    path = Path(sweep) if sweep else preset_path(preset or "paper")
    db = _open(store)
    try:
        return build(db, plan_sweep(load_sweep(path), data=data, store=db))
    finally:
        if not isinstance(store, Store):
            db.close()
