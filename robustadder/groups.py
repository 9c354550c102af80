"""``robustadder compare --group ANN=... --group CNN=...``: whether one *class* of models is more robust than another.

A single trained network per side compares training runs, not architectures: two runs of one recipe can
differ more than an AdderNet and a CNN do. This protocol takes several networks per class (training seeds)
and answers for the classes:

* per model, the minimal L∞ perturbation of every sample (FMN, through both adder gradients for adder models)
  and fixed-eps attacks (PGD-20 with 2 restarts by default) at the budgets of ``eps``; per sample the
  **envelope**: the smaller of FMN's distance and the smallest eps at which a fixed-eps attack fooled it
  (:func:`robustadder.distances.envelope`);
* per model, the robustness curve from the envelope (Wilson bands), its median distance with a bootstrap
  interval, its area under the curve to 16/255, and how many samples a fixed-eps attack broke below FMN's
  distance;
* per pair of classes, the difference of the classes' mean areas with a t interval over training runs and
  samples beside the spread between runs inside each class, in one sentence
  (:class:`robustadder.distances.ClassComparison`).

Every cell goes through the store: a rerun is free and an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import escape
from .api import evaluate, resolve_attacks
from .attacks import format_eps, parse_eps
from .cost import format_duration
from .data import Dataset, ImageSet, dataset_title
from .distances import (
    DEFAULT_LIMIT,
    ClassComparison,
    area,
    compare_classes,
    envelope,
    eps_grid,
    median_distance,
    minimal_distances,
    robustness_curve,
)
from .engine import GRAD_SETTINGS, Settings, check_differentiable, data_fingerprint
from .errors import UserError
from .models import LoadedModel, announce, as_loaded, evaluation_images, module_input_shape, opened_dataset
from .models.module import default_dataset
from .store import Store
from .summary import CONFIDENCE, json_safe, proportion_interval, worst_case_flags

DEFAULT_GROUP_ATTACKS = ("pgd:steps=20,restarts=2",)
DEFAULT_GROUP_EPS = ("1/255", "2/255", "4/255", "8/255")
MINIMAL_ATTACK = "fmn"


def parse_group(text: str) -> tuple[str, list[str]]:
    """``LABEL=model1,model2,...`` → (label, models); one line for anything else."""
    label, sep, rest = text.partition("=")
    models = [m.strip() for m in rest.split(",") if m.strip()]
    if not sep or not label.strip() or not models:
        raise UserError(f"--group '{text}' must look like LABEL=MODEL1,MODEL2,... (e.g. ANN-20=ann20,ann20-seed1)")
    return label.strip(), models


@dataclass
class GroupComparison:
    """The class-level answer: per model its distances' summary, per pair of classes the verdict."""

    groups: dict[str, list[str]]
    models: pd.DataFrame  # one row per model
    curves: pd.DataFrame  # per model and curve eps: robust accuracy (envelope) with its interval
    classes: list[ClassComparison]
    settings: dict[str, Any]
    protocol: str
    notes: list[str] = field(default_factory=list)

    def sentences(self) -> list[str]:
        """One sentence per pair of classes."""
        return [c.sentence() for c in self.classes]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: per-model rows, curves, per-pair class comparisons, settings and protocol (NaN as null)."""
        classes = [
            {"a": c.names[0], "b": c.names[1], "members": [list(m) for m in c.members], "n": c.n, "limit": c.limit,
             "area": dict(c.areas), "class_area": list(c.class_area), "difference": c.difference, "ci": list(c.ci),
             "df": c.df, "spread": list(c.spread), "separates_runs": c.separates_runs,
             "spread_rivals_difference": c.spread_rivals_difference, "sentence": c.sentence()}
            for c in self.classes
        ]  # fmt: skip
        return json_safe({
            "groups": self.groups, "models": json.loads(self.models.to_json(orient="records")),
            "curves": json.loads(self.curves.to_json(orient="records")), "classes": classes,
            "verdicts": self.sentences(), "settings": self.settings, "protocol": self.protocol, "notes": self.notes,
        })  # fmt: skip

    def _display(self, esc, html: bool = False) -> pd.DataFrame:
        """The per-model table as text cells (escaped by ``esc``).

        In HTML each interval stands on a line of its own, small, as in the report's tables (on one line the eps
        columns ran past the page).
        """

        def ci(value: str, low: str, high: str) -> str:
            return f"{value}<br><span class='ci'>[{low}, {high}]</span>" if html else f"{value} [{low}, {high}]"

        rows = []
        for r in self.models.itertuples():
            row = {
                "class": esc(r.group), "model": esc(r.model),
                "clean": ci(f"{r.clean_accuracy:.1f}", f"{r.clean_ci_low:.1f}", f"{r.clean_ci_high:.1f}"),
                "median eps (/255)": ci(*(f"{v * 255:.3f}" for v in (r.median, r.median_ci_low, r.median_ci_high))),
                f"area to {self.settings['limit'] * 255:.3g}/255": f"{r.area:.2f}",
            }  # fmt: skip
            for e in self.settings["eps"]:
                row[format_eps(e)] = ci(*(f"{v:.1f}" for v in getattr(r, _eps_column(e))))
            row["below FMN"] = str(int(r.broken_below))
            rows.append(row)
        return pd.DataFrame(rows)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupComparison:
        """Rebuild the answer from what :meth:`to_json` wrote (``compare --group --json``), e.g. to lead a report page."""
        nan = float("nan")
        classes = [
            ClassComparison(
                names=(c["a"], c["b"]), members=tuple(tuple(m) for m in c["members"]), n=c["n"], limit=c["limit"],
                areas=c["area"], class_area=tuple(c["class_area"]), difference=c["difference"], ci=tuple(c["ci"]),
                spread=tuple(nan if s is None else s for s in c["spread"]), df=nan if c.get("df") is None else c["df"],
            )
            for c in data["classes"]
        ]  # fmt: skip
        return cls({k: list(v) for k, v in data["groups"].items()}, pd.DataFrame(data["models"]),
                   pd.DataFrame(data["curves"]), classes, dict(data["settings"]), data["protocol"],
                   list(data.get("notes", [])))  # fmt: skip

    def to_html(self, anchor: str = "answer") -> str:
        """An HTML section that leads with the answer: the class sentences, then the per-model table, the curves.

        ``anchor`` is the heading's id: one page may hold several answers (e.g. one per depth).
        """
        html = escape.html
        names = " vs ".join(html(g) for g in self.groups)
        return (
            f"<section><h2 id='{html(anchor)}'>The answer: {names}</h2>"
            + "".join(f"<p><b>{html(s)}</b></p>" for s in self.sentences())
            + _table_and_figure(anchor, self._display(html, html=True), plot_curves(self, format="png"), "robustness curves",
                                "Robustness curves (envelope), 95 % Wilson bands")  # fmt: skip
            + f"<p>{html(self.protocol)}</p>" + "".join(f"<p>{html(n)}</p>" for n in self.notes) + "</section>"
        )

    def render(self, fmt: str) -> str:
        """text, md, json or html: the class sentences, the per-model table, the protocol.

        md and html lead with the sentences (the answer); text ends with them, where a terminal leaves them in view.
        """
        if fmt == "json":
            return json.dumps(self.to_json(), indent=1)
        if fmt == "text":
            return "\n".join([self._display(str).to_string(index=False), "", *self.sentences(), "", self.protocol, *self.notes])
        if fmt == "md":
            md = escape.markdown
            table = self._display(md).to_markdown(index=False, disable_numparse=True)
            return "\n".join([*[f"- {md(s)}" for s in self.sentences()], "", table, "", md(self.protocol),
                              *[md(n) for n in self.notes], ""])  # the answer first, as the page's  # fmt: skip
        if fmt == "html":
            from .report import to_html

            return to_html([], title=f"robustadder compare --group — {' vs '.join(self.groups)}", lead_html=self.to_html())
        raise UserError(f"--format {fmt} is not available with --group (text, md, json, html)")


def _eps_column(eps: float) -> str:
    return f"robust_at_{round(eps * 255 * 1000)}"


def compare_groups(
    groups: Mapping[str, Sequence[Any]],
    *,
    eps: Sequence[Any] = DEFAULT_GROUP_EPS,
    attacks: Sequence[str] = DEFAULT_GROUP_ATTACKS,
    n: int | None = 1000,
    data: str | os.PathLike | ImageSet | None = None,
    dataset: str | os.PathLike | Dataset | None = None,
    store: str | os.PathLike | Store | None = None,
    settings: Settings | None = None,
    minimal: str = MINIMAL_ATTACK,
    progress: bool = True,
    **overrides: Any,
) -> GroupComparison:
    """Compare classes of models (``{"ANN-20": ["ann20", "ann20-seed1", ...], "CNN-20": [...]}``) on the same samples.

    Models are zoo names, checkpoint paths, factories or modules. Every check that can fail is made before any
    cell runs (nothing is written): at least two classes; no model twice (by name or by weights); every
    model of one dataset and class count; every model differentiable (a minimal attack follows its gradient).
    ``settings`` and keyword overrides of its fields as for :func:`robustadder.evaluate` (BN eval, original order).
    """
    if len(groups) < 2:
        raise UserError("a class comparison needs at least two groups (--group A=m1,m2 --group B=m3,m4)")
    if any(not list(members) for members in groups.values()):
        raise UserError("every group needs at least one model")
    refs = [m for members in groups.values() for m in members]
    names = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in refs]
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated:
        raise UserError(f"model {repeated[0]} is given twice; every model belongs to one group, once")
    settings = Settings.of(settings, **overrides)
    grad, dtype, seed = settings.grad, settings.dtype, settings.seed
    if grad not in GRAD_SETTINGS:
        raise UserError(f"--grad must be one of {', '.join(GRAD_SETTINGS)}, not {grad}")
    eps_values = sorted({parse_eps(e, "Linf") for e in eps})
    if not eps_values or eps_values[0] <= 0:
        raise UserError("the fixed-eps budgets must be positive")
    minimal_config, *_ = resolve_attacks([minimal, *attacks], eps=eps_values[0])  # validates before any work
    if not minimal_config.definition.minimal:
        raise UserError(f"--minimal {minimal} is not a minimal-perturbation attack (fmn is)")
    if settings.bn != "eval" or settings.shuffle:
        raise UserError("a class comparison runs BN in eval mode on the original order")
    settings.validate()
    dataset = opened_dataset(dataset)
    shape = module_input_shape(dataset, data)
    loaded: dict[str, list[LoadedModel]] = {
        label: [as_loaded(m, input_shape=shape) for m in members] for label, members in groups.items()
    }
    every = [m for members in loaded.values() for m in members]
    shas = [m.weights_sha256 for m in every]
    if len(set(shas)) != len(shas):
        twice = next(m.name for m in every if shas.count(m.weights_sha256) > 1)
        raise UserError(f"model {twice} appears twice under another name (the same weights); every model once")
    trained = {m.name: default_dataset([m]) or "cifar10" for m in every}
    if dataset is None and len(set(trained.values())) > 1:
        raise UserError("the models were trained on different datasets ("
                        + ", ".join(f"{k}: {v}" for k, v in trained.items()) + "); a class comparison needs one")  # fmt: skip
    classes_of = {m.name: m.arch.num_classes for m in every}
    if len(set(classes_of.values())) > 1:
        raise UserError("the models predict different numbers of classes ("
                        + ", ".join(f"{k}: {v}" for k, v in classes_of.items()) + ")")  # fmt: skip
    for model in every:
        check_differentiable(model)
    images = evaluation_images(every, dataset, data, n)
    for model in every:
        announce(model)
    own_store = not isinstance(store, Store)
    db = Store.open(store) if own_store else store
    limit = DEFAULT_LIMIT["Linf"]
    grid = eps_grid("Linf", limit)
    rows, curves, dists, notes = [], [], {}, []
    try:
        if db.run_id is None:
            db.start_run("compare --group", settings.resolved()["device"])
        total, done = len(every), 0
        for label, members in loaded.items():
            for model in members:
                started = time.perf_counter()
                fmn, env, below, clean, cost = model_envelope(model, images, db, settings, minimal, attacks, eps_values)
                dists[(label, model.name)] = env
                med = median_distance(env, seed=seed)
                c, m = int(clean.sum()), len(clean)
                clean_low, clean_high = proportion_interval(c, m)
                row = {"group": label, "model": model.name, "weights_sha256": model.weights_sha256, "n": m,
                       "clean_accuracy": 100.0 * c / m, "clean_ci_low": clean_low, "clean_ci_high": clean_high,
                       "median": med["median"], "median_ci_low": med["ci_low"], "median_ci_high": med["ci_high"],
                       "median_fmn": float(np.median(fmn)), "area": float(area(env.to_numpy(), limit)),
                       "broken_below": int(below.notna().sum()), "compute_seconds": cost}  # fmt: skip
                for e, r in zip(eps_values, robustness_curve(env, eps_values).itertuples(), strict=True):
                    row[_eps_column(e)] = (r.robust_accuracy, r.ci_low, r.ci_high)
                rows.append(row)
                curve = robustness_curve(env, grid).assign(group=label, model=model.name)
                curves.append(curve)
                done += 1
                if progress:
                    print(f"compare --group [{done}/{total}] {label} / {model.name}: clean {100.0 * c / m:.1f} %, median "
                          f"minimal eps {med['median'] * 255:.3g}/255, area {row['area']:.1f} "
                          f"({format_duration(time.perf_counter() - started)})", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if own_store:
            db.close()
    models = pd.DataFrame(rows)
    labels = list(loaded)
    classes = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            classes.append(compare_classes(
                {name: d for (g, name), d in dists.items() if g == a}, {name: d for (g, name), d in dists.items() if g == b},
                names=(a, b), limit=limit,
            ))  # fmt: skip
    below = int(models["broken_below"].sum())
    if below:
        notes.append(f"Fixed-eps attacks broke {below} sample(s) below FMN's distance (over all models); the envelope "
                     "uses the smaller, so a minimal attack weaker than PGD does not overstate robustness.")  # fmt: skip
    cost = float(models["compute_seconds"].sum())
    notes.append(f"Compute: {format_duration(cost)} of cell time for the {len(models)} models, as measured when each "
                 "cell ran (summed over interrupted and resumed runs; cells reused from the store count with the time "
                 "they took).")  # fmt: skip
    settings = {
        "n": len(images), "first_id": int(images.ids.min()), "last_id": int(images.ids.max()),
        "data": Path(images.source).name, "data_fingerprint": data_fingerprint(images), "dataset": images.dataset,
        "minimal": minimal, "attacks": list(attacks), "eps": eps_values, "limit": limit, "grad": grad, "dtype": dtype,
        "device": settings.device, "batch_size": settings.batch_size, "seed": seed, "confidence": CONFIDENCE,
        "compute_seconds": cost,
    }  # fmt: skip
    protocol = (
        f"On the first {len(images)} {dataset_title(images.dataset)} test images: per sample the minimal L∞ perturbation "
        f"({minimal_config.label}"
        + (", through both adder input gradients, the smaller kept" if grad == "both" else f", adder gradient {grad}")
        + f") enveloped with {', '.join(attacks)} at {', '.join(format_eps(e) for e in eps_values)}; robust accuracy "
        "at eps is the share of samples whose distance exceeds eps (95 % Wilson intervals); area under the curve "
        f"to {limit * 255:.3g}/255 in percent of the range (the mean of the distances capped there); class difference "
        "with a 95 % t interval whose variance adds the spread between training runs and the sampling of the test "
        "images (Welch-Satterthwaite degrees of freedom)."
    )
    return GroupComparison({k: [m.name for m in v] for k, v in loaded.items()}, models, pd.concat(curves, ignore_index=True),
                           classes, settings, protocol, notes)  # fmt: skip


def model_envelope(
    model: LoadedModel, images: ImageSet, store: Store | str | os.PathLike, settings: Settings | None, minimal: str,
    attacks: Sequence[str], eps: Sequence[float],
) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series, float]:
    """One model's step of the class protocol: FMN distances, envelope, eps of a fixed-eps break below FMN, clean, cost.

    The minimal attack and the clean pass, then ``attacks`` at every budget of ``eps`` (per sample their worst
    case), all through ``store``; the envelope keeps per sample the smaller of FMN's distance and the smallest
    budget at which a fixed-eps attack fooled it. :func:`compare_groups` and the calibration script share it, so
    both key their cells alike and the second reuses the first's. The cost is the cells' compute seconds as stored
    when they ran (summed over interrupted and resumed runs; a reused cell counts with the time it took).
    """  # fmt: skip
    name = resolve_attacks([minimal], eps=eps[0])[0].name
    result = evaluate(model, ["none", minimal], data=images, store=store, settings=settings, progress=False)
    frame, cost = result.frame, sum(s["seconds"] for s in result.summary)
    fmn = minimal_distances(frame[frame["attack_name"] == name], "Linf")
    clean = frame[frame["attack_name"] == "none"].set_index("sample_id")["clean_correct"].astype(bool)
    fixed = []
    for e in eps:
        result = evaluate(model, list(attacks), eps=e, data=images, store=store, settings=settings, progress=False)
        part, cost = result.frame, cost + sum(s["seconds"] for s in result.summary)
        robust = worst_case_flags([p for _, p in part.groupby("attack", sort=False)])
        ok = clean.reindex(robust.index)
        fixed.append((e, pd.DataFrame({"sample_id": robust.index, "clean_correct": ok.to_numpy(),
                                       "adv_correct": (robust | ~ok).to_numpy()})))  # fmt: skip
    env, below = envelope(fmn, fixed)
    return fmn, env, below, clean, cost


def plot_curves(result: GroupComparison, path: str | os.PathLike | None = None, *, format: str | None = None) -> bytes:
    """Robustness curves of every model (envelope, Wilson bands), one colour per class; the figure's bytes."""
    from .plotting import finish_robustness, plain_text_figures

    with plain_text_figures() as plt:
        fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=150)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, (label, members) in enumerate(result.groups.items()):
            for j, name in enumerate(members):
                c = result.curves[(result.curves["group"] == label) & (result.curves["model"] == name)]
                x = c["eps"].to_numpy() * 255
                ax.plot(x, c["robust_accuracy"], color=colours[k % len(colours)], lw=1.2,
                        label=str(label) if j == 0 else None)  # fmt: skip
                ax.fill_between(x, c["ci_low"], c["ci_high"], color=colours[k % len(colours)], alpha=0.08, lw=0)
        title = f"n = {result.settings['n']}, envelope of FMN and fixed-eps attacks, 95 % Wilson bands"
        # where every curve has fallen to 0 early (undefended models: all broken by 2-3/255), the axis ends soon after,
        # so that the region that separates the models is not a sliver at the left of the grid
        curves = result.curves
        alive = curves.loc[curves["robust_accuracy"] > 0, "eps"] * 255
        grid_end = float(curves["eps"].max() * 255)
        end = min(grid_end, max(1.0, float(np.ceil(alive.max() * 1.25))) if len(alive) else grid_end)
        note = f"every curve is 0 from {end:g} to {grid_end:g}" if end < grid_end else ""
        if note:
            ax.set_xlim(0, end)
        return finish_robustness(fig, ax, title, path, format, title_size=8, eps_note=note)


