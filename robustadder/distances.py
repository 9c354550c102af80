"""Minimal adversarial distances: robustness curves, paired tests on distances, and answers about classes of models.

A minimal attack (FMN) stores, per sample, the smallest perturbation that fooled it. From those distances:

* the **distance** of a sample is 0 when the model misclassifies it clean, the norm of the stored
  perturbation when the attack fooled it, and ``inf`` when the attack never did (:func:`minimal_distances`);
* the **envelope** with fixed-eps cells of the same samples: a fixed-eps attack that fooled a sample at eps
  proves its distance is at most eps, so the envelope is the smaller of the two (:func:`envelope`; the
  samples a fixed-eps attack broke below the minimal attack's distance are counted, never hidden);
* the **robustness curve**: robust accuracy at eps is the share of samples whose distance exceeds eps, with
  Wilson intervals (:func:`robustness_curve`); the median distance with a bootstrap interval;
* a **paired comparison** of two models on the same samples (:func:`compare_distances`): the Wilcoxon
  signed-rank test on the distances, the Hodges–Lehmann shift with its interval, and the difference in area
  under the curve with a paired bootstrap interval;
* a **class comparison** (:func:`compare_classes`): several trained networks per class (training seeds),
  the difference of the classes' mean areas with a t interval whose variance adds the spread between training
  runs and the sampling of the test images (:func:`class_interval`), beside the spread inside each class.

``inf`` is handled explicitly: the Wilcoxon test ranks it above every finite distance (its order is all the
test uses); the area, the shift and the class statistic cap every distance at the curve's upper end
``limit`` (16/255 L∞ by default), so a sample the attack never fooled counts as robust over the whole curve.
The area under the curve over [0, limit] equals the mean of the capped distances (∫ 1[d > e] de = min(d, limit)),
reported as a percentage of ``limit``: 100 would be a model no perturbation up to ``limit`` fools.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .summary import CONFIDENCE, proportion_interval

DEFAULT_LIMIT = {"Linf": 16 / 255, "L2": 2.0}  # the curve's upper end per norm
DEFAULT_GRID_POINTS = 65  # 0 .. 16/255 in steps of 0.25/255
BOOTSTRAP_RESAMPLES = 2000


# -- per-sample distances ---------------------------------------------------------------------------------------
def minimal_distances(frame: pd.DataFrame, norm: str = "Linf") -> pd.Series:
    """Per sample id (the index): 0 if misclassified clean, the perturbation's norm if fooled, inf if never fooled."""
    column = "linf" if norm == "Linf" else "l2"
    clean = frame["clean_correct"].astype(bool).to_numpy()
    fooled = ~frame["adv_correct"].astype(bool).to_numpy()
    values = np.where(~clean, 0.0, np.where(fooled, frame[column].to_numpy(dtype=float), np.inf))
    return pd.Series(values, index=frame["sample_id"].to_numpy(), name="distance").sort_index()


def at_eps(frame: pd.DataFrame, norm: str, eps: float) -> pd.DataFrame:
    """A minimal attack's rows read at one budget: a sample counts as fooled only if fooled within ``eps``.

    What a fixed-eps attack's cell at ``eps`` would hold if it found exactly these adversarials: the rows a
    per-sample worst case with fixed-eps attacks, and a robust accuracy at the user's eps, are computed from.
    """
    column = "linf" if norm == "Linf" else "l2"
    out = frame.copy()
    beyond = ~out["adv_correct"].astype(bool) & out["clean_correct"].astype(bool) & (out[column] > eps)
    out.loc[beyond, "adv_correct"] = True
    out.loc[beyond, "adv_pred"] = out.loc[beyond, "label"]
    out.loc[beyond, ["linf", "l2"]] = 0.0
    return out


def envelope(minimal: pd.Series, fixed: Sequence[tuple[float, pd.DataFrame]]) -> tuple[pd.Series, pd.Series]:
    """The per-sample envelope of a minimal attack's distances and fixed-eps cells on the same samples.

    ``fixed``: (eps, the cell's rows) pairs. A fixed-eps cell that fooled a sample proves a distance of at most
    its eps. Returns (envelope distances, for each sample the eps of a fixed-eps attack that broke it *below*
    the minimal attack's distance, NaN where none did) — how much the minimal attack missed, shown.
    """
    out = minimal.astype(float).copy()
    below = pd.Series(np.nan, index=minimal.index, name="broken_below_by_eps")
    for eps, frame in sorted(fixed, key=lambda item: item[0]):
        rows = frame.set_index("sample_id").reindex(minimal.index)
        fooled = (rows["clean_correct"].astype(bool) & ~rows["adv_correct"].astype(bool)).to_numpy()
        missed = fooled & (eps < minimal.to_numpy()) & below.isna().to_numpy()
        below[missed] = eps
        out[fooled] = np.minimum(out[fooled], eps)
    return out.rename("distance"), below


