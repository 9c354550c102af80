"""Aggregation of per-sample rows into the numbers a user reads (shared by CLI, API and reports).

Definitions (docs/design.md §5):

* clean accuracy: share of samples classified correctly without attack;
* robust accuracy of an attack: share of *all* samples that are clean-correct and still correct under
  the attack (a misclassified sample is never robust);
* attack success rate: share of clean-correct samples that the attack fools;
* worst case over several attacks: a sample counts as robust only if no attack fooled it.

Every accuracy is an estimate from n samples and carries a 95 % interval (Wilson score, as
``scipy.stats.binomtest(...).proportion_ci(method="wilson")`` computes it): 100 images give about
±10 points, 1,000 about ±3. Two models evaluated on the same samples are compared with the exact
McNemar test on the discordant pairs (samples one model gets right and the other wrong), which is the
two-sided binomial test of the discordant counts against 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .attacks import BOUND_TOLERANCE

CONFIDENCE = 0.95


def percent(value: float | None) -> str:
    """A percentage as every text output prints it: two decimals, ``n/a`` where it is undefined (no sample)."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f} %"


def ci_text(ci: Sequence[float]) -> str:
    """A 95 % interval in percent, to one decimal (the precision the interval itself supports)."""
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def proportion_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent; (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return 100.0 * float(ci.low), 100.0 * float(ci.high)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """Exact McNemar test of two paired boolean outcomes (per-sample "robust" of models A and B).

    Returns the discordant counts (``a_only``: A right, B wrong; ``b_only``), the difference of the
    proportions in percent points (A − B) and the two-sided p-value (1.0 when there is no discordant pair).
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired outcomes must have the same length")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    discordant = a_only + b_only
    p = float(stats.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    diff = 100.0 * (a_only - b_only) / len(a) if len(a) else float("nan")
    return {"a_only": a_only, "b_only": b_only, "difference": diff, "p_value": p}


def robust_flags(frame: pd.DataFrame) -> pd.Series:
    """Per row: clean-correct and adversarially correct."""
    return frame["clean_correct"].astype(bool) & frame["adv_correct"].astype(bool)


def attack_summary(frame: pd.DataFrame, seconds: float | None = None, budget: tuple[str, float] | None = None) -> dict:
    """Numbers for one cell's rows (percentages in percent).

    With ``budget`` (norm, eps), a perturbation above eps by no more than the verification's float32
    tolerance counts as eps, in the largest and in the mean: the images are float32, so x + eps can land a
    rounding step above eps; printed as is it read as a violation, which the verification had already ruled
    out (and a mean above the largest).
    """
    robust = robust_flags(frame)
    clean = frame["clean_correct"].astype(bool)
    n_clean = int(clean.sum())
    fooled = int((clean & ~frame["adv_correct"].astype(bool)).sum())
    linf, l2 = _within(frame["linf"], budget, "Linf"), _within(frame["l2"], budget, "L2")
    clean_ci = proportion_interval(n_clean, len(frame))
    robust_ci = proportion_interval(int(robust.sum()), len(frame))
    return {
        "n": len(frame),
        "clean_accuracy": 100.0 * float(clean.mean()) if len(frame) else float("nan"),
        "clean_accuracy_ci": list(clean_ci),
        "robust_accuracy": 100.0 * float(robust.mean()) if len(frame) else float("nan"),
        "robust_accuracy_ci": list(robust_ci),
        "attack_success_rate": 100.0 * fooled / n_clean if n_clean else float("nan"),
        "mean_linf": float(linf.mean()),
        "mean_l2": float(l2.mean()),
        "max_linf": float(linf.max()),
        "max_l2": float(l2.max()),
        "seconds": float(seconds if seconds is not None else frame.groupby("batch")["batch_seconds"].first().sum()),
    }


def _within(values: pd.Series, budget: tuple[str, float] | None, norm: str) -> pd.Series:
    """Per-sample norms, those above the budget by no more than the float32 tolerance set to the budget (float64)."""
    values = values.astype("float64")
    if budget is None or budget[0] != norm:
        return values
    return values.mask((values > budget[1]) & (values <= budget[1] + BOUND_TOLERANCE), float(budget[1]))


def worst_case_flags(frames: list[pd.DataFrame]) -> pd.Series:
    """Per sample id: robust in every one of several cells on the same samples."""
    flags = None
    for frame in frames:
        f = robust_flags(frame).set_axis(frame["sample_id"].to_numpy())
        flags = f if flags is None else (flags & f.reindex(flags.index, fill_value=False))
    return flags if flags is not None else pd.Series(dtype=bool)


def worst_case_accuracy(frames: list[pd.DataFrame]) -> tuple[float, tuple[float, float]]:
    """Robust accuracy (percent) and its 95 % interval of the per-sample worst case over several cells.

    A sample counts as robust only if it is robust in every cell (the cells cover the same samples).
    """
    flags = worst_case_flags(frames)
    if len(flags) == 0:
        return float("nan"), (float("nan"), float("nan"))
    return 100.0 * float(flags.mean()), proportion_interval(int(flags.sum()), len(flags))


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
