"""Sweeps and reports: grid expansion, stable cell ids, resume after kill -9, LaTeX / CSV / HTML outputs."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from robustadder import report as rep
from robustadder.api import format_duration
from robustadder.cli import main
from robustadder.engine import cell_hash
from robustadder.errors import UserError
from robustadder.models import save_checkpoint
from robustadder.store import Store
from robustadder.summary import proportion_interval
from robustadder.sweep import load_sweep, plan_sweep, run_sweep

from helpers import CHROMIUM_FLAGS, REPO, compile_latex, make_tiny, need, wait_for_rows


@pytest.fixture
def world(tmp_path):
    """Two tiny checkpoints (ANN and its CNN counterpart), a tiny test set, and a sweep file over them."""
    ann, data = make_tiny("adder", n=12)
    cnn, _ = make_tiny("conv", n=12)
    save_checkpoint(tmp_path / "ann.pt", ann.model)
    save_checkpoint(tmp_path / "cnn.pt", cnn.model)
    np.savez(tmp_path / "cifar10_test.npz", x=data.x, y=data.y.astype(np.uint8))
    sweep = tmp_path / "mini.toml"
    sweep.write_text(textwrap.dedent(
        """
        name = "mini"
        description = "test sweep"
        n = 12
        models = [{ref = "ann.pt", label = "ANN"}, {ref = "cnn.pt", label = "CNN"}, {ref = "gone.pt", label = "gone"}]
        eps = ["4/255", "8/255"]
        [settings]
        bn = ["eval", "train"]
        batch_size = 6
        seed = [0, 1]
        [[attacks]]
        name = "none"
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 2
        [report]
        rows = ["model", "bn"]
        columns = ["attack", "eps_label"]
        """
    ))  # fmt: skip
    return tmp_path, sweep


def test_grid_expansion_and_skipped_models(world):
    tmp, sweep = world
    cfg = load_sweep(sweep)
    assert [a.label for a in cfg.attacks] == ["Clean", "FGSM", "FGSM", "PGD-2", "PGD-2"]  # none: one eps
    assert len(cfg.settings) == 4 and cfg.seeds == [0, 1]
    plan = plan_sweep(cfg, data=tmp)
    assert len(plan.cells) == 3 * 4 * 5
    assert set(plan.skipped) == {"gone"} and "checkpoint not found" in plan.skipped["gone"]
    assert sum(c.status == "skipped" for c in plan.cells) == 20
    ids = [c.cell_id for c in plan.cells if c.cell_id]
    # per model and BN mode: Clean and FGSM at two eps do not depend on the seed (one cell for both
    # seeds), PGD with its random start does (one cell per seed and eps): 2 x 2 x (3 + 2 x 2) = 28
    assert len(ids) == 40 and len(set(ids)) == 28
    again = plan_sweep(load_sweep(sweep), data=tmp)
    assert [c.cell_id for c in again.cells] == [c.cell_id for c in plan.cells]  # stable


def test_cell_hash_is_stable_across_versions_of_the_code():
    """A literal configuration hashes to a literal id: changing the hashing silently orphans stores."""
    config = {
        "engine": 1,
        "model": {"name": "x", "arch": "resnet20_adder", "weights_sha256": "ab" * 32},
        "attack": {"name": "pgd", "label": "PGD-7", "norm": "Linf", "eps": 8 / 255,
                   "params": {"alpha": 2 / 255, "random_start": True, "restarts": 1, "steps": 7}},
        "settings": {"batch_size": 128, "backend": "cpu", "device": "cpu", "dtype": "float32", "bn": "eval",
                     "shuffle": False, "seed": 0, "grad": "surrogate"},
        "data": {"source": "/somewhere", "fingerprint": "0123456789abcdef", "n": 1000, "first_id": 0, "last_id": 999},
    }  # fmt: skip
    assert cell_hash(config) == "4d9b1246d752b8a59d91"  # recorded when the scheme was fixed
    renamed = {**config, "model": {**config["model"], "name": "other name"}, "data": {**config["data"], "source": "/else"}}
    assert cell_hash(renamed) == cell_hash(config)  # names and paths are not identity
    fgsm = {**config, "attack": {"name": "fgsm", "label": "FGSM", "norm": "Linf", "eps": 8 / 255, "params": {}}}
    assert cell_hash(fgsm) == "7a227b1a268097e822cf"  # seed 0: the id it had before seeds were normalized


def _with(config: dict, attack: dict | None = None, **settings) -> dict:
    return {**config, "attack": {**config["attack"], **(attack or {})}, "settings": {**config["settings"], **settings}}


def test_the_seed_is_part_of_a_cells_identity_only_where_it_can_change_the_result():
    config = {
        "engine": 1,
        "model": {"name": "x", "arch": "resnet20_adder", "weights_sha256": "ab" * 32},
        "attack": {"name": "bim", "label": "BIM-7", "norm": "Linf", "eps": 8 / 255, "params": {"alpha": 2 / 255, "steps": 7}},
        "settings": {"batch_size": 128, "backend": "cpu", "device": "cpu", "dtype": "float32", "bn": "train",
                     "shuffle": False, "seed": 0, "grad": "surrogate"},
        "data": {"source": "/somewhere", "fingerprint": "0123456789abcdef", "n": 1000, "first_id": 0, "last_id": 999},
    }  # fmt: skip
    h = cell_hash
    # deterministic attack, fixed order: the seed is never used
    assert h(_with(config, seed=1)) == h(_with(config, seed=7)) == h(config)
    assert h(_with(config, {"name": "none", "params": {}}, seed=3)) == h(_with(config, {"name": "none", "params": {}}))
    # shuffle: the seed orders the samples, hence the batches (and BN-train statistics)
    assert h(_with(config, shuffle=True, seed=1)) != h(_with(config, shuffle=True, seed=0))
    # randomized attacks: the seed draws their noise
    pgd = {"name": "pgd", "params": {"alpha": 2 / 255, "random_start": True, "restarts": 1, "steps": 7}}
    assert h(_with(config, pgd, seed=1)) != h(_with(config, pgd, seed=0))
    rfgsm = {"name": "rfgsm", "params": {"alpha": 2 / 255, "steps": 5}}
    assert h(_with(config, rfgsm, seed=1)) != h(_with(config, rfgsm, seed=0))
    # PGD without random start draws nothing
    pgd0 = {"name": "pgd", "params": {**pgd["params"], "random_start": False}}
    assert h(_with(config, pgd0, seed=1)) == h(_with(config, pgd0, seed=0))


def test_seeds_of_a_deterministic_attack_share_one_computation(world):
    """Computed once, reported for every seed: identical rows, so mean ± std over seeds is that value ± 0."""
    tmp, sweep = world
    with Store.open(tmp / "s.sqlite") as db:
        plan = plan_sweep(load_sweep(sweep), data=tmp, store=db)
        run_sweep(plan, db, progress=False)
        assert all(c.status in ("done", "skipped") for c in plan.cells)
        # 28 distinct grid cells; the ANN's 12 gradient-attack cells (grad both, the default) each add a
        # surrogate and an exact component cell
        assert len(db.cells()) == 28 + 2 * 12
        report = rep.build(db, load_sweep(sweep))
    long = report.long[(report.long["status"] == "done") & (report.long["attack"] == "FGSM")]
    by_seed = long.pivot_table(index=["model", "bn", "eps_label"], columns="seed", values="robust_accuracy")
    assert len(by_seed) == 2 * 2 * 2 and (by_seed[0] == by_seed[1]).all()
    pgd = report.long[(report.long["status"] == "done") & (report.long["attack"] == "PGD-2")]
    assert pgd["cell_id"].nunique() == len(pgd) == 2 * 2 * 2 * 2  # model x bn x eps x seed
    # the table shows a spread over seeds only where seeds gave different cells (PGD), never "± 0.00" for FGSM
    wide = report.wide
    assert wide.xs(("FGSM", "4/255", "std"), axis=1).dropna().empty
    assert wide.xs(("PGD-2", "4/255", "std"), axis=1).notna().any()
    text, _ = rep._display(report, "md")
    fgsm = [c for c in text.columns if c[0] == "FGSM"]
    pgd2 = [c for c in text.columns if c[0] == "PGD-2"]
    model_rows = [not str(k[0]).startswith("Δ") for k in text.index]
    assert fgsm and all("±" not in v for c in fgsm for v in text[c][model_rows])
    assert all("±" in v for c in pgd2 for v in text[c][model_rows] if v != "–")
    # the Δ rows say that they compare models of different clean accuracy
    assert "Δ rows:" in rep.to_markdown(report) and "different clean accuracy" in rep.to_latex(report)


def test_bad_sweep_files(tmp_path):
    cases = {
        "nomodel.toml": ("models = []\n[[attacks]]\nname = 'fgsm'\n", "lists no model"),
        "badattack.toml": ("models = ['x']\n[[attacks]]\nname = 'magic'\n", "unknown attack 'magic'"),
        "badopt.toml": ("models = ['x']\n[[attacks]]\nname = 'pgd'\nsteps = 0\n", "steps must be >= 1"),
        "badkey.toml": ("modles = ['x']\n", "unknown key 'modles'"),
        "badset.toml": ("models = ['x']\n[settings]\nbatchsize = 3\n[[attacks]]\nname = 'fgsm'\n", "unknown setting"),
        "badeps.toml": ("models = ['x']\neps = ['-1/255']\n[[attacks]]\nname = 'fgsm'\n", "negative"),
        "notoml.toml": ("models = [\n", "not valid TOML"),
    }
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=match):
            load_sweep(tmp_path / name)


def test_dry_run_prints_plan_and_estimate(world):
    tmp, sweep = world
    result = CliRunner().invoke(main, ["sweep", str(sweep), "--dry-run", "--store", str(tmp / "d.sqlite"), "--data", str(tmp)])
    assert result.exit_code == 0, result.output
    assert "60 cells" in result.output and "done 0, to run 28, skipped 20" in result.output
    assert "12 more grid points reuse one of these cells" in result.output  # 28 + 20 + 12 = 60
    assert "skipped model gone" in result.output and "estimated cost" in result.output
    assert "G adder ops" in result.output
    cells = [line for line in result.output.splitlines() if line.startswith("    ") and "bs=" in line]
    assert len(cells) == 28 and all(any(f" {e} " in line for e in ("–", "4/255", "8/255")) for line in cells)  # the eps of each


SWEEP_SCRIPT = textwrap.dedent(
    """
    import time, sys
    import robustadder.engine as engine
    real = engine.verify_batch
    def slow(*a, **k):
        time.sleep(0.3)
        return real(*a, **k)
    engine.verify_batch = slow
    from robustadder.cli import main
    sys.argv = ["robustadder", "sweep", {sweep!r}, "--store", {store!r}, "--data", {data!r}]
    main()
    """
)


def _report_texts(store: Path, sweep: Path, data: Path) -> dict[str, str]:
    out = {}
    with Store.open(store, readonly=True) as db:
        report = rep.build(db, load_sweep(sweep))
        for fmt in ("csv", "md", "latex", "html"):
            out[fmt] = rep.render(report, fmt)
    return out


def test_kill_9_then_rerun_gives_the_uninterrupted_report(world):
    tmp, sweep = world
    store = tmp / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT.format(sweep=str(sweep), store=str(store), data=str(tmp))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    n = wait_for_rows(store, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < n < (28 + 2 * 12) * 12, n
    assert CliRunner().invoke(main, ["sweep", str(sweep), "--store", str(store), "--data", str(tmp)]).exit_code == 0
    straight = tmp / "straight.sqlite"
    assert CliRunner().invoke(main, ["sweep", str(sweep), "--store", str(straight), "--data", str(tmp)]).exit_code == 0
    resumed, uninterrupted = _report_texts(store, sweep, tmp), _report_texts(straight, sweep, tmp)
    for fmt in resumed:
        assert resumed[fmt] == uninterrupted[fmt], fmt
    with Store.open(store, readonly=True) as db:
        assert len(db.samples()) == (28 + 2 * 12) * 12  # grid cells + the ANN's grad components


@pytest.fixture
def finished(world):
    tmp, sweep = world
    store = tmp / "s.sqlite"
    with Store.open(store) as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
    with Store.open(store, readonly=True) as db:
        report = rep.build(db, load_sweep(sweep))
    return tmp, sweep, store, report


def test_table_has_means_worst_case_and_deltas(finished):
    _, _, _, report = finished
    wide = report.wide
    assert ("FGSM", "4/255", "mean") in wide.columns and ("Worst case", "8/255", "std") in wide.columns
    index = list(wide.index)
    assert ("ANN", "eval") in index and ("Δ ANN − CNN", "eval") in index
    ann = wide.loc[("ANN", "eval")]
    cnn = wide.loc[("CNN", "eval")]
    delta = wide.loc[("Δ ANN − CNN", "eval")]
    assert delta[("PGD-2", "8/255", "mean")] == pytest.approx(ann[("PGD-2", "8/255", "mean")] - cnn[("PGD-2", "8/255", "mean")])
    # worst case never exceeds any single attack
    assert ann[("Worst case", "8/255", "mean")] <= min(ann[("FGSM", "8/255", "mean")], ann[("PGD-2", "8/255", "mean")])
    assert report.provenance["skipped"] and report.provenance["n_samples"] == 12


def test_dry_run_of_a_finished_sweep_reports_the_measured_compute_time(finished):
    tmp, sweep, store, report = finished
    result = CliRunner().invoke(main, ["sweep", str(sweep), "--dry-run", "--store", str(store), "--data", str(tmp)])
    assert result.exit_code == 0, result.output
    assert "to run 0" in result.output
    with Store.open(store, readonly=True) as db:
        # shared cells once; worst-case rows (ids "a+b") are no cells of their own
        spent = sum(db.cell(c).seconds for c in set(report.long["cell_id"]) if c and "+" not in c)
    assert spent > 0
    line = next(x for x in result.output.splitlines() if "compute time of the done cells" in x)
    assert line.endswith(format_duration(spent)), (line, spent)


def test_csv_is_tidy_rounded_and_round_trips_through_pandas(finished):
    _, _, _, report = finished
    text = rep.render(report, "csv")
    back = rep.read_csv(io.StringIO(text))
    pd.testing.assert_frame_equal(back, rep.csv_table(report), check_dtype=False)
    assert len(back) == len(report.long) and {"model", "attack", "robust_accuracy", "seed", "bn"} <= set(back.columns)
    assert {"robust_ci_low", "robust_ci_high", "clean_ci_low", "clean_ci_high"} <= set(back.columns)
    # one row per (model, attack, eps, settings): no duplicate grid point
    keys = ["model", "attack", "eps", "bn", "shuffle", "seed", "batch_size", "grad", "backend", "dtype", "device"]
    assert not back.duplicated(keys).any()
    # accuracies with 2 decimals, counts as integers: no float noise in the file
    header, *lines = text.splitlines()
    cols = header.split(",")
    for line in lines:
        fields = dict(zip(cols, next(__import__("csv").reader([line])), strict=True))
        for col in ("robust_accuracy", "clean_accuracy", "robust_ci_low"):
            assert fields[col] == "" or len(fields[col].split(".")[-1]) <= 2, (col, fields[col])
        assert fields["n"] == "" or fields["n"].isdigit(), fields["n"]
    done = back[(back["status"] == "done") & (back["attack"] != "Worst case")]
    assert np.allclose(done["robust_accuracy"], report.long.loc[done.index, "robust_accuracy"], atol=0.005)
    # the intervals are Wilson intervals over n samples
    row = report.long[report.long["status"] == "done"].iloc[0]
    lo, hi = proportion_interval(round(row["robust_accuracy"] * row["n"] / 100), int(row["n"]))
    assert (row["robust_ci_low"], row["robust_ci_high"]) == pytest.approx((lo, hi))


def test_latex_compiles_and_fits_a_neurips_column(finished, tmp_path):
    _, _, _, report = finished
    latex = rep.render(report, "latex")
    assert "\\toprule" in latex and "\\bfseries" not in latex and "\\caption{" in latex
    assert "\\label{tab:robustadder-mini}" in latex and "\\textbf{" in latex
    # math minus signs in the Δ rows, a rule before them, and the protocol in the caption
    assert re.search(r"\$[+-]\d+\.\d\d\$", latex)
    lines = latex.splitlines()
    first_delta = next(i for i, line in enumerate(lines) if line.startswith("$\\Delta$"))
    assert lines[first_delta - 1] == "\\midrule"
    caption = next(line for line in lines if line.startswith("\\caption{"))
    for fact in ("first 12 CIFAR-10 test images", "2 steps", "step eps/4", "random start", "1 restart",
                 "Gradient: both", "BN: eval/train", "cifar10\\_test.npz", "sha256"):  # fmt: skip
        assert fact in caption, fact
    for variant, kwargs in (("default", {}), ("means only", {"intervals": False})):
        log = compile_latex(tmp_path, rep.render(report, "latex", **kwargs), variant)
        assert "Overfull \\hbox" not in log, variant
    wide = rep.render(report, "latex", wide=True)
    assert "\\begin{table*}" in wide and "\\textwidth" in wide
    compile_latex(tmp_path, wide, "wide")


def test_a_table_wider_than_the_column_is_scaled_to_fit(finished, tmp_path):
    """However many columns, the default LaTeX never overflows the page (the box is scaled to the column)."""
    _, _, _, report = finished
    latex = rep.render(report, "latex", intervals=True)
    many = latex.replace("\\begin{document}", "")
    log = compile_latex(tmp_path, "\\setlength{\\columnwidth}{150pt}\\setlength{\\hsize}{150pt}\n" + many, "narrow")
    assert "Overfull \\hbox" not in log


BOLD_PROBE = """<script>
for (const td of document.querySelectorAll('td')) {
  td.setAttribute('data-bold', parseInt(getComputedStyle(td).fontWeight) >= 600 ? '1' : '0');
}
</script></body>"""


def _dom_bold_cells(html: str, tmp_path: Path) -> list[list[tuple[int, int]]]:
    """Per table of the page: (row, column) of every cell Chromium renders in bold."""
    chromium = need("chromium")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", BOLD_PROBE))
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    tables = []
    for table in re.findall(r"<table.*?</table>", dom, flags=re.S):
        bold = []
        body = re.search(r"<tbody>.*?</tbody>", table, flags=re.S)
        for r, row in enumerate(re.findall(r"<tr.*?</tr>", body.group(0) if body else "", flags=re.S)):
            for c, cell in enumerate(re.findall(r"<td[^>]*>", row)):
                if 'data-bold="1"' in cell:
                    bold.append((r, c))
        tables.append(bold)
    return tables


def test_html_page_emphasis_per_table_in_headless_chromium(finished, tmp_path):
    chromium = need("chromium")
    tmp, sweep, store, report = finished
    # two reports on one page (the second a copy under another name): each table's bold cells are its own
    other = tmp / "mini2.toml"
    other.write_text(sweep.read_text().replace('name = "mini"', 'name = "mini2"'))
    with Store.open(store) as db:
        run_sweep(plan_sweep(load_sweep(other), data=tmp, store=db), db, progress=False)  # reuses every cell
        second = rep.build(db, load_sweep(other))
    html = rep.to_html([report, second])
    assert html.count("<table") == 4 and len(set(re.findall(r'<table id="([^"]+)"', html))) == 4
    assert "Contents" in html and "href='#mini-0'" in html and "href='#mini2-1'" in html
    bold = _dom_bold_cells(html, tmp_path)
    expected = rep.best_mask(rep._display(report, "html")[1])
    want = [(r, c) for r in range(expected.shape[0]) for c in range(expected.shape[1]) if expected.iat[r, c]]
    assert want, "the fixture has a unique best somewhere"
    assert bold[0] == want and bold[2] == want  # results tables; energy tables (1, 3) have no bold cell
    assert bold[1] == [] and bold[3] == []
    assert html.count("<img") == 4  # eps curve and settings spread, per report
    page = tmp_path / "report.html"
    page.write_text(html)
    shot = Path(os.environ.get("ROBUSTADDER_ARTIFACTS", tmp_path)) / "report-screenshot.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1200,1600", page.as_uri()], capture_output=True, timeout=120)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000
    print(f"screenshot for people to look at: {shot}")


def test_plots_are_readable_at_full_zoom(finished):
    import matplotlib.image as mpimg

    _, _, _, report = finished
    figures = rep.plots(report)
    assert [name for name, _ in figures] == ["Robust accuracy vs eps", "Spread across inference settings and seeds"]
    for _, png in figures:
        width = mpimg.imread(io.BytesIO(png)).shape[1]
        assert width <= 1100, width


def test_report_cli_and_markdown(finished):
    tmp, sweep, store, _ = finished
    out = tmp / "t.md"
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--format", "md", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| model" in text and "skipped model gone" in text and "first 12 CIFAR-10 test images" in text
    bad = CliRunner().invoke(main, ["report", "--store", str(tmp / "nope.sqlite"), "--sweep", str(sweep)])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr
    twice = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--sweep", str(sweep)])
    assert twice.exit_code == 2 and "given twice" in twice.stderr


def test_report_needs_neither_weights_nor_data(finished, monkeypatch):
    """Moved checkpoints and a missing data directory change nothing: the report reads the store alone."""
    tmp, sweep, store, _ = finished
    before = {f: CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--format", f]).output
              for f in ("md", "csv", "latex")}  # fmt: skip
    gone = tmp / "elsewhere"
    gone.mkdir()
    for name in ("ann.pt", "cnn.pt", "cifar10_test.npz"):
        (tmp / name).rename(gone / name)
    monkeypatch.setenv("ROBUSTADDER_DATA", str(tmp / "no-such-dir"))
    monkeypatch.setattr("robustadder.models.resolve_model", lambda *a, **k: pytest.fail("a report loaded a model"))
    monkeypatch.setattr("robustadder.data.Dataset.load", lambda *a, **k: pytest.fail("a report loaded data"))
    for fmt, text in before.items():
        result = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.output == text, fmt
    assert "24.6" in before["md"]  # operation counts, stored when the sweep ran (ANN additions, M)


def test_report_without_a_sweep_renders_what_the_store_holds(finished):
    """Every sweep the store records (from the file it kept, so the file may be gone) and eval's own cells."""
    from robustadder import evaluate

    tmp, sweep, store, _ = finished
    by_file = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--format", "md"]).stdout
    only_sweep = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "md"])
    assert only_sweep.exit_code == 0 and only_sweep.stdout == by_file, only_sweep.output
    assert "reporting what the store holds: mini" in only_sweep.stderr
    evaluate(str(tmp / "ann.pt"), ["fgsm", "bim:steps=2"], eps="3/255", n=12, data=tmp, store=store, batch_size=6, progress=False)
    evaluate(str(tmp / "cnn.pt"), "fgsm", eps="3/255", n=12, data=tmp, store=store, batch_size=6, progress=False)
    sweep.rename(tmp / "moved.toml")
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "md"])
    assert result.exit_code == 0, result.output
    sweep_part, _, eval_part = result.stdout.partition("### eval cells")
    assert sweep_part.rstrip("\n") == by_file.rstrip("\n") and "reporting what the store holds: mini, eval cells" in result.stderr
    assert "| ann.pt" in eval_part and "| cnn.pt" in eval_part and "BIM-2" in eval_part and "FGSM" in eval_part
    assert "attacks: FGSM: Linf eps 3/255; BIM-2: Linf eps 3/255" in eval_part  # not the sweep's cells: they are its own
    # one table per format that renders one: said in one line
    csv = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "csv"])
    assert csv.exit_code == 2 and "the store holds 2" in csv.stderr
    empty = tmp / "empty.sqlite"
    Store.open(empty).close()
    nothing = CliRunner().invoke(main, ["report", "--store", str(empty)])
    assert nothing.exit_code == 2 and "holds no sweep and no eval result" in nothing.stderr


