"""What a newcomer meets first: the CLI starts without importing torch; `--help` works everywhere."""

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


def test_the_api_functions_are_there_when_asked_for():
    import robustadder

    assert callable(robustadder.evaluate) and callable(robustadder.compare)
    from robustadder import comparison

    assert robustadder.compare is comparison.compare  # the function, whatever was imported before


def _world(tmp_path, n=24):
    from conftest import save_tiny_world

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
        if p.returncode == 2:
            assert len(err.strip().splitlines()) == 1
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert "running" not in {s for (s,) in conn.execute("SELECT status FROM cells")}
    again = subprocess.run(_eval_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-800:]


def test_any_error_inside_a_cell_marks_it_failed_with_the_reason(tmp_path, monkeypatch):
    from robustadder import evaluate
    from robustadder.attacks import ATTACKS, AttackDef
    from robustadder.store import Store

    from conftest import make_tiny

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
    from conftest import tree

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
