"""Planning a report from the store: a sweep's grid points found in the store, and the long table of their results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..attacks import AttackConfig, format_eps
from ..data import DEFAULT_DATASET
from ..distances import at_eps
from ..errors import UserError
from ..resources import presets_dir
from ..store import Store
from ..summary import proportion_interval, robust_flags, worst_case_accuracy
from ..sweep import SETTING_KEYS, ModelRef, PlannedCell, SweepConfig, attack_key, load_sweep, parse_sweep, settings_key

PRESETS = {"paper": "paper.toml", "eps": "eps-sweep.toml", "settings": "settings.toml", "smoke": "smoke.toml"}
PRESET_DIR = presets_dir()
WORST = "Worst case"
ACCURACY_COLUMNS = ("clean_accuracy", "clean_ci_low", "clean_ci_high", "robust_accuracy", "robust_ci_low",
                    "robust_ci_high", "attack_success_rate")  # fmt: skip


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
    rows, frames = [], {}  # frames[(cell id, eps)]: the rows a grid point's accuracy and worst case are read from
    budgets = reading_budgets(plan.config)
    for cell in plan.cells:
        entry = plan.models.get(cell.model.label)
        cell_frame = by_cell.get(cell.cell_id) if cell.status == "done" else None
        minimal = cell.attack.definition.minimal
        for eps in budgets.get(cell.attack.norm) or [cell.attack.eps] if minimal else [cell.attack.eps]:
            frame = at_eps(cell_frame, cell.attack.norm, eps) if minimal and cell_frame is not None else cell_frame
            frames[(cell.cell_id, eps)] = frame
            rows.append(_grid_row(cell, entry, eps, frame))
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
            accuracy, (low, high) = worst_case_accuracy([frames[(cid, e)] for cid, e in zip(group["cell_id"], group["eps"],
                                                                                         strict=True)])  # fmt: skip
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


def reading_budgets(config: SweepConfig) -> dict[str, list[float]]:
    """Per norm, the budgets at which a minimal attack's cell is read: the sweep's eps, else its fixed attacks'.

    A minimal attack has no budget of its own (its cell is stored at the whole image box); read at each of the
    sweep's budgets it is a robust accuracy like any other column, and joins the per-sample worst case there.
    """
    out: dict[str, set[float]] = {}
    for norm, values in config.budgets.items():
        out.setdefault(norm, set()).update(values)
    for a in config.attacks:
        if a.name != "none" and not a.definition.minimal:
            out.setdefault(a.norm, set()).add(a.eps)
    return {norm: sorted(values) for norm, values in out.items()}


def _grid_row(cell: PlannedCell, entry: ModelEntry | None, eps: float, frame: pd.DataFrame | None) -> dict[str, Any]:
    """One grid point's row of the long table: what it is, its status and, when done, its accuracies."""
    row: dict[str, Any] = {
        "model": cell.model.label,
        "variant": entry.info.get("variant", "") if entry else "",
        "arch": entry.info.get("arch", "") if entry else "",
        "attack": cell.attack.label,
        "attack_name": cell.attack.name,
        "eps": eps,
        "eps_label": format_eps(eps, cell.attack.norm),
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
    return row


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
        # a digest by its first 12 hex digits, as the weights are named in captions: the full 64 do not break across
        # lines and ran 158 pt past a LaTeX column (the full digest stays in the stored cell's config: the CSV's cell_id)
        parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v[:12]}" if k.endswith("_sha256") and isinstance(v, str)
                  else f"{k}={v}" for k, v in sorted(p.items())]  # fmt: skip
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


