"""Aggregation of per-sample rows into the numbers a user reads (shared by CLI, API and reports).

Definitions (DESIGN §5):

* clean accuracy: share of samples classified correctly without attack;
* robust accuracy of an attack: share of *all* samples that are clean-correct and still correct under
  the attack (a misclassified sample is never robust);
* attack success rate: share of clean-correct samples that the attack fools;
* worst case over several attacks: a sample counts as robust only if no attack fooled it.
"""

from __future__ import annotations

import pandas as pd


def robust_flags(frame: pd.DataFrame) -> pd.Series:
    """Per row: clean-correct and adversarially correct."""
    return frame["clean_correct"].astype(bool) & frame["adv_correct"].astype(bool)


def attack_summary(frame: pd.DataFrame, seconds: float | None = None) -> dict:
    """Numbers for one cell's rows (percentages in percent)."""
    robust = robust_flags(frame)
    clean = frame["clean_correct"].astype(bool)
    n_clean = int(clean.sum())
    fooled = int((clean & ~frame["adv_correct"].astype(bool)).sum())
    return {
        "n": len(frame),
        "clean_accuracy": 100.0 * float(clean.mean()) if len(frame) else float("nan"),
        "robust_accuracy": 100.0 * float(robust.mean()) if len(frame) else float("nan"),
        "attack_success_rate": 100.0 * fooled / n_clean if n_clean else float("nan"),
        "mean_linf": float(frame["linf"].mean()),
        "mean_l2": float(frame["l2"].mean()),
        "max_linf": float(frame["linf"].max()),
        "max_l2": float(frame["l2"].max()),
        "seconds": float(seconds if seconds is not None else frame.groupby("batch")["batch_seconds"].first().sum()),
    }


def worst_case_accuracy(frames: list[pd.DataFrame]) -> float:
    """Per-sample worst case over several cells on the same samples: robust only if robust in all."""
    flags = None
    for frame in frames:
        f = robust_flags(frame).set_axis(frame["sample_id"].to_numpy())
        flags = f if flags is None else (flags & f.reindex(flags.index, fill_value=False))
    if flags is None or len(flags) == 0:
        return float("nan")
    return 100.0 * float(flags.mean())
