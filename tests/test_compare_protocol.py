"""The answer to "is A more robust than B": scaled steps, both adder gradients, intervals, paired tests."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustadder.attacks import make_config
from robustadder.summary import mcnemar_exact, proportion_interval

from helpers import compile_latex, make_tiny, save_tiny_world


@pytest.mark.parametrize("eps", ["1/255", "2/255", "8/255", "16/255"])
@pytest.mark.parametrize("name", ["pgd", "bim", "mim", "rfgsm"])
def test_the_default_step_is_a_quarter_of_the_budget_and_recorded(name, eps):
    cfg = make_config(name, eps=eps, params={"steps": 7})
    assert cfg.params["alpha"] == pytest.approx(cfg.eps / 4)
    assert cfg.params["step_rule"] == "eps/4" and cfg.to_json()["params"]["step_rule"] == "eps/4"
    assert not cfg.step_exceeds_eps


def test_an_explicit_step_wins_and_a_step_beyond_the_budget_is_flagged():
    cfg = make_config("pgd", eps="1/255", params={"alpha": "2/255"})
    assert cfg.params["alpha"] == pytest.approx(2 / 255) and cfg.params["step_rule"] == "given"
    assert cfg.step_exceeds_eps
    l2 = make_config("pgd", eps=0.5, norm="L2", params={"steps": 20})
    assert l2.params["alpha"] == pytest.approx(2.5 * 0.5 / 20) and l2.params["step_rule"] == "2.5*eps/steps"


def test_cells_at_different_eps_get_different_steps():
    a, b = make_config("pgd", eps="1/255"), make_config("pgd", eps="4/255")
    assert b.params["alpha"] == pytest.approx(4 * a.params["alpha"])


@pytest.mark.parametrize(
    "k, n, low, high",
    [(50, 100, 40.383, 59.617), (0, 10, 0.0, 27.753), (10, 10, 72.247, 100.0), (1, 1000, 0.01766, 0.5649)],
)
def test_wilson_intervals_match_known_binomial_cases(k, n, low, high):
    lo, hi = proportion_interval(k, n)
    assert lo == pytest.approx(low, abs=2e-3) and hi == pytest.approx(high, abs=2e-3)


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    rng = np.random.default_rng(3)
    a = rng.random(500) < 0.4
    b = np.where(rng.random(500) < 0.2, ~a, a)
    res = mcnemar_exact(a, b)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    assert (res["a_only"], res["b_only"]) == (a_only, b_only)
    assert res["p_value"] == pytest.approx(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue, rel=1e-12)
    assert res["difference"] == pytest.approx(100 * (a.mean() - b.mean()))
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_grad_both_is_the_per_sample_worst_case_of_the_two_adder_gradients(tmp_path):
    from robustadder import evaluate
    from robustadder.store import Store

    loaded, data = make_tiny("adder", n=24)
    store = tmp_path / "s.sqlite"
    runs = {}
    for grad in ("surrogate", "exact", "both"):
        runs[grad] = evaluate(loaded, ["fgsm", "pgd:steps=3"], eps="2/255", data=data, store=store, grad=grad,
                              batch_size=8, progress=False)  # fmt: skip
    both, sur, exa = (runs[g].set_index(["attack", "sample_id"]) for g in ("both", "surrogate", "exact"))
    robust = {g: f["clean_correct"] & f["adv_correct"] for g, f in (("both", both), ("surrogate", sur), ("exact", exa))}
    assert (robust["both"] == (robust["surrogate"] & robust["exact"])).all()
    assert (robust["both"] <= robust["surrogate"]).all() and (robust["both"] <= robust["exact"]).all()
    # the components are cells of their own, named in the combined cell's configuration, and were reused
    summary = {s["attack"]: s for s in runs["both"].attrs["summary"]}
    assert summary["FGSM"]["grad"] == "both" and summary["FGSM"]["reused"]
    ids = {s["attack"]: s["cell_id"] for s in runs["surrogate"].attrs["summary"]}
    assert summary["FGSM"]["components"]["surrogate"] == ids["FGSM"]
    with Store.open(store) as db:
        cells = db.cells()
    assert len(cells) == 6 and set(cells["status"]) == {"done"}
    # each sample's stored perturbation is that of a component which fooled it, within the budget
    assert (runs["both"]["linf"] <= 2 / 255 + 1e-6).all()
    assert runs["both"].attrs["summary"][0]["robust_accuracy_ci"][0] <= runs["both"].attrs["summary"][0]["robust_accuracy"]


def test_a_cnn_has_one_gradient(tmp_path):
    from robustadder import evaluate

    loaded, data = make_tiny("conv", n=8)
    df = evaluate(loaded, ["fgsm"], eps="2/255", data=data, store=tmp_path / "s.sqlite", progress=False)
    assert df.attrs["summary"][0]["grad"] == "none" and df.attrs["summary"][0]["components"] == {}


def _two_models(tmp_path):
    models, data = save_tiny_world(tmp_path, n=16, ann=("adder", 0), cnn=("conv", 1))
    return models["ann"], models["cnn"], data


def test_compare_api_end_to_end(tmp_path):
    from robustadder.comparison import compare, render

    ann, cnn, data = _two_models(tmp_path)
    table = compare([ann, cnn], labels=["ANN", "CNN"], eps=["8/255", "2/255"], attacks=["fgsm", "pgd:steps=2"], data=data, n=16,
                    store=tmp_path / "s.sqlite", batch_size=8, progress=False)  # fmt: skip
    assert list(table["model"]) == ["ANN", "ANN", "CNN", "CNN"] and list(table["eps_label"]) == ["2/255", "8/255"] * 2
    assert (table["robust_ci_low"] <= table["robust_accuracy"]).all() and (
        table["robust_accuracy"] <= table["robust_ci_high"]
    ).all()
    pairs = table.attrs["pairs"]
    assert len(pairs) == 2 and set(pairs["a"]) == {"ANN"}
    assert (pairs["p_holm"] >= pairs["p_value"]).all() and (pairs["p_value"] <= 1).all()
    assert len(table.attrs["verdicts"]) == 1 and table.attrs["verdicts"][0].startswith("ANN vs CNN")
    for fmt in ("text", "md", "latex", "csv", "html", "json"):
        assert render(table, fmt)
    # a page leads with the answer: the verdict before the tables it rests on
    assert render(table, "md").startswith("- ANN vs CNN")
    html = render(table, "html")
    assert html.index("<li>ANN vs CNN") < html.index("<table")
    # the LaTeX compiles and fits a NeurIPS column (booktabs tables, boxed and scaled only when wider)
    log = compile_latex(tmp_path, render(table, "latex"), "compare")
    assert "Overfull \\hbox" not in log
    # a rerun reuses every cell: same numbers, nothing recomputed
    again = compare([ann, cnn], labels=["ANN", "CNN"], eps=["2/255", "8/255"], attacks=["fgsm", "pgd:steps=2"], data=data, n=16,
                    store=tmp_path / "s.sqlite", batch_size=8, progress=False)  # fmt: skip
    assert again["robust_accuracy"].tolist() == table["robust_accuracy"].tolist()
    # every format lists the models in the order given (the CSV's outer merge sorted them by label)
    flipped = compare([cnn, ann], labels=["CNN", "ANN"], eps=["2/255", "8/255"], attacks=["fgsm", "pgd:steps=2"], data=data,
                      n=16, store=tmp_path / "s.sqlite", batch_size=8, progress=False)  # fmt: skip
    assert pd.read_csv(io.StringIO(render(flipped, "csv")))["model"].tolist() == ["CNN", "CNN", "ANN", "ANN"]


def test_compare_says_its_plan_and_each_model_and_eps_on_stderr(tmp_path, capsys):
    """A comparison runs for hours, often in the background with stderr in a log (no terminal, so no bars): it
    says what it will run and what the store already holds, then one line per model and eps as each ends."""
    from robustadder.comparison import compare

    ann, cnn, data = _two_models(tmp_path)
    kw = dict(labels=["ANN", "CNN"], eps=["8/255", "2/255"], attacks=["fgsm"], data=data, n=16, store=tmp_path / "s.sqlite",
              batch_size=8)  # fmt: skip
    table = compare([ann, cnn], **kw)
    err = capsys.readouterr().err
    # per model one clean cell (the same for every eps) and one FGSM cell per eps
    plan = "compare: 2 models x 2 eps x 1 attack(s) + clean on 16 images: 6 cells, 0 already in the store, 6 to run, ~"
    assert plan in err
    lines = [line for line in err.splitlines() if line.startswith("compare [")]
    assert [line.split(":")[0] for line in lines] == [
        "compare [1/4] ANN eps 2/255", "compare [2/4] ANN eps 8/255", "compare [3/4] CNN eps 2/255", "compare [4/4] CNN eps 8/255"
    ]  # fmt: skip
    for line, row in zip(lines, table.itertuples(), strict=True):  # the lines carry the table's numbers
        assert f"clean {row.clean_accuracy:.1f} % [{row.clean_ci_low:.1f}, {row.clean_ci_high:.1f}]" in line
        assert f"robust {row.robust_accuracy:.1f} % [{row.robust_ci_low:.1f}, {row.robust_ci_high:.1f}]" in line
        assert "reused" not in line
    assert "\r" not in err  # no progress bar redrawn into a log
    compare([ann, cnn], **kw)
    err = capsys.readouterr().err
    assert "6 cells, 6 already in the store" in err and "to run" not in err
    assert err.count("(every cell reused from the store)") == 4
    compare([ann, cnn], **kw, progress=False)
    assert capsys.readouterr().err == ""


def test_the_cost_of_an_adaptive_attack_is_a_range_not_one_precise_number(tmp_path):
    """AutoAttack's least work (its first stage fools every sample) and its most (none) are 30x apart: an
    estimate gives both; a fixed-step attack's is one number, and a done cell costs nothing."""
    import torch

    from robustadder.api import evaluate, format_cost, pending_cost
    from robustadder.attacks import make_config
    from robustadder.engine import Settings, prepare
    from robustadder.models import as_loaded, evaluation_images
    from robustadder.store import Store

    ann, _, data = _two_models(tmp_path)
    loaded = as_loaded(ann)
    images = evaluation_images([loaded], None, data, 8)
    settings = Settings(batch_size=8, grad="exact")
    model = prepare(loaded, settings)
    with Store.open(tmp_path / "s.sqlite") as db:
        aa, fgsm = make_config("autoattack", eps=2 / 255), make_config("fgsm", eps=2 / 255)
        state = torch.get_rng_state()
        todo, low, high = pending_cost(db, loaded, model, [aa], settings, images)
        assert torch.equal(torch.get_rng_state(), state)  # an estimate leaves the caller's random state alone
        assert todo == [aa] and 0 < 10 * low < high  # standard: 100 gradient steps at least, 2,800 + 5,000 queries at most
        todo, low, high = pending_cost(db, loaded, model, [fgsm], settings, images)
        assert todo == [fgsm] and 0 < low == high and " to " not in format_cost(low, high)
        evaluate(loaded, [fgsm], data=images, store=db, batch_size=8, grad="exact", progress=False)
        assert pending_cost(db, loaded, model, [fgsm, aa], settings, images)[0] == [aa]
    assert format_cost(60, 3 * 3600) == "~60 s to 3.0 h"