def test_report_without_a_sweep_takes_the_size_the_sweep_ran_at_and_reports_checks_alone(world):
    """A sweep run with --n 6 (its file says 12) is reported at 6; a store of checks only renders its checks."""
    from robustadder.diagnostics import CheckReport, CheckResult

    tmp, sweep = world
    store = tmp / "six.sqlite"
    ran = CliRunner().invoke(main, ["sweep", str(sweep), "--store", str(store), "--data", str(tmp), "--n", "6"])
    assert ran.exit_code == 0, ran.output
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "the first 6 CIFAR-10 test images" in result.stdout and "reporting what the store holds: mini" in result.stderr
    checks = tmp / "checks.sqlite"
    report = CheckReport("m", "resnet20_adder", "ab" * 32, 8, 1 / 255, {"bn": "eval", "grad": "both", "backend": "cpu"},
                         [CheckResult("eps", "accuracy falls with eps", "pass", "ok")], 10.0)  # fmt: skip
    with Store.open(checks) as db:
        db.add_check(report.weights_sha256, report.model, report.to_json())
    alone = CliRunner().invoke(main, ["report", "--store", str(checks), "--checks", "--format", "md"])
    assert alone.exit_code == 0 and alone.stdout.strip() == report.to_markdown().strip(), alone.output
    assert "the stored checks" in alone.stderr


