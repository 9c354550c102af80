"""Outputs never destroy inputs, special files stay special, store paths address exactly their file, and user
text is inert in every output format (issue 37, classes 1-3)."""

from __future__ import annotations

import csv
import html as html_module
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from robustadder import escape, fileio
from robustadder import report as rep
from robustadder.cli import main
from robustadder.comparison import compare, plot, render
from robustadder.diagnostics import CheckReport, CheckResult
from robustadder.errors import UserError
from robustadder.store import Store
from robustadder.sweep import load_sweep, plan_sweep, run_sweep

from helpers import CHROMIUM_FLAGS, compile_latex, need, save_tiny_world

# labels that try every way out of a format: LaTeX commands and a newline that ends a % comment, HTML script and
# event-handler markup, a Markdown link, raw HTML and a column break, spreadsheet formulas, mathtext, odd Unicode
HOSTILE = [
    "\\input{secret}",
    "x\n\\input{secret}",
    "\\immediate\\write18{touch owned-file}",
    "<script>document.body.id='pw'+'ned'</script>",
    "<img src=x onerror=\"document.body.id='pw'+'ned'\">",
    "[click](javascript:alert(1)) | col\\|break",
    "=HYPERLINK(\"http://x\",\"y\")",
    "+1-2",
    "@SUM(A1)",
    "-cmd",
    "$\\frac{a}{b}$ 50% & _^~#{}",
    "数据 🙂 Δ−∞",
]


def _world(tmp_path: Path):
    save_tiny_world(tmp_path, n=8, ann=("adder", 0), cnn=("conv", 1))
    return tmp_path


@pytest.fixture(scope="module")
def hostile_outputs(tmp_path_factory):
    """Every renderer's output for a sweep, a comparison and a check whose user text is hostile."""
    tmp = tmp_path_factory.mktemp("hostile")
    _world(tmp)
    labels = [" ".join(HOSTILE[:6]), " ".join(HOSTILE[6:])]  # every hostile string reaches every format
    quoted = [json.dumps(lab, ensure_ascii=False) for lab in labels]  # TOML basic strings (\n stays a newline)
    sweep = tmp / "hostile.toml"
    sweep.write_text(
        "name = 'hostile'\n"
        f"description = {json.dumps(' '.join(HOSTILE), ensure_ascii=False)}\n"
        "n = 8\n"
        f"models = [{{ref = 'ann.pt', label = {quoted[0]}}}, {{ref = 'cnn.pt', label = {quoted[1]}}}]\n"
        "eps = ['8/255']\n[settings]\nbatch_size = 8\n[[attacks]]\nname = 'none'\n[[attacks]]\nname = 'fgsm'\n",
        encoding="utf-8",
    )
    store = tmp / "s.sqlite"
    with Store.open(store) as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=tmp, store=db), db, progress=False)
        report = rep.build(db, load_sweep(sweep))
    table = compare([str(tmp / "ann.pt"), str(tmp / "cnn.pt")], labels=labels, eps=["8/255"], attacks=["fgsm"], n=8,
                    data=tmp, store=store, progress=False)  # fmt: skip
    check = CheckReport(labels[0], labels[1], "0" * 64, 8, 8 / 255, {"bn": "eval", "grad": "both", "backend": labels[1]},
                        [CheckResult("x", labels[0], "pass", labels[1])], 12.5)  # fmt: skip
    return {
        "tmp": tmp,
        "report": report,
        "table": table,
        "md": [rep.to_markdown(report, intervals=True), render(table, "md"), check.to_markdown()],
        "latex": [rep.to_latex(report, intervals=True), render(table, "latex")],
        "html": [rep.to_html([report], extra_html=check.to_html()), render(table, "html")],
        "csv": [rep.to_csv(report), render(table, "csv")],
    }


def test_hostile_labels_compile_in_latex_without_running_anything(hostile_outputs, tmp_path):
    (tmp_path / "secret.tex").write_text("\\typeout{SECRET-WAS-READ}\n")
    for i, text in enumerate(hostile_outputs["latex"]):
        for line in text.splitlines():
            if line.startswith("%"):
                continue
            assert "\\input{secret}" not in line and "\\write18" not in line.replace("\\textbackslash{}write18", "")
        log = compile_latex(tmp_path, text, name=f"doc{i}")
        assert "SECRET-WAS-READ" not in log and "secret.tex" not in log
        assert not (tmp_path / "owned-file").exists()


