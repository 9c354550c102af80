"""Minimal distances (FMN cells), robustness curves, paired tests on distances and class-level answers (issue 36)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustadder import distances as dist
from robustadder.attacks import MAX_EPS, make_config
from robustadder.engine import worst_case_rows

from helpers import make_tiny


def _frame(ids, clean, adv, linf, batch=0):
    n = len(ids)
    return pd.DataFrame({"sample_id": ids, "label": np.zeros(n, int), "clean_pred": np.zeros(n, int),
                         "adv_pred": np.zeros(n, int), "clean_correct": clean, "adv_correct": adv,
                         "linf": linf, "l2": np.asarray(linf) * 10, "batch": batch, "batch_seconds": 1.0})  # fmt: skip


def test_a_distance_is_zero_when_misclassified_the_norm_when_fooled_and_inf_when_never():
    frame = _frame([5, 6, 7], [False, True, True], [False, False, True], [0.0, 0.02, 0.0])
    d = dist.minimal_distances(frame)
    assert d.loc[5] == 0 and d.loc[6] == pytest.approx(0.02) and np.isinf(d.loc[7])
    assert dist.minimal_distances(frame, "L2").loc[6] == pytest.approx(0.2)


def test_fmn_is_a_minimal_attack_recorded_at_the_whole_box():
    cfg = make_config("fmn", eps="8/255")
    assert cfg.definition.minimal and cfg.eps == MAX_EPS["Linf"] and cfg.label == "FMN-200"
    assert make_config("fmn", norm="L2").eps == MAX_EPS["L2"]


def test_the_envelope_is_never_above_a_fixed_eps_attack_that_fooled_the_sample():
    rng = np.random.default_rng(0)
    ids = np.arange(200)
    fmn = pd.Series(np.where(rng.random(200) < 0.1, np.inf, rng.uniform(0, 10 / 255, 200)), index=ids)
    fmn[:10] = 0.0  # misclassified clean
    fixed = []
    for k in (1, 2, 4, 8):
        eps = k / 255
        fooled = (fmn.to_numpy() <= eps * 1.3) & (fmn.to_numpy() > 0)  # a fixed-eps attack that is sometimes stronger
        fixed.append((eps, _frame(ids, (fmn > 0).to_numpy(), ~fooled, np.where(fooled, eps, 0.0))))
    env, below = dist.envelope(fmn, fixed)
    assert (env <= fmn).all()
    for eps, frame in fixed:
        fooled = (frame["clean_correct"] & ~frame["adv_correct"]).to_numpy()
        assert (env.to_numpy()[fooled] <= eps).all()
        curve = dist.robustness_curve(env, [eps])
        cell_robust = 100.0 * (frame["clean_correct"] & frame["adv_correct"]).mean()
        assert curve["robust_accuracy"].iloc[0] <= cell_robust + 1e-9  # the envelope's curve is never above the cell
    assert below.notna().sum() == ((env < fmn).sum())  # every sample a fixed attack broke below FMN is counted


def test_the_curve_counts_distances_strictly_above_eps_with_wilson_bands():
    d = pd.Series([0.0, 1 / 255, 2 / 255, np.inf])
    curve = dist.robustness_curve(d, [0.0, 1 / 255, 2 / 255])
    assert curve["robust"].tolist() == [3, 2, 1]
    assert (curve["ci_low"] <= curve["robust_accuracy"]).all() and (curve["robust_accuracy"] <= curve["ci_high"]).all()
    med = dist.median_distance(pd.Series([1.0, 2.0, 3.0, np.inf, np.inf]))
    assert med["median"] == 3.0


def test_the_wilcoxon_p_value_is_scipys_on_a_hand_case():
    a = pd.Series([0.010, 0.020, 0.030, 0.005, np.inf, 0.0, 0.012])
    b = pd.Series([0.012, 0.018, 0.010, 0.006, 0.040, 0.0, 0.012])
    got = dist.compare_distances(a, b)
    capped_a = np.array([0.010, 0.020, 0.030, 0.005, 1e9, 0.0, 0.012])  # inf ranks above every finite distance
    want = stats.wilcoxon(capped_a, b.to_numpy(), zero_method="wilcox")
    assert got.p_value == pytest.approx(want.pvalue) and got.wilcoxon_statistic == pytest.approx(want.statistic)
    assert got.n_untied == 5  # both 0 (misclassified by both) and equal distances carry no information


def test_hodges_lehmann_is_the_median_of_walsh_averages():
    shift, (low, high) = dist.hodges_lehmann(np.array([1.0, 2.0, 3.0]))
    assert shift == 2.0 and low <= shift <= high
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 1.0, 400)
    shift, (low, high) = dist.hodges_lehmann(d)
    assert low < 0.5 < high and abs(shift - 0.5) < 0.2


def test_a_paired_comparison_sees_a_shift_that_is_there():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5 / 255, 6 / 255, 300)
    a = pd.Series(base + 0.5 / 255)
    b = pd.Series(base * rng.uniform(0.9, 1.1, 300))
    got = dist.compare_distances(a, b, names=("ANN", "CNN"))
    assert got.p_value < 1e-6 and got.shift > 0 and got.area_ci[0] > 0
    assert got.sentence().startswith("ANN vs CNN: ANN needs larger perturbations")


def _simulate(rng, runs: int, n: int, difference: float, run_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample values of two classes: a shared sample difficulty, a random effect per training run, noise."""
    difficulty = rng.normal(50, 15, n)
    a = difficulty + difference + rng.normal(0, run_sd, (runs, 1)) + rng.normal(0, 5, (runs, n))
    b = difficulty + rng.normal(0, run_sd, (runs, 1)) + rng.normal(0, 5, (runs, n))
    return a, b