def test_a_minimal_attack_in_a_sweep_is_read_at_the_sweeps_budgets(world):
    """FMN's cell is stored at the whole image box; its report columns are the sweep's eps, not 255/255."""
    tmp, _ = world
    sweep = tmp / "fmn.toml"
    sweep.write_text(textwrap.dedent(
        """
        name = "fmn-mini"
        n = 12
        models = [{ref = "ann.pt", label = "ANN"}, {ref = "cnn.pt", label = "CNN"}]
        eps = ["1/255", "4/255"]
        [settings]
        batch_size = 6
        [[attacks]]
        name = "fmn"
        steps = 10
        [[attacks]]
        name = "fgsm"
        [report]
        rows = ["model"]
        columns = ["attack", "eps_label"]
        """
    ))  # fmt: skip
    store = tmp / "fmn.sqlite"
    with Store.open(store) as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
        report = rep.build(db, load_sweep(sweep))
        long = report.long
        fmn = long[long["attack_name"] == "fmn"]
        assert sorted(fmn["eps_label"].unique()) == ["1/255", "4/255"] and "255/255" not in set(long["eps_label"])
        for row in fmn.itertuples():  # robust at eps: clean-correct and not fooled within eps
            rows = db.samples([row.cell_id])
            fooled = ~rows["adv_correct"] & rows["clean_correct"] & (rows["linf"] <= row.eps)
            assert row.robust_accuracy == pytest.approx(100 * (rows["clean_correct"] & ~fooled).mean())
        for (model, eps), group in long[long["attack_name"] != "none"].groupby(["model", "eps"]):
            worst = group[group["attack"] == rep.WORST]["robust_accuracy"].iloc[0]
            assert worst <= group[group["attack"] != rep.WORST]["robust_accuracy"].min() + 1e-9, (model, eps)
    text = rep.render(report, "md")
    assert "FMN-10 / 1/255" in text and "FMN-10 / 4/255" in text


