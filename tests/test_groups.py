"""compare --group: classes of models (training seeds) answered on minimal distances, in the API, the CLI and JSON."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustadder.cli import main
from robustadder.errors import UserError
from robustadder.groups import GroupComparison, compare_groups, parse_group, plot_curves
from robustadder.models import CifarResNet, save_checkpoint

from helpers import save_tiny_world, tree

FAST = {"minimal": "fmn:steps=10", "attacks": ["fgsm"], "eps": ["2/255", "8/255"], "batch_size": 8}


def _world(tmp_path: Path):
    loaded, data = save_tiny_world(tmp_path, n=8, a0=("adder", 0), a1=("adder", 1), c0=("conv", 0), c1=("conv", 1))
    return loaded, data


@pytest.mark.slow
def test_groups_answer_for_the_classes_in_the_api(tmp_path):
    _world(tmp_path)
    groups = {"ANN": [str(tmp_path / f"a{k}.pt") for k in (0, 1)], "CNN": [str(tmp_path / f"c{k}.pt") for k in (0, 1)]}
    result = compare_groups(groups, n=8, data=tmp_path, store=tmp_path / "s.sqlite", progress=False, **FAST)
    assert list(result.models["group"]) == ["ANN", "ANN", "CNN", "CNN"] and (result.models["n"] == 8).all()
    (cls,) = result.classes
    assert cls.names == ("ANN", "CNN") and cls.separates_runs and len(cls.areas) == 4
    assert cls.ci[0] <= cls.difference <= cls.ci[1]
    assert result.sentences()[0].startswith("ANN vs CNN: ")
    # the envelope: never above what the fixed-eps attack left robust at its eps
    for row in result.models.itertuples():
        assert row.median <= row.median_fmn + 1e-12
    again = compare_groups(groups, n=8, data=tmp_path, store=tmp_path / "s.sqlite", progress=False, **FAST)
    assert again.to_json() == result.to_json()  # every cell reused: the same answer
    # its compute time is the stored seconds of every cell it used, once each: an adder model's two gradient cells
    # are counted through the cell that combines them, never twice
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        cells = conn.execute("SELECT cell_id, config, seconds FROM cells").fetchall()
    parts = {part for _, config, _ in cells for part in json.loads(config).get("components", {}).values()}
    stored = sum(seconds for cell_id, _, seconds in cells if cell_id not in parts)
    assert parts and result.settings["compute_seconds"] == pytest.approx(stored) and stored > 0
    assert any(n.startswith("Compute: ") for n in result.notes)
    # the plot's axis ends soon after the last eps where some curve is above 0, and says so
    alive = result.curves.loc[result.curves["robust_accuracy"] > 0, "eps"].max() * 255
    svg = plot_curves(result, format="svg").decode()
    assert ("every curve is 0 from" in svg) == (max(1.0, np.ceil(alive * 1.25)) < 16)


@pytest.mark.slow
def test_groups_work_in_the_cli_and_json(tmp_path):
    _world(tmp_path)
    args = ["compare", "--group", f"ANN={tmp_path / 'a0.pt'},{tmp_path / 'a1.pt'}", "--group",
            f"CNN={tmp_path / 'c0.pt'},{tmp_path / 'c1.pt'}", "--minimal", "fmn:steps=10", "--attack", "fgsm", "--eps",
            "2/255,8/255", "--n", "8", "--batch-size", "8", "--data", str(tmp_path),
            "--store", str(tmp_path / "s.sqlite")]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--json", "--plot", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{") :])
    assert payload["groups"] == {"ANN": ["a0.pt", "a1.pt"], "CNN": ["c0.pt", "c1.pt"]}
    assert payload["classes"][0]["separates_runs"] is True and payload["verdicts"][0].startswith("ANN vs CNN")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "ANN vs CNN" in text.output and "median eps" in text.output


@pytest.mark.slow
def test_a_class_of_one_model_is_allowed_and_says_what_it_cannot_separate(tmp_path):
    _world(tmp_path)
    result = compare_groups({"ANN": [str(tmp_path / "a0.pt")], "CNN": [str(tmp_path / "c0.pt")]}, n=8, data=tmp_path,
                            store=tmp_path / "s.sqlite", progress=False, **FAST)  # fmt: skip
    assert "cannot separate the architecture from the run" in result.sentences()[0]


def _one_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_bad_groups_are_one_line_and_write_nothing(tmp_path):
    _world(tmp_path)
    other = CifarResNet(8, "conv", num_classes=5)
    save_checkpoint(tmp_path / "five.pt", other)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c100.pt", CifarResNet(8, "conv"), {"dataset": "cifar100"})
    (tmp_path / "nograd.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(3 * 32 * 32, 10)\n"
        "    def forward(self, x):\n"
        "        with torch.no_grad():\n"
        "            return self.lin(x.flatten(1))\n"
        "def make():\n"
        "    return M()\n"
    )
    before = tree(tmp_path)
    base = ["compare", "--n", "8", "--data", str(tmp_path), "--store", str(tmp_path / "s.sqlite"), "--attack", "fgsm"]
    a0, a1, c0 = (str(tmp_path / f) for f in ("a0.pt", "a1.pt", "c0.pt"))
    cases = [
        ([*base, "--group", f"ANN={a0},{a1}"], "at least two groups"),
        ([*base, "--group", f"ANN={a0},{a1}", "--group", f"CNN={c0},{a0}"], "given twice"),
        ([*base, "--group", f"ANN={a0}", "--group", f"CNN={c0},{tmp_path / 'five.pt'}"], "different numbers of classes"),
        ([*base, "--group", f"ANN={a0}", "--group", f"CNN={c0},{tmp_path / 'c100.pt'}"], "different datasets"),
        ([*base, "--group", f"ANN={a0}", "--group", f"X={tmp_path / 'nograd.py'}:make"], "no gradient"),
        ([*base, "--group", "ANN", "--group", f"CNN={c0}"], "must look like LABEL=MODEL1"),
        ([*base, "--group", f"ANN={a0}", "--group", f"ANN={c0}"], "given twice"),
        ([*base, a0, "--group", f"ANN={a1}", "--group", f"CNN={c0}"], "either MODELS or --group"),
        ([*base, "--group", f"ANN={a0}", "--group", f"CNN={c0}", "--format", "latex"], "not available with --group"),
    ]
    for args, message in cases:
        assert message in _one_line(args), args
        assert tree(tmp_path) == before  # nothing written: no store, no output


def test_parse_group():
    assert parse_group("ANN-20 = ann20, ann20-seed1") == ("ANN-20", ["ann20", "ann20-seed1"])
    with pytest.raises(UserError):
        parse_group("=ann20")


@pytest.mark.slow
def test_a_report_page_leads_with_the_class_answer_of_a_group_json(tmp_path):
    """`report --answer GROUPS.json`: the class sentences come first on the page (before any sweep), rebuilt from the
    JSON exactly as compare --group rendered them, the user's labels escaped; a file that is no such JSON is one line."""
    _world(tmp_path)
    label = "ANN<script>&"
    groups = {label: [str(tmp_path / f"a{k}.pt") for k in (0, 1)], "CNN": [str(tmp_path / f"c{k}.pt") for k in (0, 1)]}
    store = tmp_path / "s.sqlite"
    result = compare_groups(groups, n=8, data=tmp_path, store=store, progress=False, **FAST)
    (tmp_path / "g.json").write_text(result.render("json"))
    again = GroupComparison.from_json(json.loads(result.render("json")))
    assert again.render("md") == result.render("md") and again.sentences() == result.sentences()
    page = CliRunner().invoke(main, ["report", "--store", str(store), "--answer", str(tmp_path / "g.json"), "--format", "html"])
    assert page.exit_code == 0, page.output
    html = page.stdout
    assert html.index("The answer: ANN&lt;script&gt;&amp; vs CNN") < html.index("</h1>") + 200
    assert "<script>" not in html and "data:image/png;base64," in html
    first = result.sentences()[0].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert first in html
    md = CliRunner().invoke(main, ["report", "--store", str(store), "--answer", str(tmp_path / "g.json")])
    assert md.exit_code == 0 and md.stdout.startswith(result.render("md"))
    assert md.stdout.startswith("- ANN&lt;script&gt;&amp; vs CNN: "), md.stdout  # the Markdown page, too, leads with the answer
    (tmp_path / "not.json").write_text('{"models": []}')
    assert "is not the JSON of 'compare --group --json'" in _one_line(
        ["report", "--store", str(store), "--answer", str(tmp_path / "not.json"), "--format", "html"])
    assert "--answer renders in --format md or html" in _one_line(
        ["report", "--store", str(store), "--answer", str(tmp_path / "g.json"), "--format", "csv"])
    # the same answer twice (by another spelling of its path) would be compared with itself across "depths"
    assert "is given twice; pass each answer once" in _one_line(
        ["report", "--store", str(store), "--answer", str(tmp_path / "g.json"), "--answer", str(tmp_path / "." / "g.json")])