def medians_across(answers: Sequence[GroupComparison]) -> pd.DataFrame:
    """Per answer and class, every run's median minimal eps with its bootstrap interval.

    Does the answer move along whatever the answers differ in (depth, AWN, dataset)?
    Each answer's classes keep their position (first group, second group, ...) so that ``ANN-20`` and ``ANN-32``
    form one series. The class value is the mean of its runs' medians; the runs' spread stands beside it, because
    between-run variation is part of the uncertainty of a class (one run per class cannot show it).
    """
    rows = []
    for i, a in enumerate(answers):
        for k, label in enumerate(a.groups):
            for r in a.models[a.models["group"] == label].itertuples():
                rows.append({"answer": i, "comparison": " vs ".join(a.groups), "position": k, "class": label,
                             "model": r.model, "n": r.n, "median": r.median, "ci_low": r.median_ci_low,
                             "ci_high": r.median_ci_high})  # fmt: skip
    return pd.DataFrame(rows)


def _across_display(answers: Sequence[GroupComparison], esc) -> pd.DataFrame:
    frame, rows = medians_across(answers), []
    for (_, comparison, label), part in frame.groupby(["answer", "comparison", "class"], sort=False):
        runs = "; ".join(f"{esc(r.model)} {r.median * 255:.3f} [{r.ci_low * 255:.3f}, {r.ci_high * 255:.3f}]"
                         for r in part.itertuples())  # fmt: skip
        spread = part["median"].max() - part["median"].min()
        rows.append({"comparison": esc(comparison), "class": esc(label), "runs": len(part),
                     "mean of run medians (/255)": f"{part['median'].mean() * 255:.3f}",
                     "spread between runs (/255)": f"{spread * 255:.3f}" if len(part) > 1 else "one run: unknown",
                     "median minimal eps per run (/255) [95 % bootstrap]": runs})  # fmt: skip
    return pd.DataFrame(rows)