def test_a_sweep_never_run_on_the_store_is_one_line(finished):
    tmp, sweep, store, _ = finished
    other = tmp / "never.toml"
    other.write_text(sweep.read_text().replace('name = "mini"', 'name = "never"'))
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(other)])
    assert result.exit_code == 2 and "no record of sweep 'never'" in result.stderr and "Traceback" not in result.output
    wrong_n = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--n", "5"])
    assert wrong_n.exit_code == 2 and "run on 12 images" in wrong_n.stderr


def test_no_machine_local_path_in_any_report(finished):
    tmp, sweep, store, _ = finished
    home = os.path.expanduser("~")
    for fmt in ("md", "csv", "latex", "html"):
        text = CliRunner().invoke(main, ["report", "--store", str(store), "--sweep", str(sweep), "--format", fmt]).output
        for local in (str(tmp), str(store.parent), home, str(tmp / "cifar10_test.npz")):
            assert local not in text, (fmt, local)
        assert "cifar10_test.npz" in text or fmt == "csv"


def test_eps_in_numeric_order_and_bold_only_for_a_unique_best(world):
    tmp, sweep = world
    sweep.write_text(sweep.read_text().replace('eps = ["4/255", "8/255"]', 'eps = ["16/255", "2/255", "1/255", "8/255"]'))
    with Store.open(tmp / "o.sqlite") as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
        report = rep.build(db, load_sweep(sweep))
    for fmt in ("md", "latex", "html", "csv"):
        text = rep.render(report, fmt)
        start = {"md": "| model", "latex": "\\begin{tabular}", "html": "<table", "csv": "\n"}[fmt]
        text = text[text.index(start) :]  # the table, not the provenance
        positions = [text.find(e) for e in ("1/255", "2/255", "8/255", "16/255")]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), (fmt, positions)
    # more than MAX_VALUE_COLUMNS columns (attack x 4 eps): eps moves to the rows
    assert report.wide.xs("mean", axis=1, level=-1).shape[1] <= rep.MAX_VALUE_COLUMNS
    text, means = rep._display(report, "md")
    mask = rep.best_mask(means)
    for c in means.columns:
        for r, key in enumerate(means.index):
            if mask.iat[r, c if isinstance(c, int) else means.columns.get_loc(c)]:
                assert not str(key[0]).startswith("Δ")
                peers = [k for k in means.index if not str(k[0]).startswith("Δ") and k[1:] == key[1:]]
                values = means.loc[peers, c].round(2)
                assert (values == values.max()).sum() == 1  # unique
    ties = means.round(2)
    for c in means.columns:  # a column where every model has the same value has no bold cell
        for key in {k[1:] for k in means.index}:
            peers = [k for k in means.index if not str(k[0]).startswith("Δ") and k[1:] == key]
            if len(peers) > 1 and ties.loc[peers, c].nunique() == 1:
                assert not mask.loc[peers, c].any()