# -- what a store holds, without a sweep file ----------------------------------------------------------------
def stored_sweeps(store: Store) -> tuple[list[SweepConfig], list[str]]:
    """Every sweep the store records, as its last run recorded the file; and a note per sweep it cannot render.

    A store written before sweeps kept their files still renders a sweep that has a preset of its name.
    """
    presets: dict[str, SweepConfig] | None = None  # parsed only for a sweep recorded without its file
    configs, notes = [], []
    for name in store.sweeps():
        source = store.sweep_source(name)
        if source is None and presets is None:
            presets = {c.name: c for c in (load_sweep(PRESET_DIR / f) for f in PRESETS.values())}
        if source is not None:
            configs.append(parse_sweep(source[1], Path(source[0])))
        elif name in presets:
            configs.append(presets[name])
        else:
            notes.append(f"sweep '{name}' was recorded before stores kept sweep files: pass --sweep FILE to report it")
    return configs, notes


def recorded_size(store: Store, config: SweepConfig) -> int | None:
    """The number of images to report a stored sweep at: its file's, if the store has that grid, else the largest."""
    sizes = sorted({int(v) for v in store.sweep_records(config.name)[2]["n"]})
    return config.n if not sizes or config.n in sizes else sizes[-1]


#: the name under which eval's cells are reported (no sweep file may take it: it is not a valid file stem here)
EVAL_CELLS = "eval cells"


def eval_plans(store: Store) -> list[ReportPlan]:
    """The cells ``robustadder eval`` computed outside any sweep, as report plans: one per set of samples.

    Rows are the models (by name; by name and weights where one name had several), columns the attacks and
    budgets, every settings combination that occurs its own row; only the cells that exist are grid points.
    """
    from ..engine import Settings
    from ..models import REGISTRY

    cells = store.eval_cells()
    plans = []
    samples = [cells["config"].map(lambda c: c["data"]["n"]), cells["config"].map(lambda c: c["data"]["fingerprint"])]
    for (n, fingerprint), group in cells.groupby(samples, sort=False) if len(cells) else []:
        names: dict[str, set[str]] = {}
        for c in group["config"]:
            names.setdefault(c["model"]["name"], set()).add(c["model"]["weights_sha256"])
        models: dict[str, ModelEntry] = {}
        refs: dict[str, ModelRef] = {}
        points: list[PlannedCell] = []
        attacks: list[AttackConfig] = []
        settings: list[Settings] = []
        for row in group.itertuples(index=False):
            c = row.config
            sha, arch = c["model"]["weights_sha256"], c["model"]["arch"]
            label = c["model"]["name"] if len(names[c["model"]["name"]]) == 1 else f"{c['model']['name']} ({sha[:8]})"
            if label not in models:
                info = {"arch": arch, **(store.model_info(sha) or {})}
                if arch in REGISTRY:  # what ANN − CNN rows pair models by
                    spec = REGISTRY[arch].spec
                    info = {"variant": spec.variant, "kind": spec.kind, "family": spec.family, "awn": spec.awn, **info}
                models[label] = ModelEntry(label, c["model"]["name"], sha, info)
                refs[label] = ModelRef(c["model"]["name"], label)
            a = c["attack"]
            attack = AttackConfig(a["name"], a["norm"], a["eps"], a["params"])
            # a cell records the gradient it followed: none where the model has no adder layer or the attack no
            # gradient, which any gradient setting gives; shown as the default so that it adds no row of its own
            s = {**c["settings"], "grad": c["settings"]["grad"] if c["settings"]["grad"] != "none" else "both"}
            setting = Settings(**{k: s[k] for k in SETTING_KEYS if k in s})
            attacks += [attack] if attack not in attacks else []
            settings += [setting] if setting not in settings else []
            point = PlannedCell(refs[label], attack, setting, row.cell_id, row.status)
            if row.status == "failed":
                point.reason = public_text(row.error or "unknown error")
            points.append(point)
        config = SweepConfig(EVAL_CELLS if not plans else f"{EVAL_CELLS} ({fingerprint})",
                             f"every cell robustadder eval computed on these {n} samples outside a sweep",
                             Path(EVAL_CELLS), int(n), list(refs.values()), attacks, settings)  # fmt: skip
        errors = {p.cell_id: p.reason for p in points if p.status == "failed"}
        plans.append(ReportPlan(config, int(n), models, {}, points, errors))
    return plans