ACROSS_CAPTION = ("Median minimal L∞ eps (envelope) per class across the answers: points are training runs with their "
                  "bootstrap intervals over samples, lines join the class means of the run medians.")  # fmt: skip


def across_markdown(answers: Sequence[GroupComparison]) -> str:
    """The answers side by side as one Markdown table (:func:`medians_across`)."""
    table = _across_display(answers, escape.markdown).to_markdown(index=False, disable_numparse=True)
    return f"{table}\n\n{ACROSS_CAPTION}\n"


def across_html(answers: Sequence[GroupComparison]) -> str:
    """An HTML section with the table and plot of :func:`medians_across`."""
    return ("<section><h2 id='across'>Across the answers</h2>"
            + _table_and_figure("across", _across_display(answers, escape.html), plot_medians(answers, format="png"),
                                "median minimal eps across the answers", ACROSS_CAPTION) + "</section>")  # fmt: skip


def _table_and_figure(anchor: str, table: pd.DataFrame, png: bytes, alt: str, caption: str) -> str:
    """A displayed table (cells already escaped) and a PNG figure embedded in the page, as an answer section has them.

    The table's CSS ids derive from ``anchor`` (unique on the page), not from a random uuid: the same answer renders
    the same bytes.
    """
    import base64

    html = table.style.set_uuid(f"{anchor}-table").hide(axis="index").set_table_attributes('class="results"').to_html()
    return (f"<div class='scroll'>{html}</div><figure><img alt='{escape.html(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'><figcaption>{escape.html(caption)}</figcaption>"
            "</figure>")  # fmt: skip