def _as_depth_table(sweep, gone='{ref = "gone.pt", label = "gone"}'):
    """The `world` sweep as the paper's depth table (rows depth × model, one eps, BN and seed), `gone` in the
    missing model's place."""
    text = sweep.read_text().replace('{ref = "gone.pt", label = "gone"}', gone)
    text = text.replace('bn = ["eval", "train"]', 'bn = "eval"').replace("seed = [0, 1]", "seed = 0")
    sweep.write_text(text.replace('rows = ["model", "bn"]', 'rows = ["depth", "model"]').replace(
        'columns = ["attack", "eps_label"]', 'columns = ["attack"]').replace('eps = ["4/255", "8/255"]', 'eps = ["8/255"]'))


def test_a_depth_axis_groups_the_rows_with_each_depths_deltas(world):
    """`rows = ["depth", "model"]` (the paper's ResNet-20 / -32 blocks): each model only under its own depth, the
    ANN − CNN rows inside their depth's block, the best model bold per depth."""
    import torch

    from robustadder.models import CifarResNet

    tmp, sweep = world
    for kind, seed in (("adder", 2), ("conv", 3)):
        torch.manual_seed(seed)
        save_checkpoint(tmp / f"{kind}14.pt", CifarResNet(14, kind).eval())
    _as_depth_table(sweep, '{ref = "adder14.pt", label = "ANN-14"}, {ref = "conv14.pt", label = "CNN-14"}')
    with Store.open(tmp / "d.sqlite") as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
        report = rep.build(db, load_sweep(sweep))
    assert list(report.wide.index) == [(8, "ANN"), (8, "CNN"), (8, "Δ ANN − CNN"),
                                       (14, "ANN-14"), (14, "CNN-14"), (14, "Δ ANN-14 − CNN-14")]  # fmt: skip
    means = report.wide.xs("mean", axis=1, level=-1)
    assert means.loc[(14, "Δ ANN-14 − CNN-14")].tolist() == pytest.approx(
        (means.loc[(14, "ANN-14")] - means.loc[(14, "CNN-14")]).tolist(), nan_ok=True)
    mask = rep.best_mask(means)
    for depth in (8, 14):  # bold is the unique best of its depth, never a Δ row
        for c in means.columns:
            block = means.loc[[(depth, m) for d, m in means.index if d == depth and not m.startswith("Δ")], c].round(2)
            bold = mask.loc[block.index, c]
            assert bold.sum() == ((block == block.max()).sum() == 1)
            assert not mask.loc[[(depth, m) for d, m in means.index if d == depth and m.startswith("Δ")], c].any()
    latex = rep.render(report, "latex")
    assert latex.index("14 & ANN-14") > latex.index("$\\Delta$ ANN $-$ CNN")