def _answer(groups: dict[str, list[tuple[str, float]]]) -> dict:
    """The JSON of a compare --group answer with the given runs' median minimal eps (in /255); nothing else measured."""
    models = [{"group": g, "model": m, "n": 100, "clean_accuracy": 90.0, "clean_ci_low": 80.0, "clean_ci_high": 95.0,
               "median": med / 255, "median_ci_low": (med - 0.1) / 255, "median_ci_high": (med + 0.1) / 255,
               "area": 5.0, "broken_below": 0, "robust_at_1000": [20.0, 15.0, 25.0]}
              for g, runs in groups.items() for m, med in runs]  # fmt: skip
    names = list(groups)
    return {"groups": {g: [m for m, _ in runs] for g, runs in groups.items()}, "models": models,
            "curves": [{"group": r["group"], "model": r["model"], "eps": e / 255, "robust_accuracy": 50.0,
                        "ci_low": 40.0, "ci_high": 60.0} for r in models for e in (0, 8, 16)],
            "classes": [{"a": names[0], "b": names[1], "members": [groups[names[0]], groups[names[1]]], "n": 100,
                         "limit": 16 / 255, "area": {}, "class_area": [5.0, 5.0], "difference": 0.0, "ci": [-1.0, 1.0],
                         "spread": [None, None]}],
            "settings": {"n": 100, "eps": [1 / 255], "limit": 16 / 255}, "protocol": "p", "notes": []}  # fmt: skip