def test_the_class_interval_covers_the_true_difference_with_the_few_training_runs_a_class_has():
    """With 2-3 runs per class and run effects larger than the sampling noise, the 95 % interval covers the true
    difference at least 92 % of the time (the two-level percentile bootstrap it replaced: 85 % with 3 runs, 74 %
    with 2: it resampled the few runs as if they were many)."""
    rng = np.random.default_rng(3)
    truth, sims = 2.0, 300
    for runs in (2, 3):
        covered = naive_covered = 0
        for _ in range(sims):
            a, b = _simulate(rng, runs=runs, n=150, difference=truth, run_sd=3.0)
            (low, high), df = dist.class_interval(a, b)
            covered += low <= truth <= high
            assert runs - 1 <= df <= 2 * (runs - 1) + 150  # Welch-Satterthwaite: between the runs' and every part's
            # the same interval from the samples alone (runs fixed) ignores the spread between training runs
            d = a.mean(0) - b.mean(0)
            half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
            naive_covered += d.mean() - half <= truth <= d.mean() + half
        assert covered / sims >= 0.92, (runs, covered / sims)
        assert naive_covered / sims < 0.6  # which is why the run level is there


def test_the_class_interval_is_students_t_over_runs_and_samples():
    """By hand: the variance adds the runs' means' variance per class and the per-sample difference's variance."""
    from scipy import stats

    a = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 4.0], [0.0, 3.0, 3.0, 5.0]])
    b = np.array([[1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 2.0]])
    va, vb = np.var(a.mean(1), ddof=1) / 3, np.var(b.mean(1), ddof=1) / 2
    vs = np.var(a.mean(0) - b.mean(0), ddof=1) / 4
    df = (va + vb + vs) ** 2 / (va**2 / 2 + vb**2 / 1 + vs**2 / 3)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb + vs)
    (low, high), got_df = dist.class_interval(a, b)
    assert got_df == pytest.approx(df) and (low, high) == pytest.approx((a.mean() - b.mean() - half, a.mean() - b.mean() + half))
    # one run per class: nothing to estimate between runs, the samples alone
    (low1, high1), df1 = dist.class_interval(a[:1], b[:1])
    d = a[0] - b[0]
    assert df1 == pytest.approx(3) and high1 - low1 == pytest.approx(2 * stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2)


def test_a_class_of_one_model_says_it_cannot_separate_architecture_from_run():
    rng = np.random.default_rng(4)
    ids = np.arange(100)
    a = {"ann20": pd.Series(rng.uniform(0, 4 / 255, 100), index=ids)}
    b = {"cnn20": pd.Series(rng.uniform(0, 4 / 255, 100), index=ids)}
    one = dist.compare_classes(a, b, names=("ANN-20", "CNN-20"))
    assert not one.separates_runs and "cannot separate the architecture from the run" in one.sentence()
    a3 = {f"ann20-seed{k}": pd.Series(rng.uniform(0, 4 / 255, 100), index=ids) for k in range(3)}
    b3 = {f"cnn20-seed{k}": pd.Series(rng.uniform(0, 4 / 255, 100) + k / 255, index=ids) for k in range(3)}
    three = dist.compare_classes(a3, b3, names=("ANN-20", "CNN-20"))
    assert three.separates_runs and "training runs" in three.sentence()
    # the interval says what it rests on where runs are few: its t's degrees of freedom (a class of one: the samples)
    assert f"(t, {three.df:.1f} df)" in three.sentence() and " df)" not in one.sentence()
    assert three.spread[1] > three.spread[0]
    if three.spread_rivals_difference:
        assert "as large as the difference between the classes" in three.sentence()


def test_both_gradients_keep_the_closer_adversarial_of_a_minimal_attack():
    first = _frame([1, 2, 3], [True, True, True], [False, False, True], [0.03, 0.01, 0.0])
    second = _frame([1, 2, 3], [True, True, True], [False, False, False], [0.02, 0.05, 0.04])
    rows = [r for batch, _ in worst_case_rows(first, second, minimal="Linf") for r in batch]
    assert [r[6] for r in rows] == [0.02, 0.01, 0.04]  # per sample the smaller distance; 3: only the second fooled
    fixed = [r for batch, _ in worst_case_rows(first, second) for r in batch]
    assert [r[6] for r in fixed] == [0.03, 0.01, 0.04]  # a fixed-eps attack keeps the first that fooled


