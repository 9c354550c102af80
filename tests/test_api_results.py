"""The public API's typed results and its one settings object (issue 38 steps 3 and 5): ``evaluate`` returns an
:class:`Evaluation`, ``compare`` a :class:`Comparison`, each rendering itself; ``Settings`` is the parameter
object with keyword overrides; the CLI declares each settings flag once and prints what the result renders."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from robustadder.api import Evaluation, evaluate
from robustadder.cli import SETTINGS_OPTIONS, main
from robustadder.comparison import Comparison, compare, render
from robustadder.engine import Settings

from helpers import compile_latex, make_tiny, save_tiny_world


def test_settings_is_one_object_with_keyword_overrides():
    base = Settings(batch_size=6, grad="exact")
    assert Settings.of(base, seed=3) == Settings(batch_size=6, grad="exact", seed=3)
    assert Settings.of(None, batch_size=4) == Settings(batch_size=4) and Settings.of() == Settings()
    with pytest.raises(TypeError, match="'batchsize'"):
        Settings.of(base, batchsize=4)


def test_evaluate_returns_a_typed_result_that_renders_itself(tmp_path):
    loaded, data = make_tiny("adder", n=8)
    loaded.name = "my $model_1 | <b>"
    store = tmp_path / "s.sqlite"
    result = evaluate(loaded, ["fgsm", "pgd:steps=2"], eps="2/255", data=data, store=store,
                      settings=Settings(batch_size=4, grad="exact"), progress=False)  # fmt: skip
    assert isinstance(result, Evaluation) and isinstance(result.frame, pd.DataFrame)
    assert result.settings["batch_size"] == 4 and result.settings["grad"] == "exact"
    assert [s["attack"] for s in result.summary] == ["FGSM", "PGD-2"] and result.worst_case is not None
    # a keyword override wins over the settings object, and the same cells come back from the store
    again = evaluate(loaded, ["fgsm", "pgd:steps=2"], eps="2/255", data=data, store=store,
                     settings=Settings(batch_size=8, grad="surrogate"), grad="exact", batch_size=4, progress=False)  # fmt: skip
    assert [s["cell_id"] for s in again.summary] == [s["cell_id"] for s in result.summary]
    assert all(s["reused"] for s in again.summary)
    # every rendering; the user's model name escaped where the format needs it
    as_json = result.to_json()
    assert json.loads(result.render("json")) == as_json and as_json["model"] == loaded.name
    assert as_json["attacks"][1]["robust_accuracy"] == pytest.approx(result.summary[1]["robust_accuracy"], abs=1e-4)
    assert result.to_text().startswith(f"model           {loaded.name} (") and "PGD-2" in result.to_text()
    md = result.to_markdown()
    assert "<b>" not in md and "\\|" in md and "| PGD-2" in md
    tex = result.to_latex()
    assert "\\$model\\_1" in tex and "\\begin{tabular}" in tex and "95 \\% interval" in tex
    compile_latex(tmp_path, tex)
    # the DataFrame it used to return: still readable through it (deprecated), and the same rows as .frame
    assert len(result) == len(result.frame) and result["adv_correct"].equals(result.frame["adv_correct"])
    assert result.attrs["summary"] is result.summary


def test_eval_cli_prints_what_the_result_renders(tmp_path):
    models, data = save_tiny_world(tmp_path, n=8, ann=("adder", 0))
    store = tmp_path / "s.sqlite"
    args = ["eval", "--model", str(tmp_path / "ann.pt"), "--attack", "fgsm", "--eps", "2/255", "--n", "8",
            "--data", str(tmp_path), "--store", str(store), "--batch-size", "4", "--grad", "exact"]  # fmt: skip
    out = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    result = evaluate(str(tmp_path / "ann.pt"), "fgsm", eps="2/255", n=8, data=tmp_path, store=store,
                      batch_size=4, grad="exact", progress=False)  # fmt: skip
    expected = result.to_json()
    for run in (printed, expected):  # what differs between a first run and a rerun: times, and reuse
        run.pop("seconds")
        for attack in run["attacks"]:
            attack.pop("seconds"), attack.pop("reused")
    assert printed == expected
    text = CliRunner().invoke(main, args, catch_exceptions=False).stdout
    assert text.rstrip("\n").split("\n")[:-2] == result.to_text().split("\n")[:-2]  # but for its time and store lines


def test_compare_returns_a_typed_result(tmp_path):
    models, data = save_tiny_world(tmp_path, n=8, ann=("adder", 0), cnn=("conv", 1))
    result = compare([models["ann"], models["cnn"]], eps=["2/255"], attacks=["fgsm"], data=data, n=8,
                     store=tmp_path / "s.sqlite", settings=Settings(batch_size=4), progress=False)  # fmt: skip
    assert isinstance(result, Comparison) and list(result.table["model"]) == ["tiny-adder", "tiny-conv"]
    assert len(result.pairs) == 1 and result.verdicts[0].startswith("tiny-adder vs tiny-conv")
    assert result.settings["batch_size"] == 4
    for fmt in ("text", "md", "latex", "csv", "html", "json"):  # the old DataFrame form renders the same
        assert result.render(fmt) == render(result.table, fmt)
    assert result.to_json()["verdicts"] == result.verdicts
    assert result.plot(format="svg").startswith(b"<?xml")
    with pytest.raises(Exception, match="BN in eval mode"):
        compare([models["ann"], models["cnn"]], eps=["2/255"], attacks=["fgsm"], data=data, n=8,
                store=tmp_path / "s.sqlite", bn="train", progress=False)  # fmt: skip


def _options(command: str) -> dict[str, object]:
    return {p.name: p for p in main.commands[command].params}


def test_every_command_that_runs_models_shares_one_declaration_of_each_settings_flag():
    shared = {}
    for name, decorate in SETTINGS_OPTIONS.items():
        shared[name] = {p.name: p for p in decorate(lambda **_: None).__click_params__}[name]
    offered = {command: set(_options(command)) & set(SETTINGS_OPTIONS) for command in ("eval", "check", "compare")}
    assert offered == {"eval": set(SETTINGS_OPTIONS), "check": set(SETTINGS_OPTIONS) - {"shuffle", "dtype"},
                       "compare": set(SETTINGS_OPTIONS) - {"bn", "shuffle"}}  # fmt: skip
    for command, names in offered.items():
        for name in names:
            mine, one = _options(command)[name], shared[name]
            assert (mine.opts, mine.default, mine.help, str(mine.type)) == (one.opts, one.default, one.help, str(one.type))


def test_a_check_report_renders_itself_in_every_format(tmp_path):
    from robustadder.diagnostics import CheckReport, CheckResult

    results = [CheckResult("single_step", "single-step attacks beat iterative ones?", "pass", "FGSM 63.5 %, PGD 53 % & 5 $"),
               CheckResult("eps", "accuracy falls with eps", "fail", "100 % at 64/255 <b>")]  # fmt: skip
    report = CheckReport("my_model #1", "resnet20_adder", "ab" * 32, 200, 1 / 255, {"bn": "eval", "grad": "both",
                         "backend": "cpu"}, results, 12.5)  # fmt: skip
    assert report.render("md") == report.to_markdown() and json.loads(report.render("json"))["failed"] == ["eps"]
    assert report.render("html") == report.to_html() and "&lt;b&gt;" in report.to_html()
    for page, table in ((report.to_markdown(), "| check"), (report.to_html(), "<table")):  # the answer first
        assert "masking suspected" in page and page.index("Verdict:") < page.index(table), page
    tex = report.render("latex")
    assert "my\\_model \\#1" in tex and "63.5 \\%" in tex and "masking suspected" in tex
    compile_latex(tmp_path, tex)
    with pytest.raises(Exception, match="not one of"):
        report.render("csv")