def test_a_depth_block_stays_integer_while_a_model_has_not_run_yet(world):
    """A partial run (a model of the sweep without cells yet, as when a new depth joins a preset): the known depths
    still read 8, not 8.0, and the model not yet run stands under "other" with its cells missing."""
    tmp, sweep = world
    _as_depth_table(sweep)
    with Store.open(tmp / "d.sqlite") as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
        save_checkpoint(tmp / "later.pt", make_tiny("adder", n=2)[0].model)
        _as_depth_table(sweep, '{ref = "later.pt", label = "later"}')
        report = rep.build(db, load_sweep(sweep))
    assert list(report.wide.index)[:2] == [(8, "ANN"), (8, "CNN")] and (("other", "later") in list(report.wide.index))
    md = rep.render(report, "md")
    assert "| 8 " in md and "8.0" not in md


def test_failed_cells_and_skipped_models_are_reported_as_such(finished):
    tmp, sweep, store, report = finished
    p = report.provenance
    assert p["cells_skipped"] > 0 and p["cells_done"] == p["grid_points"] - p["cells_skipped"]
    assert f"{p['cells_done']}/{p['cells_done']} grid points present" in rep.to_markdown(report)
    cid = report.long[(report.long["status"] == "done") & (report.long["attack"] == "FGSM")]["cell_id"].iloc[0]
    with Store.open(store) as db:
        db.finish_cell(cid, error=f"boom at {tmp}/secret.py")
        failed = rep.build(db, load_sweep(sweep))
    md = rep.to_markdown(failed)
    assert f"failed cell {cid}: boom at .../secret.py" in md and str(tmp) not in md