def eps_grid(norm: str = "Linf", limit: float | None = None, points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """The curve's eps values: ``points`` evenly spaced from 0 to ``limit`` (16/255 L∞)."""
    return np.linspace(0.0, DEFAULT_LIMIT[norm] if limit is None else limit, points)


def robustness_curve(distances: pd.Series | np.ndarray, grid: Sequence[float], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Robust accuracy (percent) at each eps of ``grid``: the share of samples whose distance exceeds eps."""
    d = np.asarray(distances, dtype=float)
    rows = []
    for eps in grid:
        robust = int((d > eps).sum())
        low, high = proportion_interval(robust, len(d), confidence)
        rows.append({"eps": float(eps), "robust": robust, "n": len(d), "robust_accuracy": 100.0 * robust / len(d),
                     "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic, confidence: float, seed: int, paired: bool = False
) -> tuple[float, float]:
    """A percentile bootstrap interval (scipy), or (nan, nan) where it is undefined."""
    if len(data[0]) < 2:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):  # inf distances: the spread of a resample can be inf - inf; percentiles are fine
        result = stats.bootstrap(data, statistic, paired=paired, vectorized=True, confidence_level=confidence,
                                 n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                                 rng=np.random.default_rng(seed))  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def median_distance(distances: pd.Series | np.ndarray, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """The median minimal distance with a percentile bootstrap interval over the samples (inf allowed)."""
    d = np.asarray(distances, dtype=float)
    low, high = _bootstrap((d,), lambda x, axis=-1: np.median(x, axis=axis), confidence, seed)
    return {"median": float(np.median(d)), "ci_low": low, "ci_high": high, "n": len(d)}


def area(distances: np.ndarray, limit: float, axis: int = -1) -> np.ndarray:
    """Area under the robustness curve over [0, limit], in percent of ``limit`` (mean of the capped distances)."""
    return 100.0 * np.minimum(np.asarray(distances, dtype=float), limit).mean(axis=axis) / limit


# -- two models --------------------------------------------------------------------------------------------------
@dataclass
class DistanceComparison:
    """Model A against model B on the distances of the same samples (A minus B: positive, A more robust)."""

    a: str
    b: str
    n: int
    median_a: float
    median_b: float
    wilcoxon_statistic: float
    p_value: float
    n_untied: int
    shift: float
    shift_ci: tuple[float, float]
    area_a: float
    area_b: float
    area_difference: float
    area_ci: tuple[float, float]
    limit: float
    confidence: float = CONFIDENCE

    def sentence(self, unit: float = 1 / 255, unit_name: str = "/255") -> str:
        """One sentence: which model is more robust on the distances, by how much, how sure."""
        lo, hi = self.shift_ci
        shift = f"{self.shift / unit:+.3g}{unit_name} [{lo / unit:.3g}, {hi / unit:.3g}]"
        area = f"{self.area_difference:+.1f} points [{self.area_ci[0]:.1f}, {self.area_ci[1]:.1f}]"
        if self.p_value < 1 - self.confidence:
            who = self.a if self.shift > 0 or (self.shift == 0 and self.area_difference > 0) else self.b
            head = f"{who} needs larger perturbations to be fooled (Wilcoxon p = {self.p_value:.2g})"
        else:
            head = f"no significant difference in minimal distance (Wilcoxon p = {self.p_value:.2g})"
        return (f"{self.a} vs {self.b}: {head}; Hodges–Lehmann shift {shift}; area under the curve to "
                f"{self.limit / unit:.3g}{unit_name} {area} (n = {self.n})")  # fmt: skip


def hodges_lehmann(differences: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """The one-sample Hodges–Lehmann estimate (median of the Walsh averages) and its distribution-free interval.

    The interval's ends are the Walsh averages at the ranks the signed-rank statistic's normal approximation
    gives (Hollander & Wolfe); zero differences are dropped, as the Wilcoxon test drops them.
    """
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return 0.0, (0.0, 0.0)
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    m = len(walsh)
    z = stats.norm.ppf(0.5 + confidence / 2)
    k = int(math.floor(n * (n + 1) / 4 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    k = min(max(k, 0), m - 1)
    return float(np.median(walsh)), (float(walsh[k]), float(walsh[m - 1 - k]))


def _rank_cap(*arrays: np.ndarray) -> list[np.ndarray]:
    """``inf`` replaced by a value above every finite distance: the order, all a rank test uses, is kept."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] + [np.zeros(1)])
    cap = 2.0 * float(finite.max()) + 1.0
    return [np.where(np.isfinite(a), a, cap) for a in arrays]


def compare_distances(
    a: pd.Series, b: pd.Series, *, names: tuple[str, str] = ("A", "B"), limit: float = DEFAULT_LIMIT["Linf"],
    confidence: float = CONFIDENCE, seed: int = 0,
) -> DistanceComparison:  # fmt: skip
    """Two models on the distances of their common samples (see the module's notes on ``inf``).

    Wilcoxon signed-rank (scipy, ``zero_method='wilcox'``: pairs of equal distances — both misclassified
    clean, both never fooled — carry no information and are dropped), the Hodges–Lehmann shift of A − B on
    the distances capped at ``limit``, and the difference of the areas under the curves with a paired
    bootstrap interval over the samples.
    """
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ValueError("the two models share no sample")
    da, db = a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float)
    ra, rb = _rank_cap(da, db)
    untied = int((ra != rb).sum())
    if untied:
        test = stats.wilcoxon(ra, rb, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(test.statistic), float(test.pvalue)
    else:
        statistic, p_value = 0.0, 1.0
    ca, cb = np.minimum(da, limit), np.minimum(db, limit)
    shift, shift_ci = hodges_lehmann(ca - cb, confidence)
    area_ci = _bootstrap((ca, cb), lambda x, y, axis=-1: area(x, limit, axis) - area(y, limit, axis), confidence, seed,
                         paired=True)  # fmt: skip
    return DistanceComparison(
        names[0], names[1], len(common), float(np.median(da)), float(np.median(db)), statistic, p_value, untied,
        shift, shift_ci, float(area(ca, limit)), float(area(cb, limit)), float(area(ca, limit) - area(cb, limit)),
        area_ci, limit, confidence,
    )  # fmt: skip


# -- classes of models -------------------------------------------------------------------------------------------
@dataclass
class ClassComparison:
    """Two classes of models (e.g. ANN-20 and CNN-20, several training seeds each) on the same samples."""

    names: tuple[str, str]
    members: tuple[tuple[str, ...], tuple[str, ...]]
    n: int
    limit: float
    areas: Mapping[str, float]  # per model, percent of limit
    class_area: tuple[float, float]
    difference: float  # class A minus class B, points of area
    ci: tuple[float, float]
    spread: tuple[float, float]  # between-run standard deviation of the area inside each class (nan for one model)
    confidence: float = CONFIDENCE
    df: float = float("nan")  # the interval's degrees of freedom (Welch-Satterthwaite); nan where not recorded
    notes: list[str] = field(default_factory=list)

    @property
    def separates_runs(self) -> bool:
        """Whether both classes hold several training runs: only then is the answer about architectures."""
        return all(len(m) > 1 for m in self.members)

    @property
    def spread_rivals_difference(self) -> bool:
        """The between-run spread inside a class is as large as the difference between the classes."""
        return any(s == s and s >= abs(self.difference) for s in self.spread)

    def sentence(self) -> str:
        """The class-level verdict, naming what the evidence can and cannot separate."""
        a, b = self.names
        lo, hi = self.ci
        # two decimals: undefended models' areas are a few points, and a difference of +0.15 [0.03, 0.27] printed
        # as +0.2 [0.0, 0.3] looked like an interval that reaches 0
        numbers = (f"area under the robustness curve to {self.limit * 255:.3g}/255: {a} {self.class_area[0]:.2f} vs "
                   f"{b} {self.class_area[1]:.2f}, difference {self.difference:+.2f} points [{lo:.2f}, {hi:.2f}]")  # fmt: skip
        if self.separates_runs and math.isfinite(self.df):  # what an interval of a few runs per class rests on
            numbers += f" (t, {self.df:.1f} df)"
        if not self.separates_runs:
            return (f"{a} vs {b}: {numbers}; with one trained model in a class this compares training runs, not "
                    "architectures: it cannot separate the architecture from the run (train more seeds)")
        if lo > 0 or hi < 0:
            who = a if self.difference > 0 else b
            verdict = f"the class {who} is more robust"
        else:
            verdict = "no difference between the classes is established"
        spread = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names, self.spread, strict=True))
        tail = f"; between-run spread (sd of the area across training runs): {spread}"
        if self.spread_rivals_difference:
            tail += " — as large as the difference between the classes: training runs differ as much as the architectures"
        runs = f"{len(self.members[0])} and {len(self.members[1])} training runs"
        return f"{a} vs {b}: {verdict} ({numbers}, {runs}, n = {self.n}){tail}"