def test_a_resumed_cell_costs_what_is_left_at_the_rate_its_own_batches_ran(tmp_path):
    """An interrupted AutoAttack cell with a third of its images left used to be estimated as a fresh cell
    over all of them (minutes to hours). A cell interrupted part way counts only its missing images, at
    the least and most seconds per image its stored batches took; with ``both`` each adder gradient's
    cell resumes on its own, and a finished component costs nothing."""
    from robustadder.api import evaluate, pending_cost
    from robustadder.attacks import make_config
    from robustadder.engine import Settings, cell_config, cell_hash, prepare
    from robustadder.models import as_loaded, evaluation_images
    from robustadder.store import Store
    from robustadder.sweep import cell_cost

    ann, _, data = _two_models(tmp_path)
    loaded = as_loaded(ann)
    images = evaluation_images([loaded], None, data, 16)
    settings = Settings(batch_size=4)  # grad both: two component cells of four batches each
    model = prepare(loaded, settings)
    pgd = make_config("pgd", eps=2 / 255, params={"steps": 3})
    with Store.open(tmp_path / "s.sqlite") as db:
        evaluate(loaded, [pgd], data=images, store=db, batch_size=4, progress=False)
        assert pending_cost(db, loaded, model, [pgd], settings, images) == ([], 0.0, 0.0)
        exact = cell_hash(cell_config(loaded, pgd, Settings(batch_size=4, grad="exact"), images))
        both = cell_hash(cell_config(loaded, pgd, settings, images))
        # interrupted after its first batch, with its batches' times set to known values: 2 s and 6 s per image
        # (a store as an interruption leaves it: the exact cell and the worst-case cell not done)
        db.conn.execute("DELETE FROM samples WHERE cell_id = ? AND batch >= 2", (exact,))
        db.conn.execute("UPDATE samples SET batch_seconds = 4 * (1 + 2 * batch) WHERE cell_id = ?", (exact,))
        db.conn.execute("UPDATE cells SET status = 'running' WHERE cell_id IN (?, ?)", (exact, both))
        assert db.batch_times(exact) == [(4, 4.0), (4, 12.0)]
        todo, low, high = pending_cost(db, loaded, model, [pgd], settings, images)
        assert todo == [pgd] and (low, high) == (8 * 1.0, 8 * 3.0)  # 8 images left, 1 to 3 s each
        fresh = cell_cost(None, loaded, pgd, Settings(batch_size=4, grad="exact"), images, (1.0, 1.0))
        assert fresh.least_s == fresh.most_s == 16 * 2 + 16 * 3  # nothing stored: 2 clean forwards + 3 steps, all 16
        assert cell_cost(None, loaded, pgd, settings, images, (1.0, 1.0)).most_s == 2 * fresh.most_s  # both: two cells
        part = cell_cost(db, loaded, pgd, settings, images, (1.0, 1.0))
        assert (part.forward, part.forward_backward) == (8 * 2, 8 * 3)  # only the missing images' passes
    evaluate(loaded, [pgd], data=images, store=tmp_path / "s.sqlite", batch_size=4, progress=False)
    with Store.open(tmp_path / "s.sqlite") as db:
        assert pending_cost(db, loaded, model, [pgd], settings, images) == ([], 0.0, 0.0)