def test_energy_table_has_clean_accuracy_and_no_mean_over_eps(finished):
    _, _, _, report = finished
    energy = rep.energy_table(report)
    assert energy["clean acc (%)"].notna().all()
    assert not any("worst" in c for c in energy.columns)  # two eps: no single worst case to show


def test_presets_parse():
    for name in rep.PRESETS:
        cfg = load_sweep(rep.preset_path(name))
        assert cfg.attacks and cfg.models
    paper = load_sweep(rep.preset_path("paper"))
    assert [a.label for a in paper.attacks] == ["Clean", "FGSM", "BIM-7", "PGD-7", "MIM-5", "R-FGSM-5"]
    assert all(a.eps == pytest.approx(8 / 255) for a in paper.attacks if a.name != "none")
    # the paper's two depths, laid out as its table: a ResNet-20 and a ResNet-32 block, ANN and CNN in each
    assert {"ANN-20", "CNN-20", "ANN-32", "CNN-32"} <= {m.label for m in paper.models}
    assert paper.report["rows"] == ["depth", "model"]
    eps = load_sweep(rep.preset_path("eps"))
    assert sorted({round(a.eps * 255) for a in eps.attacks}) == [1, 2, 4, 8, 16]
    assert {a.label for a in eps.attacks} == {"PGD-20", "AutoAttack"}
    settings = load_sweep(rep.preset_path("settings"))
    assert len(settings.settings) == 2 * 2 * 2 * 3 * 3  # shuffle x bn x batch size x grad (3) x seeds
    paper_settings = load_sweep(rep.preset_path("paper")).settings
    assert {s.grad for s in paper_settings} == {"both"}


def test_smoke_preset_runs(shared_data, thirdparty, tmp_path):
    store = tmp_path / "smoke.sqlite"
    result = CliRunner().invoke(
        main, ["sweep", str(REPO / "attacks" / "smoke.toml"), "--store", str(store), "--data", str(shared_data)]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--preset", "smoke"])
    assert result.exit_code == 0 and "ANN-20 (third party)" in result.output


@pytest.fixture
def unsaid_notes(monkeypatch):
    """A step note is said once per process: each test starts as a fresh process would."""
    import robustadder.api as api

    monkeypatch.setattr(api, "_SAID", set())


def test_a_step_larger_than_the_budget_is_said_by_eval_and_by_the_sweep_plan(world, unsaid_notes):
    """A user-given step beyond eps is allowed but weakens the attack (a step can cross the whole ball): `eval` says so
    on stderr and `sweep` in its plan, for the grid points where it exceeds the budget and no other."""
    tmp, _ = world
    args = ["--model", str(tmp / "ann.pt"), "--n", "6", "--data", str(tmp), "--store", str(tmp / "e.sqlite")]
    big = CliRunner().invoke(main, ["eval", *args, "--attack", "pgd:steps=1", "--eps", "1/255", "--step-size", "2/255"])
    assert big.exit_code == 0, big.output
    assert "note: PGD-1 at 1/255: its step 2/255 exceeds the budget" in big.stderr
    default = CliRunner().invoke(main, ["eval", *args, "--attack", "pgd:steps=1", "--eps", "1/255"])
    assert default.exit_code == 0 and "exceeds the budget" not in default.stderr
    sweep = tmp / "step.toml"
    sweep.write_text('name = "step"\nn = 6\nmodels = ["ann.pt"]\neps = ["1/255", "8/255"]\n'
                     '[[attacks]]\nname = "pgd"\nsteps = 2\nalpha = "2/255"\n')  # fmt: skip
    plan = CliRunner().invoke(main, ["sweep", str(sweep), "--dry-run", "--store", str(tmp / "d.sqlite"), "--data", str(tmp)])
    assert plan.exit_code == 0, plan.output
    notes = [line for line in plan.output.splitlines() if "exceeds the budget" in line]
    assert len(notes) == 1 and notes[0].strip().startswith("note: PGD-2 at 1/255: its step 2/255")


@pytest.mark.parametrize(
    "attack, note",
    [
        ("bim:steps=3", "BIM-3 at 2/255: 3 steps of 0.5/255 reach at most 1.5/255 from the clean image, short of the budget"),
        ("mim:steps=2", "MIM-2 at 2/255: 2 steps of 0.5/255 reach at most 1/255"),
        ("pgd:steps=3,random_start=false", "PGD-3 at 2/255: 3 steps of 0.5/255 reach at most 1.5/255"),
        ("pgd:steps=3", None),  # its random start reaches into the whole ball
        ("bim:steps=4", None),
        ("bim:steps=2,alpha=1/255", None),
    ],
)
def test_steps_that_cannot_reach_the_budget_are_said(attack, note):
    """BIM-3 at the default step eps/4 ends at most 3/4 of the way to the budget: a weaker attack than its eps says."""
    from robustadder.api import resolve_attacks

    cfg = resolve_attacks(attack, eps="2/255")[0]
    assert (cfg.step_note is None) if note is None else cfg.step_note.startswith(f"note: {note}")


def test_compare_says_a_step_larger_than_the_budget_once(world, unsaid_notes):
    """compare resolves its attacks per model and eps: the note is said once, for the eps it exceeds."""
    tmp, _ = world
    result = CliRunner().invoke(main, ["compare", str(tmp / "ann.pt"), str(tmp / "cnn.pt"), "--n", "6", "--data", str(tmp),
                                       "--store", str(tmp / "c.sqlite"), "--eps", "1/255,4/255",
                                       "--attack", "pgd:steps=1,alpha=2/255"])  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "exceeds the budget" in line]
    assert notes == ["note: PGD-1 at 1/255: its step 2/255 exceeds the budget (a step can cross the whole ball, and the "
                     "attack can be weaker than with the default step)"]  # fmt: skip