def class_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[tuple[float, float], float]:
    """Interval of the difference of two classes' mean values, and its degrees of freedom.

    ``a`` (runs × samples) and ``b`` hold per-sample values (capped distances) of each class's models on the same
    samples. The difference's variance adds two parts: the spread between training runs (the variance of the
    runs' means inside each class over its number of runs, Welch's) and the sampling of the test images (the
    variance of the per-sample class difference over the number of samples; the images are shared, so what they
    have in common cancels). The interval is Student's t with Welch–Satterthwaite degrees of freedom. A class of
    one run has no spread to estimate: the interval is then about these runs on these samples' population.

    Why not the two-level bootstrap (runs resampled within each class, then samples) this replaced: with the 2–5
    training runs a class has, resampling runs understates their spread (by (K − 1)/K) and its percentile interval
    ignores that the spread is estimated from K values. In simulation (K = 3 runs, run effects larger than the
    sampling noise) it covered the true difference 85 % of the time at 95 % (K = 2: 74 %); this interval 98 % (95 %).
    It counts the runs' within-sample noise in both parts, so it errs on the wide side.
    """
    ka, kb, n = a.shape[0], b.shape[0], a.shape[1]
    runs = [v.mean(axis=1).var(ddof=1) / v.shape[0] if v.shape[0] > 1 else 0.0 for v in (a, b)]
    samples = (a.mean(axis=0) - b.mean(axis=0)).var(ddof=1) / n if n > 1 else float("nan")
    variance = runs[0] + runs[1] + samples
    parts = [(runs[0], ka - 1), (runs[1], kb - 1), (samples, n - 1)]
    denominator = sum(v * v / f for v, f in parts if f > 0 and v > 0)
    df = variance**2 / denominator if denominator > 0 else float("inf")
    difference = float(a.mean() - b.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(variance)) if variance == variance else float("nan")
    return (difference - half, difference + half), float(df)