def test_compare_cli_json_and_plot(tmp_path):
    import json
    import subprocess
    import sys

    _two_models(tmp_path)
    cmd = [sys.executable, "-m", "robustadder", "compare", str(tmp_path / "ann.pt"), str(tmp_path / "cnn.pt"), "--n", "16",
           "--eps", "2/255,8/255", "--attack", "fgsm", "--attack", "pgd:steps=2", "--data", str(tmp_path), "--store",
           str(tmp_path / "s.sqlite"), "--batch-size", "8", "--json", "--plot", str(tmp_path / "p.png")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-800:]
    result = json.loads(out.stdout)
    assert len(result["models"]) == 4 and len(result["pairs"]) == 2 and len(result["verdicts"]) == 1
    assert result["settings"]["grad"] == "both" and result["settings"]["dtype"] == "float32"
    # shareable: the data named by file and content hash, never by this machine's path
    assert str(tmp_path) not in out.stdout and len(result["settings"]["data_fingerprint"]) == 16
    assert result["settings"]["data"] == "cifar10_test.npz", result["settings"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["ann.pt"], "at least two models"),
        (["ann.pt", "nosuchmodel"], "unknown model"),
        (["ann.pt", "cnn.pt", "--eps", "2/255,abc"], "eps must be a number"),
        (["ann.pt", "cnn.pt", "--eps", ""], "at least one eps"),
        (["ann.pt", "cnn.pt", "--attack", "nosuch"], "unknown attack"),
    ],
)
def test_compare_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    import subprocess
    import sys

    from helpers import tree

    _two_models(tmp_path)
    before = tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "robustadder", "compare", *args, "--data", str(tmp_path), "--store",
                          str(tmp_path / "s.sqlite"), "-o", str(tmp_path / "out.md")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert tree(tmp_path) == before