def test_hostile_labels_run_no_script_in_chromium(hostile_outputs, tmp_path):
    chromium = need("chromium")
    for i, page in enumerate(hostile_outputs["html"]):
        assert "<script" not in page and "<img src=x" not in page
        path = tmp_path / f"page{i}.html"
        path.write_text(page)
        dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                              path.as_uri()], capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        assert "<body" in dom and "id=\"pwned\"" not in dom  # the payloads set body.id = 'pw'+'ned' if they ever run
        assert "&lt;script&gt;" in dom  # and the label is shown as typed


def test_hostile_labels_are_inert_in_markdown(hostile_outputs):
    for text in hostile_outputs["md"]:
        assert "<script" not in text and "<img" not in text and "](javascript" not in text
        header = None
        for line in text.splitlines():
            if not line.startswith("|"):
                header = None
                continue
            header = header or line  # a table's first row; every row has exactly its columns, no injected break
            assert len(re.findall(r"(?<!\\)\|", line)) == len(re.findall(r"(?<!\\)\|", header)), line


def test_hostile_labels_are_no_spreadsheet_formulas_and_read_back(hostile_outputs):
    for text in hostile_outputs["csv"]:
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                assert not (cell[:1] in ("=", "+", "@") or (cell.startswith("-") and not re.match(r"^-[\d.]", cell)
                                                             and cell != "-")), cell  # fmt: skip
    back = rep.read_csv(io.StringIO(hostile_outputs["csv"][0]))
    assert set(back["model"]) == set(hostile_outputs["report"].long["model"])


def test_hostile_labels_plot_as_typed(hostile_outputs, tmp_path):
    png = plot(hostile_outputs["table"], tmp_path / "p.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "p.png").read_bytes() == png
    assert rep.plots(hostile_outputs["report"]) is not None


def _unescaped(text: str, char: str) -> int:
    """How many times ``char`` occurs in ``text`` not escaped by a backslash (Markdown's rule)."""
    count, i = 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        count += text[i] == char
        i += 1
    return count


_OURS = re.compile(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar)\{\}|\\[&%$#_{}]"
                   r"|\$\\(Delta|infty|times|pm|mu|le|ge|cdot)\$|\$-\$|---|--")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_is_inert_in_every_format(text):
    """A property over arbitrary user text: what each escaper returns is shown as typed and can do nothing."""
    tex = escape.latex(text)
    assert not set(_OURS.sub("", tex)) & set("\\{}$&#^_%~<>|") and "\n" not in tex and "\r" not in tex
    assert all(ord(c) < 0x7F or 0xA0 <= ord(c) <= 0xFF for c in tex)  # what pdflatex can set
    assert "\n" not in escape.latex_comment(text) and "\r" not in escape.latex_comment(text)
    md = escape.markdown(text)
    assert "<" not in md and ">" not in md and "](" not in md and _unescaped(md, "|") == 0 and "\n" not in md
    page = escape.html(text)
    assert "<" not in page and ">" not in page and '"' not in page and html_module.unescape(page) == text
    cell = escape.csv_cell(text)
    assert escape.csv_uncell(cell) == text
    number = re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cell)  # a number is data, not a formula
    assert not (cell[:1] in ("=", "+", "-", "@", "\t", "\r") and cell != "-" and not number), cell


def test_escapers_leave_plain_text_alone_and_neutralize_specials():
    assert escape.latex("ann20 cnn20-awn 1/255") == "ann20 cnn20-awn 1/255"
    assert escape.latex("a\nb%c") == "a b\\%c"
    assert escape.latex_comment("x\r\ny") == "x  y"
    assert escape.markdown("ann20 [95 % interval]") == "ann20 [95 % interval]"
    assert escape.markdown("<b>|[a](b)") == "&lt;b&gt;\\|[a]\\(b)"
    assert [escape.csv_cell(v) for v in ("=1+1", "-1.5", "-", "+x", "ann", 3)] == ["'=1+1", "-1.5", "-", "'+x", "ann", 3]
    assert escape.csv_uncell(escape.csv_cell("@x")) == "@x"


