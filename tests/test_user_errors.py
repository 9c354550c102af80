"""Errors a user can cause end in one line and write nothing: bad options, sweep files, stores, manifests, disks;
the CLI starts without importing torch and `--help` works everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_cli_and_help_start_without_importing_torch():
    code = "import sys, robustadder.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    helped = subprocess.run([sys.executable, "-m", "robustadder", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "compare" in helped.stdout


def test_every_command_s_line_in_the_help_reads_whole():
    """click cuts a docstring's first line at its first period: "Gradient-masking checks (Carlini et al." was check's."""
    import click

    from robustadder.cli import main

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            yield (*path, name), cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, (*path, name))

    for path, cmd in commands(main):
        line = cmd.get_short_help_str(limit=200)
        assert line.count("(") == line.count(")") and not line.endswith(("et al.", "e.g.", "i.e.")), (path, line)


def test_the_api_functions_are_there_when_asked_for():
    import robustadder

    assert callable(robustadder.evaluate) and callable(robustadder.compare)
    from robustadder import comparison

    assert robustadder.compare is comparison.compare  # the function, whatever was imported before


def _world(tmp_path, n=24):
    from helpers import save_tiny_world

    save_tiny_world(tmp_path, n=n, ann=("adder", 0))


def _eval_cmd(tmp_path, *extra):
    return [sys.executable, "-m", "robustadder", "eval", "--model", str(tmp_path / "ann.pt"), "--attack", "pgd:steps=2",
            "--n", "24", "--batch-size", "4", "--grad", "surrogate", "--data", str(tmp_path), "--store",
            str(tmp_path / "s.sqlite"), *extra]  # fmt: skip


def test_two_processes_on_one_cell_end_cleanly_with_the_rows_of_one(tmp_path):
    """The loser of a race on one cell used to exit 1 with an IntegrityError traceback."""
    import sqlite3

    _world(tmp_path)
    procs = [subprocess.Popen(_eval_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-800:]
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 24  # one PGD cell, never duplicated
        assert {s for (s,) in conn.execute("SELECT status FROM cells")} == {"done"}


def test_force_racing_a_run_never_leaves_a_cell_running(tmp_path):
    import sqlite3

    _world(tmp_path)
    procs = [subprocess.Popen(_eval_cmd(tmp_path, *flag), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for flag in ((), ("--force",))]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode in (0, 2) and "Traceback" not in err, err[-800:]
        if p.returncode == 2:  # the run whose cell was reset under it: its progress, then the error as one line
            lines = [line for line in err.strip().splitlines() if line.strip()]
            assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, err[-800:]
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert "running" not in {s for (s,) in conn.execute("SELECT status FROM cells")}
    again = subprocess.run(_eval_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-800:]


def test_any_error_inside_a_cell_marks_it_failed_with_the_reason(tmp_path, monkeypatch):
    from robustadder import evaluate
    from robustadder.attacks import ATTACKS, AttackDef
    from robustadder.store import Store

    from helpers import make_tiny

    def broken(cfg, ctx):
        def run(model, x, y, ids, seed):
            raise RuntimeError("the attack broke")

        return run

    monkeypatch.setitem(ATTACKS, "broken", AttackDef("broken", "raises", ("Linf",), {}, broken, lambda c: "Broken"))
    loaded, data = make_tiny(n=8)
    with pytest.raises(RuntimeError, match="the attack broke"):
        evaluate(loaded, ["broken"], data=data, store=tmp_path / "s.sqlite", progress=False)
    with Store.open(tmp_path / "s.sqlite", readonly=True) as db:
        cells = db.cells()
    assert list(cells["status"]) == ["failed"] and "the attack broke" in cells["error"].iloc[0]


def test_a_fallback_to_the_slow_backend_is_said(monkeypatch, capsys):
    """Without a compiler the fast CPU backend cannot be built: `auto` says so instead of going slow silently."""
    import torch

    from robustadder import kernels
    from robustadder.kernels import cpu

    monkeypatch.setattr(cpu.CpuBackend, "available", lambda self, device: (False, "no C++ compiler found"))
    monkeypatch.setattr(kernels, "_SAID", set())
    assert kernels.get_backend("auto", torch.device("cpu")).name == "reference"
    err = capsys.readouterr().err
    assert "slow reference adder backend" in err and "no C++ compiler found" in err and "triton" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "1e400"], "must be finite"),
        (["--device", "mps"], "runs on cpu or cuda"),
        (["--device", "meta"], "runs on cpu or cuda"),
        (["--eps", "1/0"], "must be a number"),
    ],
)
def test_bad_option_values_end_in_one_line(tmp_path, args, message):
    from helpers import tree

    _world(tmp_path, n=8)
    before = tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "robustadder", "eval", "--model", str(tmp_path / "ann.pt"), "--attack",
                          "fgsm", "--n", "8", "--data", str(tmp_path), "--store", str(tmp_path / "s.sqlite"), *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]
    assert len(out.stderr.strip().splitlines()) == 1
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "settings, message",
    [
        ('batch_size = "abc"', "batch_size must be int"),
        ("batch_size = true", "batch_size must be int"),
        ('shuffle = "yes"', "shuffle must be bool"),
        ("seed = 1.5", "seed must be int"),
        ("bn = 5", "bn must be str"),
    ],
)
def test_wrong_value_types_in_sweep_files_are_one_line_errors(tmp_path, settings, message):
    from robustadder.errors import UserError
    from robustadder.sweep import load_sweep

    path = tmp_path / "s.toml"
    path.write_text(f'models = ["ann20"]\n[settings]\n{settings}\n[[attacks]]\nname = "fgsm"\n')
    with pytest.raises(UserError, match=message):
        load_sweep(path)


def test_n_true_in_a_sweep_is_not_one(tmp_path):
    from robustadder.errors import UserError
    from robustadder.sweep import load_sweep

    path = tmp_path / "s.toml"
    path.write_text('n = true\nmodels = ["ann20"]\n[[attacks]]\nname = "fgsm"\n')
    with pytest.raises(UserError, match="n must be a positive integer"):
        load_sweep(path)


def _sweep_world(tmp_path, models: str, settings: str = ""):
    _world(tmp_path, n=8)
    path = tmp_path / "w.toml"
    path.write_text(f"n = 8\nmodels = {models}\n[settings]\nbatch_size = 4\ngrad = 'surrogate'\n{settings}\n"
                    "[[attacks]]\nname = 'fgsm'\n")  # fmt: skip
    return path


def _sweep(tmp_path, path, *extra):
    return subprocess.run([sys.executable, "-m", "robustadder", "sweep", str(path), "--data", str(tmp_path), "--store",
                           str(tmp_path / "s.sqlite"), *extra], capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_dry_run_and_a_failing_sweep_write_no_store(tmp_path):
    path = _sweep_world(tmp_path, '["ann.pt"]')
    assert _sweep(tmp_path, path, "--dry-run").returncode == 0
    assert not (tmp_path / "s.sqlite").exists()
    bad = subprocess.run([sys.executable, "-m", "robustadder", "sweep", str(path), "--data", str(tmp_path / "nodata"),
                          "--store", str(tmp_path / "s.sqlite")], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and not (tmp_path / "s.sqlite").exists()
    assert _sweep(tmp_path, path).returncode == 0 and (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    "models, settings, message",
    [
        ('["ann.pt", "ann20-typo"]', "", "unknown model"),
        ('["gone.pt"]', "", "every model was skipped"),
        ('["ann.pt"]', "seed = []", "grid is empty"),
    ],
)
def test_sweeps_that_cannot_produce_results_do_not_exit_0(tmp_path, models, settings, message):
    out = _sweep(tmp_path, _sweep_world(tmp_path, models, settings))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--train-subset", "0"], "--train-subset must be at least 1"),
        (["--out", "/proc/nope/m.pt"], "does not exist"),
        (["--out", "."], "is a directory"),
    ],
)
def test_train_refuses_bad_subsets_and_unwritable_outputs_before_any_work(tmp_path, args, message):
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.savez(tmp_path / f"cifar10_{split}.npz", x=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, 8).astype(np.uint8))  # fmt: skip
    base = ["--kind", "conv", "--epochs", "1", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")]
    out = subprocess.run([sys.executable, "-m", "robustadder", "train", *base, *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]
    assert not (tmp_path / "m.pt").exists()


def test_check_on_a_single_image_is_a_one_line_error(tmp_path):
    _world(tmp_path, n=8)
    out = subprocess.run([sys.executable, "-m", "robustadder", "check", "--model", str(tmp_path / "ann.pt"), "--n", "1",
                          "--data", str(tmp_path), "--store", str(tmp_path / "s.sqlite")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "at least 2 test images" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "s.sqlite").exists()


# -- property: whatever a user writes, the CLI ends in 0 or one line and 2 -----------------------------------
def _no_traceback(result) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-800:], repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _toml_values():
    from hypothesis import strategies as st

    words = ["8/255", "1/255", "abc", "", "1e400", "-1/255", "0.5/255", "eval", "train", "both", "exact", "surrogate",
             "cpu", "mps", "float64", "auto", "reference"]  # fmt: skip
    scalars = st.one_of(st.integers(-3, 300), st.booleans(), st.floats(allow_nan=False, width=32), st.sampled_from(words))
    return st.one_of(scalars, st.lists(scalars, max_size=3))


def _toml(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


@pytest.fixture(scope="module")
def property_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("property")
    _world(folder, n=8)
    return folder


def test_random_sweep_files_never_end_in_a_traceback(property_world):
    from click.testing import CliRunner
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from robustadder.cli import main

    keys = ["bn", "shuffle", "seed", "batch_size", "grad", "backend", "dtype", "device", "nonsense"]
    attack = st.fixed_dictionaries(
        {"name": st.sampled_from(["fgsm", "pgd", "none", "magic", "bim", 5])},
        optional={"steps": _toml_values(), "alpha": _toml_values(), "eps": _toml_values(), "restarts": _toml_values()},
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        n=st.one_of(st.none(), _toml_values()),
        models=st.one_of(
            st.just(["ann.pt"]),
            st.lists(st.sampled_from(["ann.pt", "gone.pt", "ann20-typo", "ann.pt"]), max_size=3),
            _toml_values(),
        ),  # fmt: skip
        eps=st.one_of(st.none(), _toml_values()),
        settings_=st.dictionaries(st.sampled_from(keys), _toml_values(), max_size=3),
        attacks=st.lists(attack, max_size=2),
        report=st.one_of(
            st.none(), _toml_values(), st.dictionaries(st.sampled_from(["rows", "columns", "x"]), _toml_values(), max_size=2)
        ),  # fmt: skip
        top=st.dictionaries(st.sampled_from(["settings", "attacks", "name", "description", "norm"]), _toml_values(), max_size=1),
        label=st.one_of(st.none(), _toml_values()),
    )
    def run(n, models, eps, settings_, attacks, report, top, label):
        lines = [f"n = {_toml(n)}" if n is not None else "", f"models = {_toml(models)}"]
        if label is not None:
            lines[-1] = f'models = [{{ref = "ann.pt", label = {_toml(label)}}}]'
        lines += [f"{k} = {_toml(v)}" for k, v in top.items()]
        if "settings" in top:
            settings_ = {}
        if "attacks" in top:
            attacks = []
        if eps is not None:
            lines.append(f"eps = {_toml(eps)}")
        if isinstance(report, dict):
            lines.append("[report]")
            lines += [f"{k} = {_toml(v)}" for k, v in report.items()]
        elif report is not None:
            lines.insert(0, f"report = {_toml(report)}")
        lines.append("[settings]")
        lines += [f"{k} = {_toml(v)}" for k, v in settings_.items()]
        for a in attacks:
            lines.append("[[attacks]]")
            lines += [f"{k} = {_toml(v)}" for k, v in a.items()]
        path = property_world / "random.toml"
        path.write_text("\n".join(lines) + "\n")
        store = property_world / "never.sqlite"
        result = CliRunner().invoke(main, ["sweep", str(path), "--dry-run", "--data", str(property_world),
                                           "--store", str(store)])  # fmt: skip
        _no_traceback(result)
        assert not store.exists()

    run()


def test_random_eval_options_never_end_in_a_traceback(property_world):
    from click.testing import CliRunner
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from robustadder.cli import main

    text = st.sampled_from(["8/255", "1/255", "0", "-1", "abc", "1e400", "nan", "inf", "1/0", "2", "0.5/255", ""])
    attack = st.sampled_from(["fgsm", "pgd:steps=2", "pgd:steps=0", "pgd:steps=abc", "magic", "pgd:alpha=-1",
                              "bim:steps=1,alpha=1/255", "none", "fgsm:bogus=1", "pgd:restarts=0"])  # fmt: skip

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(eps=text, attack=attack, n=st.sampled_from(["2", "0", "-1", "x", "9", "100000"]),
           batch=st.sampled_from(["1", "4", "0", "-2", "y"]), bn=st.sampled_from(["eval", "train", "bogus"]),
           grad=st.sampled_from(["both", "exact", "surrogate", "none", "x"]))  # fmt: skip
    def run(eps, attack, n, batch, bn, grad):
        store = property_world / "eval.sqlite"
        result = CliRunner().invoke(main, ["eval", "--model", str(property_world / "ann.pt"), "--attack", attack,
                                           "--eps", eps, "--n", n, "--batch-size", batch, "--bn", bn, "--grad", grad,
                                           "--data", str(property_world), "--store", str(store)])  # fmt: skip
        _no_traceback(result)

    run()


# -- damaged inputs -----------------------------------------------------------------------------------------
def test_batches_of_one_under_bn_train_are_one_line_errors_before_anything_is_written(tmp_path):
    from helpers import tree

    _world(tmp_path, n=8)
    before = tree(tmp_path)
    for args in (["--batch-size", "1"], ["--n", "5", "--batch-size", "4"]):
        out = subprocess.run([sys.executable, "-m", "robustadder", "eval", "--model", str(tmp_path / "ann.pt"), "--attack",
                              "fgsm", "--n", "8", "--bn", "train", "--data", str(tmp_path), "--store",
                              str(tmp_path / "s.sqlite"), *args], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 2 and "at least 2 samples per batch" in out.stderr and "Traceback" not in out.stderr
        assert tree(tmp_path) == before


def test_training_with_a_last_batch_of_one_is_refused_before_any_work(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.savez(tmp_path / f"cifar10_{split}.npz", x=rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, 9).astype(np.uint8))  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "robustadder", "train", "--kind", "conv", "--epochs", "1", "--batch-size",
                          "4", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 2 and "at least 2 samples per batch" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.parametrize(
    "text, message",
    [
        ('report = "model"', "[report] must be a table"),
        ('[report]\nrows = ["model", "bogus"]', "unknown axis 'bogus'"),
        ('[report]\nrows = "model"\ncolumns = ["model"]', "names an axis twice"),
        ('models = ["ann20", "ann20"]', "listed twice"),
        ("name = 5", "name must be a string"),
    ],
)
def test_bad_report_layouts_and_duplicate_models_in_sweep_files(tmp_path, text, message):
    from robustadder.errors import UserError
    from robustadder.sweep import load_sweep

    head, _, tail = text.partition("[report]")
    models = "" if "models" in head else 'models = ["ann20"]\n'
    path = tmp_path / "s.toml"
    path.write_text(f'{models}{head}\n[[attacks]]\nname = "fgsm"\n' + (f"[report]{tail}\n" if tail else ""))
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        load_sweep(path)


@pytest.mark.parametrize(
    "manifest, message",
    [
        ("models = 5", "'models' must be a table"),
        ("[models]\nx = 3", "model 'x' must be a table"),
        ('[models.x]\narch = "resnet20_adder"\npath = "a.pt"\nsha256 = "abc"', "sha256 must be 64 hex digits"),
        ('[models.x]\narch = "resnet99_magic"\npath = "a.pt"\nsha256 = "' + "a" * 64 + '"', "unknown architecture"),
        ('[models.x]\narch = 5\npath = "a.pt"\nsha256 = "' + "a" * 64 + '"', "arch must be a string"),
        ('[models.x]\narch = "resnet20_adder"\npath = "a.pt"\nsha256 = "' + "a" * 64 + '"\naccuracy = "high"',
         "accuracy must be a number"),
    ],
)  # fmt: skip
def test_a_malformed_zoo_manifest_is_one_line(tmp_path, manifest, message):
    (tmp_path / "zoo.toml").write_text(manifest + "\n")
    out = subprocess.run([sys.executable, "-m", "robustadder", "models"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "ROBUSTADDER_ZOO": str(tmp_path / "zoo.toml")})  # fmt: skip
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


def test_the_advice_for_a_tampered_shipped_model_is_to_restore_it(tmp_path):
    import os

    from robustadder.errors import UserError
    from robustadder.models.zoo import load_zoo

    (tmp_path / "a.pt").write_bytes(b"tampered")
    (tmp_path / "zoo.toml").write_text('[models.x]\narch = "resnet20_adder"\npath = "a.pt"\nsha256 = "' + "a" * 64 + '"\n')
    with pytest.raises(UserError, match="restore it") as info:
        load_zoo(tmp_path / "zoo.toml")["x"].ensure()
    assert "rerun to fetch" not in str(info.value)
    assert os.path.exists(tmp_path / "a.pt")


def _finished_store(tmp_path):
    _world(tmp_path)
    out = subprocess.run(_eval_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    return tmp_path / "s.sqlite"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'", "schema version 'abc' is not a number"),
        ("UPDATE cells SET config = '{broken'", "is not valid JSON"),
        ("DROP TABLE samples", "table(s) samples missing"),
    ],
)
def test_a_hand_damaged_store_is_one_line_for_every_reader(tmp_path, damage, message):
    import sqlite3

    store = _finished_store(tmp_path)
    with sqlite3.connect(store) as conn:
        conn.execute(damage)
    for cmd in (_eval_cmd(tmp_path), [sys.executable, "-m", "robustadder", "report", "--store", str(store)]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-800:]
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_dropped_checks_table_is_restored_not_fatal(tmp_path):
    import sqlite3

    from robustadder.store import Store

    store = _finished_store(tmp_path)
    with sqlite3.connect(store) as conn:
        conn.execute("DROP TABLE checks")
    with Store.open(store) as db:  # a writer recreates it: a check can store its report again
        db.add_check("a" * 64, "m", {"x": 1})
        assert db.checks() == [{"x": 1}]


def test_disk_full_while_writing_ends_in_one_line_and_leaves_no_cell_running(tmp_path, monkeypatch):
    import sqlite3

    from click.testing import CliRunner

    from robustadder.cli import main
    from robustadder.store import Store

    _world(tmp_path)

    def full(self, *a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add_batch", full)
    result = CliRunner().invoke(main, _eval_cmd(tmp_path)[3:])
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if "Error:" in line]
    assert len(errors) == 1 and "disk is full" in errors[0] and "Traceback" not in result.output
    monkeypatch.undo()
    with Store.open(tmp_path / "s.sqlite", readonly=True) as db:
        assert "running" not in set(db.cells()["status"])


def test_atomic_writes_keep_the_mode_and_write_through_symlinks(tmp_path):
    import os
    import stat

    from robustadder.models.checkpoint import atomic_write

    target = tmp_path / "real.md"
    target.write_text("old")
    os.chmod(target, 0o644)
    link = tmp_path / "link.md"
    link.symlink_to(target)
    atomic_write(link, lambda fh: fh.write(b"new"))
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    fresh = tmp_path / "fresh.md"
    old = os.umask(0o022)
    try:
        atomic_write(fresh, lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_store_on_read_only_media_can_be_reported_from(tmp_path, monkeypatch):
    """Read-only media cannot hold a WAL store's -shm file: the store is then read as immutable."""
    import sqlite3

    from robustadder.store import Store

    store = _finished_store(tmp_path)
    real = sqlite3.connect

    class Broken:  # what SQLite does on read-only media for a WAL file opened with mode=ro: reads fail
        def execute(self, sql, *a, **k):
            if sql.startswith("PRAGMA"):
                return None
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            pass

    def connect(target, *a, **k):
        return Broken() if "mode=ro" in str(target) and "immutable=1" not in str(target) else real(target, *a, **k)

    monkeypatch.setattr(sqlite3, "connect", connect)
    with Store.open(store, readonly=True) as db:
        assert len(db.samples()) == 24