def test_the_energy_tables_worst_case_of_a_report_with_one_attack_is_that_attacks_accuracy(world):
    """With one attack in the report there are no worst-case cells to read: the worst case over one attack is its own
    robust accuracy, per model (it showed '–'); with several attacks only the worst-case cells count."""
    from robustadder import evaluate

    tmp, _ = world
    store = tmp / "one.sqlite"
    for name in ("ann", "cnn"):
        evaluate(str(tmp / f"{name}.pt"), "pgd:steps=2", eps="2/255", n=12, data=tmp, store=store, batch_size=6,
                 progress=False)  # fmt: skip
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "md"])
    assert result.exit_code == 0, result.output
    main_rows = {r.split("|")[1].strip(): r.split("|")[2].strip().strip("*") for r in result.stdout.splitlines()
                 if r.startswith(("| ann.pt", "| cnn.pt")) and r.count("|") == 3}  # fmt: skip
    energy_rows = {r.split("|")[1].strip(): r.split("|")[-2].strip() for r in result.stdout.splitlines()
                   if r.startswith(("| ann.pt", "| cnn.pt")) and r.count("|") > 3}  # fmt: skip
    assert set(main_rows) == set(energy_rows) == {"ann.pt", "cnn.pt"}
    assert all(float(energy_rows[m].split()[0]) == pytest.approx(float(main_rows[m].split()[0]), abs=0.01) for m in main_rows)


def test_a_transfer_attacks_source_digest_fits_the_latex_column(world):
    """The caption names a transfer attack's source weights by 12 hex digits, as it names the models' weights: the
    full 64-digit digest cannot break across lines and ran 158 pt past the column."""
    from robustadder import evaluate

    tmp, _ = world
    store = tmp / "transfer.sqlite"
    evaluate(str(tmp / "ann.pt"), f"transfer:source={tmp / 'cnn.pt'},steps=2", eps="2/255", n=12, data=tmp, store=store,
             batch_size=6, progress=False)  # fmt: skip
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "latex"])
    assert result.exit_code == 0, result.output
    digest = re.search(r"source_sha256=([0-9a-f]+)", result.stdout).group(1)
    assert len(digest) == 12
    log = compile_latex(tmp, result.stdout, "transfer")
    assert "Overfull \\hbox" not in log


def test_a_step_note_never_comes_above_a_user_error(world, unsaid_notes):
    """An error a user causes is one line on stderr: the step note is said when the work starts, not before an input
    that fails validation (found by the property test over eval options: BIM-1 with --n beyond the data)."""
    tmp, _ = world
    result = CliRunner().invoke(main, ["eval", "--model", str(tmp / "ann.pt"), "--data", str(tmp), "--store",
                                       str(tmp / "n.sqlite"), "--attack", "bim:steps=1", "--n", "100000"])  # fmt: skip
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "exceeds the 12 samples" in result.stderr and "note:" not in result.stderr


def test_a_report_shows_every_accuracy_with_its_interval_unless_told_not_to(world):
    """A robust accuracy over a few hundred samples is an estimate: the report prints it with its 95 % interval by
    default (it printed the bare mean unless given --intervals, and the energy table's accuracies bare even with it);
    --no-intervals gives a paper table of means."""
    from robustadder import evaluate

    tmp, _ = world
    store = tmp / "iv.sqlite"
    evaluate(str(tmp / "ann.pt"), "fgsm", eps="2/255", n=12, data=tmp, store=store, batch_size=6, progress=False)
    interval = r"\[\d+\.\d, \d+\.\d\]"
    for fmt, cell in (("md", r"\| ann\.pt +\| \**\d+\.\d\d\** " + interval),
                      ("latex", r"ann\.pt & \d+\.\d\d \{\\scriptsize" + interval + r"\}")):
        shown = CliRunner().invoke(main, ["report", "--store", str(store), "--format", fmt])
        bare = CliRunner().invoke(main, ["report", "--store", str(store), "--format", fmt, "--no-intervals"])
        assert shown.exit_code == bare.exit_code == 0, shown.output + bare.output
        assert re.search(cell, shown.stdout), shown.stdout
        assert not re.search(interval, bare.stdout), bare.stdout
    # the energy table's accuracies too (clean, and the worst case at the report's one eps)
    md = CliRunner().invoke(main, ["report", "--store", str(store)]).stdout
    energy = next(line for line in md.splitlines() if line.startswith("| ann.pt") and line.count("|") > 3)
    assert len(re.findall(r"\d+\.\d\d " + interval, energy)) == 2, energy


def test_a_sweep_without_a_description_leaves_no_dangling_separator(finished):
    """A sweep file may leave out its description: the provenance read "sweep: mini (mini.toml) — " and the page
    had an empty paragraph and a contents entry "mini: "."""
    _, _, _, report = finished
    report.provenance["description"] = ""
    lines = rep.provenance_lines(report, str)
    assert any(line == "sweep: mini (mini.toml)" for line in lines), lines
    page = rep.to_html([report, report])
    assert "<p></p>" not in page and ">mini: <" not in page and ">mini<" in page