def test_several_answers_get_each_class_median_across_them(tmp_path):
    """`report --answer D20.json --answer D32.json`: per answer and class the mean of the runs' median minimal eps and
    the spread between runs (unknown for one run), in md and html, and the plot with --plot; --plot needs two answers;
    answers alone need no store."""
    (tmp_path / "d20.json").write_text(json.dumps(_answer({"ANN|20": [("a", 0.6), ("b", 0.4)], "CNN-20": [("c", 0.5)]})))
    (tmp_path / "d32.json").write_text(json.dumps(_answer({"ANN-32": [("d", 0.3)], "CNN-32": [("e", 0.45)]})))
    store = tmp_path / "none.sqlite"  # answers alone need no store
    answers = ["--answer", str(tmp_path / "d20.json"), "--answer", str(tmp_path / "d32.json")]
    md = CliRunner().invoke(main, ["report", "--store", str(store), *answers, "--plot", str(tmp_path / "d.png")])
    assert md.exit_code == 0, md.output
    table = md.stdout[md.stdout.index("| comparison") :].split("\n\n")[0].splitlines()[2:]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table]
    rows = {c[1]: c for c in cells}
    assert [c[0] for c in cells] == ["ANN\\|20 vs CNN-20"] * 2 + ["ANN-32 vs CNN-32"] * 2
    assert rows["ANN\\|20"][2:5] == ["2", "0.500", "0.200"]  # mean and spread of 0.6 and 0.4, the label's pipe escaped
    assert rows["CNN-32"][2:5] == ["1", "0.450", "one run: unknown"]  # three decimals, as the runs' medians
    assert (tmp_path / "d.png").read_bytes().startswith(b"\x89PNG")
    html = CliRunner().invoke(main, ["report", "--store", str(store), *answers, "--format", "html"]).stdout
    assert "Across the answers" in html and html.count("data:image/png;base64,") == 3
    assert html.count("id='answer'") == 1 and html.count("id='answer-2'") == 1  # one id per answer
    # each interval on a line of its own, small (on one line the table ran past the page); three decimals in /255
    assert ">0.600<br><span class='ci'>[0.500, 0.700]</span><" in html
    assert ">20.0<br><span class='ci'>[15.0, 25.0]</span><" in html
    assert CliRunner().invoke(main, ["report", "--store", str(store), *answers, "--format", "html"]).stdout == html
    assert "--plot draws the answers side by side" in _one_line(
        ["report", "--store", str(store), answers[0], answers[1], "--plot", str(tmp_path / "one.png")])
    assert not (tmp_path / "one.png").exists() and not store.exists()