@pytest.mark.slow
def test_an_fmn_cell_stores_verified_deterministic_distances(tmp_path):
    from robustadder import evaluate

    loaded, data = make_tiny("adder", n=12)
    frames = [evaluate(loaded, ["fmn:steps=20"], data=data, store=tmp_path / f"s{k}.sqlite", batch_size=6, grad="both",
                       progress=False) for k in range(2)]  # fmt: skip
    d0, d1 = (dist.minimal_distances(f[f["attack_name"] == "fmn"]) for f in frames)
    assert d0.equals(d1)
    assert (d0 > 0).all()  # every sample is classified correctly clean (make_tiny's labels)
    assert np.isfinite(d0).any()


@pytest.mark.slow
def test_a_minimal_attack_whose_point_is_not_adversarial_fails_its_cell(tmp_path, monkeypatch):
    import sqlite3

    from robustadder import evaluate
    from robustadder.attacks import gradient
    from robustadder.errors import UserError

    def lying(model, x, y, **kwargs):
        return (x + 1e-4).clamp(0, 1)  # "found" a tiny perturbation that fools nothing

    monkeypatch.setattr(gradient, "fmn", lying)
    loaded, data = make_tiny("conv", n=6)
    with pytest.raises((UserError, Exception), match="cannot be verified"):
        evaluate(loaded, ["fmn"], data=data, store=tmp_path / "s.sqlite", batch_size=6, progress=False)
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        status = dict(conn.execute("SELECT attack, status FROM cells").fetchall())
    assert status["fmn"] == "failed"


def test_eval_reads_a_minimal_attack_at_the_requested_eps_and_reports_its_distances(tmp_path):
    from robustadder import evaluate

    loaded, data = make_tiny("conv", n=12)
    frame = evaluate(loaded, ["fmn:steps=20", "fgsm"], eps="1/255", data=data, store=tmp_path / "s.sqlite",
                     batch_size=6, progress=False)  # fmt: skip
    fmn, fgsm = frame.attrs["summary"]
    rows = frame[frame["attack_name"] == "fmn"]
    d = dist.minimal_distances(rows)
    assert fmn["eps"] == pytest.approx(1 / 255) and fmn["minimal_distance"]["median"] == pytest.approx(float(d.median()))
    assert fmn["robust_accuracy"] == pytest.approx(100.0 * (d > 1 / 255).mean())  # fooled within 1/255 only
    reported = json.loads(frame.render("json"))["attacks"][0]["minimal_distance"]
    assert reported["n"] == 12 and isinstance(reported["n"], int)  # a count, not 12.0
    worst = frame.attrs["worst_case_robust_accuracy"]
    fgsm_robust = frame[frame["attack_name"] == "fgsm"].set_index("sample_id")
    robust = (d > 1 / 255) & (fgsm_robust["clean_correct"] & fgsm_robust["adv_correct"]).reindex(d.index)
    assert worst == pytest.approx(100.0 * robust.mean())  # not 0: FMN's unbounded cell is read at 1/255


def test_bench_minimal_measures_the_minimal_attack_against_the_cell_it_replaces_in_one_run(tmp_path, monkeypatch):
    """`bench minimal`: both attacks through both adder gradients on the same images, into a store of its own."""
    import json

    from click.testing import CliRunner

    from robustadder.cli import main

    from helpers import save_tiny_world

    save_tiny_world(tmp_path, n=8, a0=("adder", 0))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["--n", "8", "--data", str(tmp_path), "--minimal", "fmn:steps=5", "--reference", "pgd:steps=3", "--json"]
    out = CliRunner().invoke(main, ["bench", "minimal", "--model", str(tmp_path / "a0.pt"), *args])
    assert out.exit_code == 0, out.output
    fmn, pgd, ratio = json.loads(out.output)["rows"]
    assert (fmn["attack"], pgd["attack"]) == ("FMN-5", "PGD-3") and fmn["n"] == pgd["n"] == 8
    assert fmn["grad"] == pgd["grad"] == "both" and fmn["seconds"] > 0 and pgd["seconds"] > 0
    assert ratio["ratio"] == pytest.approx(fmn["seconds"] / pgd["seconds"], rel=0.02)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the measurement's store is its own, and gone
    for bad, message in ((["--minimal", "pgd"], "not a minimal-perturbation attack"),
                         (["--reference", "none"], "must be a fixed-eps attack"),
                         (["--reference", "fmn"], "must be a fixed-eps attack")):  # fmt: skip
        out = CliRunner().invoke(main, ["bench", "minimal", "--model", str(tmp_path / "a0.pt"), "--data", str(tmp_path), *bad])
        assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output, out.output
        assert sorted(p.name for p in tmp_path.iterdir()) == before