# -- outputs never destroy inputs ----------------------------------------------------------------------------------
def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("target", ["data", "zoo", "hardlink", "symlink", "store", "model"])
def test_compare_refuses_to_write_over_anything_it_reads(tmp_path, monkeypatch, target):
    world = _world(tmp_path)
    manifest = tmp_path / "zoo.toml"
    digest = fileio_digest(world / "ann.pt")
    manifest.write_text(f"[models.tinyann]\narch = 'resnet20_adder'\nsha256 = '{digest}'\npath = 'ann.pt'\n")
    monkeypatch.setenv("ROBUSTADDER_ZOO", str(manifest))
    store = tmp_path / "s.sqlite"
    Store.open(store).close()
    os.link(world / "cifar10_test.npz", tmp_path / "hard.npz")
    (tmp_path / "soft.pt").symlink_to(world / "ann.pt")
    out = {"data": world / "cifar10_test.npz", "zoo": world / "ann.pt", "hardlink": tmp_path / "hard.npz",
           "symlink": tmp_path / "soft.pt", "store": store, "model": world / "cnn.pt"}[target]  # fmt: skip
    before = out.read_bytes()
    for option in ("-o", "--plot"):
        code, output = _run("compare", "tinyann", str(world / "cnn.pt"), "--n", "8", "--eps", "8/255", "--attack", "fgsm",
                            "--data", str(world), "--store", str(store), option, str(out))  # fmt: skip
        assert code == 2, output
        assert output.strip().count("\n") == 0 and "choose another output" in output or "results store" in output
        assert out.read_bytes() == before


def fileio_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_refuses_its_sweep_file_and_store(tmp_path):
    store = tmp_path / "s.sqlite"
    Store.open(store).close()
    sweep = tmp_path / "w.toml"
    sweep.write_text("name = 'w'\nmodels = ['x.pt']\n[[attacks]]\nname = 'none'\n")
    for target in (sweep, store):
        before = target.read_bytes()
        code, output = _run("report", "--store", str(store), "--sweep", str(sweep), "-o", str(target))
        assert code == 2 and target.read_bytes() == before, output


def test_a_file_read_earlier_in_the_process_is_never_written(tmp_path):
    src = tmp_path / "in.npz"
    src.write_bytes(b"data")
    fileio.note_input(src, "a dataset file")
    alias = tmp_path / "alias"
    alias.symlink_to(src)
    for target in (src, alias):
        with pytest.raises(UserError, match="a dataset file"):
            fileio.write_output(target, "x")
    assert src.read_bytes() == b"data"
    fileio.write_output(tmp_path / "new.md", "ok")
    assert (tmp_path / "new.md").read_text() == "ok"


def test_an_image_folder_is_an_input_tree(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "cat").mkdir(parents=True)
    fileio.note_input(folder, "an image folder", tree=True)
    with pytest.raises(UserError, match="image folder"):
        fileio.check_output(folder / "cat" / "new.png")