def test_no_command_writes_over_a_store(tmp_path):
    import subprocess
    import sys

    _two_models(tmp_path)
    store = tmp_path / "s.sqlite"
    import sqlite3

    sqlite3.connect(store).execute("CREATE TABLE t (x)").connection.commit()
    before = store.read_bytes()
    out = subprocess.run([sys.executable, "-m", "robustadder", "compare", "ann.pt", "cnn.pt", "--data", str(tmp_path),
                          "--store", str(store), "-o", str(store)], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and "results store" in out.stderr or "input" in out.stderr
    assert store.read_bytes() == before


def test_report_refuses_to_write_over_the_store_it_reads(tmp_path):
    """`report --store s.sqlite -o s.sqlite` once replaced every result with Markdown."""
    import subprocess
    import sys

    from robustadder.store import Store

    store = tmp_path / "s.sqlite"
    Store.open(store).close()
    before = store.read_bytes()
    for output in (store, tmp_path / "other.sqlite"):
        if output != store:
            output.write_bytes(before)  # any results store, not only the one read
        out = subprocess.run([sys.executable, "-m", "robustadder", "report", "--store", str(store), "-o", str(output)],
                             capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert output.read_bytes() == before


def test_a_pair_without_a_sample_both_classify_correctly_says_so_instead_of_nan(tmp_path):
    """With no sample that both models classify correctly, the common-sample difference is not a number to show
    ('+nan') and 'no significant difference' among those samples would claim a test that was never run."""
    from robustadder.comparison import compare, render

    models, data = save_tiny_world(tmp_path, n=12, ann=("adder", 0), cnn=("conv", 0))
    table = compare([models["ann"], models["cnn"]], labels=["ANN", "CNN"], eps=["1/255"], attacks=["fgsm"], data=data,
                    n=12, store=tmp_path / "s.sqlite", progress=False)  # fmt: skip
    assert (table.attrs["pairs"]["n_common_clean"] == 0).all()  # the case under test: the CNN gets none right
    text = render(table, "text")
    assert "nan" not in text and "– (n=0)" in text
    assert "no sample is classified correctly by every model" in table.attrs["verdicts"][0]
    assert "among the samples every model classifies correctly" not in table.attrs["verdicts"][0]