def compare_classes(
    a: Mapping[str, pd.Series], b: Mapping[str, pd.Series], *, names: tuple[str, str] = ("A", "B"),
    limit: float = DEFAULT_LIMIT["Linf"], confidence: float = CONFIDENCE,
) -> ClassComparison:  # fmt: skip
    """Two classes of models (``{label: distances}`` each) on their common samples: areas, their difference's interval.

    The interval spans training runs and samples (:func:`class_interval`).
    """
    models = {**a, **b}
    common = None
    for d in models.values():
        common = d.index if common is None else common.intersection(d.index)
    if common is None or len(common) == 0:
        raise ValueError("the models share no sample")
    capped = {k: np.minimum(v.loc[common].to_numpy(dtype=float), limit) for k, v in models.items()}
    ma, mb = np.stack([capped[k] for k in a]), np.stack([capped[k] for k in b])
    areas = {k: float(area(v, limit)) for k, v in capped.items()}
    class_area = (float(np.mean([areas[k] for k in a])), float(np.mean([areas[k] for k in b])))
    scale = 100.0 / limit
    ci, df = class_interval(ma * scale, mb * scale, confidence)
    spread = tuple(float(np.std([areas[k] for k in group], ddof=1)) if len(group) > 1 else float("nan") for group in (a, b))
    return ClassComparison(names, (tuple(a), tuple(b)), len(common), limit, areas, class_area,
                           class_area[0] - class_area[1], ci, spread, confidence, df)  # type: ignore[arg-type]  # fmt: skip


__all__ = [
    "DEFAULT_LIMIT",
    "ClassComparison",
    "DistanceComparison",
    "area",
    "at_eps",
    "class_interval",
    "compare_classes",
    "compare_distances",
    "envelope",
    "eps_grid",
    "hodges_lehmann",
    "median_distance",
    "minimal_distances",
    "robustness_curve",
]
