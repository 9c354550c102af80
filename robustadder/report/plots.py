"""A report's figures: robust accuracy vs eps with intervals, and the spread across settings and seeds."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..summary import CONFIDENCE
from ..sweep import SETTING_KEYS
from .tables import _NAMES, Report

# -- plots -----------------------------------------------------------------------------------------------------------
FIGURE_WIDTH_IN = 9.0  # at 110 dpi ~990 px: readable at 100 % zoom in a 1100 px page
DPI = 110


def plots(report: Report) -> list[tuple[str, bytes]]:
    """PNG figures of a report.

    Robust accuracy vs eps per attack (log eps axis, intervals as error bars, n in the title) when eps
    varies; the spread across settings and seeds when they vary.
    """
    from ..plotting import plain_text_figures

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
    from ..plotting import figure_bytes

    return figure_bytes(fig, "png", DPI)