def plot_medians(answers: Sequence[GroupComparison], path: str | os.PathLike | None = None, *,
                 format: str | None = None) -> bytes:  # fmt: skip
    """Median minimal eps per class across answers (e.g. depth 20 and 32): runs with intervals, class means joined."""
    from .plotting import finish, plain_text_figures

    frame = medians_across(answers)
    with plain_text_figures() as plt:
        fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=150)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        positions = sorted(frame["position"].unique())
        for k in positions:
            part = frame[frame["position"] == k]
            colour = colours[k % len(colours)]
            offset = (k - (len(positions) - 1) / 2) * 0.08
            for i, runs in part.groupby("answer"):
                x = i + offset + np.linspace(-0.02, 0.02, len(runs)) * (len(runs) > 1)
                ax.errorbar(x, runs["median"] * 255, yerr=[(runs["median"] - runs["ci_low"]) * 255,
                            (runs["ci_high"] - runs["median"]) * 255], fmt="o", ms=3, color=colour, capsize=2, lw=1)  # fmt: skip
            means = part.groupby("answer")["median"].mean()
            label = " / ".join(dict.fromkeys(part["class"]))
            ax.plot(means.index + offset, means.to_numpy() * 255, color=colour, lw=1.2, label=label)
        ticks = frame.drop_duplicates("answer")
        ax.set_xticks(ticks["answer"], [c.replace(" vs ", "\nvs ") for c in ticks["comparison"]], fontsize=8)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        ax.set_ylabel("median minimal L∞ eps (×1/255)")
        ax.set_title("per training run with 95 % bootstrap intervals; lines: class means", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return finish(fig, path, format)


__all__ = [
    "DEFAULT_GROUP_ATTACKS", "GroupComparison", "across_html", "across_markdown", "compare_groups", "medians_across",
    "model_envelope", "parse_group", "plot_curves", "plot_medians",
]  # fmt: skip