def test_the_data_error_names_the_python_argument_and_no_linf_reads_above_eps(tmp_path, monkeypatch):
    from robustadder import evaluate
    from robustadder.errors import UserError

    monkeypatch.delenv("ROBUSTADDER_DATA", raising=False)
    _world(tmp_path, n=8)
    with pytest.raises(UserError, match=r"data=PATH in Python"):
        evaluate(str(tmp_path / "ann.pt"), "fgsm", data=tmp_path / "nowhere", n=2)
    df = evaluate(str(tmp_path / "ann.pt"), ["fgsm", "pgd:steps=2"], eps="8/255", data=tmp_path, n=8, batch_size=4,
                  grad="surrogate", store=tmp_path / "s.sqlite", progress=False)  # fmt: skip
    for s in df.attrs["summary"]:
        assert s["max_linf"] <= s["eps"] and s["mean_linf"] <= s["max_linf"]  # float32 images: x + eps rounds above
    assert df["linf"].max() > 0


def test_eval_states_its_cost_before_it_starts(tmp_path):
    _world(tmp_path)
    out = subprocess.run(_eval_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "estimated cost: " in out.stderr and "24 images" in out.stderr
    again = subprocess.run(_eval_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert "estimated cost" not in again.stderr  # done cells cost nothing


def test_planning_hashes_the_data_once(monkeypatch):
    import numpy as np

    from robustadder import engine
    from robustadder.data import ImageSet

    data = ImageSet(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.uint8), np.arange(4), "x")
    calls = []
    real = engine.hashlib.sha256
    monkeypatch.setattr(engine.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    first = engine.data_fingerprint(data)
    assert all(engine.data_fingerprint(data) == first for _ in range(100)) and len(calls) == 1


def test_a_longer_run_reuses_the_full_batches_of_a_shorter_one(tmp_path):
    """The demo's 1,000-image cells are not recomputed by a later run on more images: same rows, fewer batches."""
    import sqlite3

    _world(tmp_path)
    base = [sys.executable, "-m", "robustadder", "eval", "--model", str(tmp_path / "ann.pt"), "--attack", "pgd:steps=2",
            "--batch-size", "4", "--grad", "surrogate", "--data", str(tmp_path)]  # fmt: skip
    short = subprocess.run([*base, "--n", "10", "--store", str(tmp_path / "s.sqlite")], capture_output=True, text=True)
    assert short.returncode == 0, short.stderr[-500:]
    longer = subprocess.run([*base, "--n", "24", "--store", str(tmp_path / "s.sqlite")], capture_output=True, text=True)
    straight = subprocess.run([*base, "--n", "24", "--store", str(tmp_path / "t.sqlite")], capture_output=True, text=True)
    assert longer.returncode == 0 and straight.returncode == 0

    def rows(store):
        with sqlite3.connect(store) as conn:
            (cid,) = conn.execute("SELECT cell_id FROM cells WHERE n_samples = 24").fetchone()
            return conn.execute(
                "SELECT sample_id, label, clean_pred, adv_pred, linf, l2, batch, run_id FROM samples WHERE cell_id = ? "
                "ORDER BY sample_id",
                (cid,),
            ).fetchall()

    reused, fresh = rows(tmp_path / "s.sqlite"), rows(tmp_path / "t.sqlite")
    assert [r[:7] for r in reused] == [r[:7] for r in fresh]  # identical results
    runs = {r[0]: r[7] for r in reused}
    assert {runs[i] for i in range(8)} == {1} and {runs[i] for i in range(8, 24)} == {2}  # 2 full batches reused