# -- special files ---------------------------------------------------------------------------------------------------
def test_a_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    fileio.write_output(fifo, "through the pipe")
    reader.join(timeout=30)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dev_null_stays_a_device(tmp_path):
    before = os.stat("/dev/null")
    fileio.write_output("/dev/null", "nothing")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_report_to_dev_stdout_into_a_pipe(tmp_path):
    world = _world(tmp_path)
    sweep = tmp_path / "w.toml"
    sweep.write_text("name = 'w'\nn = 8\nmodels = ['ann.pt']\n[settings]\nbatch_size = 8\n[[attacks]]\nname = 'none'\n")
    store = tmp_path / "s.sqlite"
    with Store.open(store) as db:
        run_sweep(plan_sweep(load_sweep(sweep), data=world, store=db), db, progress=False)
    proc = subprocess.run([sys.executable, "-m", "robustadder", "report", "--store", str(store), "--sweep", str(sweep),
                           "-o", "/dev/stdout"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("### w: robust accuracy") and "Traceback" not in proc.stderr


def test_write_failures_are_one_line_and_leave_nothing(tmp_path):
    long_name = tmp_path / ("x" * 300 + ".md")
    with pytest.raises(UserError, match="too long"):
        fileio.write_output(long_name, "x")
    with pytest.raises(UserError, match="directory"):
        fileio.write_output(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unsupported_plot_extension_is_one_line_and_writes_nothing(hostile_outputs, tmp_path):
    with pytest.raises(UserError, match="cannot write a plot as '.xyz'"):
        plot(hostile_outputs["table"], tmp_path / "p.xyz")
    assert not (tmp_path / "p.xyz").exists()


# -- store paths -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a?b.sqlite", "a#b.sqlite", "a%41b.sqlite", "a?mode=ro", "a b&c=d.sqlite"])
def test_a_store_path_addresses_exactly_that_file(tmp_path, name):
    other = tmp_path / "a"  # what an unescaped URI would open instead ('a?...', 'a#...'), or 'aAb' for %41
    Store.open(other).close()
    before = other.read_bytes()
    with Store.open(tmp_path / name) as db:
        db.start_run("test", "cpu")
    assert (tmp_path / name).is_file() and other.read_bytes() == before
    assert not (tmp_path / "aAb.sqlite").exists()
    with Store.open(tmp_path / name, readonly=True):
        pass


def test_a_read_only_open_of_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Store.open(tmp_path / "x?mode=rwc", readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_labels_reach_the_compare_outputs_as_typed(tmp_path):
    """Escaping is not deletion: the label a user gave is what a reader of each format sees."""
    world = _world(tmp_path)
    table = compare([str(world / "ann.pt"), str(world / "cnn.pt")], labels=["a<b>", "c&d"], eps=["8/255"], attacks=["fgsm"],
                    n=8, data=world, store=tmp_path / "s.sqlite", progress=False)  # fmt: skip
    html = render(table, "html")
    assert "a&lt;b&gt;" in html and "c&amp;d" in html
    frame = pd.read_csv(io.StringIO(render(table, "csv")))
    assert set(frame["model"].dropna()) == {"a<b>", "c&d"}
    assert "a\\textless{}b\\textgreater{}" in render(table, "latex")
    assert textwrap.dedent(render(table, "md")).count("a&lt;b&gt;") >= 2


# -- signals -----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_marks_the_cell_and_run_interrupted_and_the_rerun_resumes(tmp_path, sig):
    import sqlite3

    from helpers import wait_for_rows

    world = _world(tmp_path)
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "robustadder", "eval", "--model", str(world / "ann.pt"), "--attack", "pgd:steps=300",
           "--eps", "8/255", "--n", "8", "--batch-size", "1", "--grad", "surrogate", "--data", str(world),
           "--store", str(store)]  # fmt: skip
    # a job started in the background of a non-interactive shell inherits SIGINT ignored, one under nohup SIGHUP
    # (as CI may run this; a command rightly keeps ignoring what its parent ignores): the test is about what a
    # command does when the signal reaches it
    def default_signals() -> None:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    assert wait_for_rows(store, 2, proc=proc) >= 2
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err[-800:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1] == f"interrupted by {name}; finished work is kept (run the command again to resume)"
    assert "Traceback" not in err
    with sqlite3.connect(store) as conn:
        cells = conn.execute("SELECT status, error FROM cells").fetchall()
        runs = conn.execute("SELECT ended, status FROM runs").fetchall()
        kept = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert [s for s, _ in cells if s != "done"] == ["failed"] and any(f"interrupted by {name}" in (e or "") for _, e in cells)
    assert runs[-1][0] is not None and runs[-1][1] == f"interrupted by {name}"
    assert 0 < kept < 8
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-800:]
    with sqlite3.connect(store) as conn:
        assert {s for (s,) in conn.execute("SELECT status FROM cells")} == {"done"}
        assert conn.execute("SELECT count(*) FROM samples WHERE cell_id IN (SELECT cell_id FROM cells WHERE attack = 'pgd')"
                            ).fetchone()[0] == 8  # fmt: skip
