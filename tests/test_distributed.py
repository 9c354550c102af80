"""torchrun (gloo, 2 CPU processes): the same rows and report as one process; a killed rank resumes cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robustadder import report as rep
from robustadder.models import save_checkpoint
from robustadder.store import Store
from robustadder.sweep import load_sweep, plan_sweep

from helpers import make_tiny, wait_for_rows

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# the sweep below: 2 BN modes x 2 seeds x 4 attacks = 16 grid points, but Clean and FGSM draw no random numbers,
# so their two seeds share one cell: 2 x (1 + 1 + 2 + 2) = 12 distinct cells of 20 samples each
CELLS = 12 + 2 * 10  # grad both (default): the ANN's 10 gradient-attack cells each add two component cells
ROWS = (
    "SELECT cell_id, sample_id, label, clean_pred, adv_pred, clean_correct, adv_correct, linf, l2, batch "
    "FROM samples ORDER BY cell_id, sample_id"
)


@pytest.fixture
def setup(tmp_path):
    ann, data = make_tiny("adder", n=20)
    save_checkpoint(tmp_path / "ann.pt", ann.model)
    np.savez(tmp_path / "cifar10_test.npz", x=data.x, y=data.y.astype(np.uint8))
    sweep = tmp_path / "d.toml"
    sweep.write_text(textwrap.dedent(
        """
        name = "dist"
        n = 20
        models = [{ref = "ann.pt", label = "ANN"}]
        [settings]
        batch_size = 4
        bn = ["eval", "train"]
        seed = [0, 1]
        [[attacks]]
        name = "none"
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 3
        [[attacks]]
        name = "rfgsm"
        steps = 2
        """
    ))  # fmt: skip
    return tmp_path, sweep


def _sweep(cmd_prefix, sweep, store, data, **kw):
    return subprocess.run([*cmd_prefix, "-m", "robustadder", "sweep", str(sweep), "--store", str(store), "--data", str(data)],
                          capture_output=True, text=True, timeout=600, **kw)  # fmt: skip


def _failure(proc: subprocess.CompletedProcess) -> str:
    """What a failed torchrun job said: each rank's one-line error (buried above torchrun's own traceback)
    and the tail of the output."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    return "\n".join([*errors, proc.stderr[-1500:]])


def _rows(store: Path):
    with sqlite3.connect(store) as conn:
        return conn.execute(ROWS).fetchall()


def _report(store: Path, sweep: Path, data: Path) -> str:
    with Store.open(store, readonly=True) as db:
        return rep.render(rep.build(db, plan_sweep(load_sweep(sweep), data=data, store=db)), "csv")


def test_two_processes_write_the_single_process_rows(setup):
    tmp, sweep = setup
    single = _sweep([sys.executable], sweep, tmp / "single.sqlite", tmp)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = _sweep(TORCHRUN, sweep, tmp / "multi.sqlite", tmp)
    assert multi.returncode == 0, _failure(multi)
    a, b = _rows(tmp / "single.sqlite"), _rows(tmp / "multi.sqlite")
    assert len(a) == CELLS * 20 and a == b
    assert _report(tmp / "single.sqlite", sweep, tmp) == _report(tmp / "multi.sqlite", sweep, tmp)
    with Store.open(tmp / "multi.sqlite", readonly=True) as db:
        assert set(db.cells()["status"]) == {"done"}
        assert len(db.runs()) == 2  # one run per rank
        batches = db.samples().groupby("batch").size()
    assert (batches == CELLS * 4).all()  # every batch of every cell, each once


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_killed_rank_then_rerun_gives_identical_rows(setup):
    tmp, sweep = setup
    store = tmp / "killed.sqlite"
    # slow every batch down in the worker processes (sitecustomize runs at interpreter start-up)
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(
        """
        import time
        import robustadder.engine as engine
        _real = engine.verify_batch
        def _slow(*args, **kwargs):
            time.sleep(0.2)
            return _real(*args, **kwargs)
        engine.verify_batch = _slow
        """
    ))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    log = tmp / "killed.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([*TORCHRUN, "-m", "robustadder", "sweep", str(sweep), "--store", str(store), "--data", str(tmp)],
                                stdout=subprocess.DEVNULL, stderr=sink, env=env)  # fmt: skip
    try:
        wait_for_rows(store, 60, timeout=300, poll=0.2, proc=proc)
        workers = _children(proc.pid)
        assert workers, f"no worker left to kill (job exit code {proc.poll()}):\n{log.read_text()[-3000:]}"
    except BaseException:
        proc.kill()
        raise
    os.kill(workers[-1], signal.SIGKILL)  # one rank dies mid-sweep
    proc.wait(timeout=120)
    assert proc.returncode != 0
    partial = len(_rows(store))
    assert 0 < partial < CELLS * 20, partial
    rerun = _sweep(TORCHRUN, sweep, store, tmp)
    assert rerun.returncode == 0, _failure(rerun)
    fresh = _sweep([sys.executable], sweep, tmp / "fresh.sqlite", tmp)
    assert fresh.returncode == 0
    assert _rows(store) == _rows(tmp / "fresh.sqlite")


@pytest.mark.skipif(shutil.which("nproc") is None, reason="no nproc")
def test_eval_under_torchrun_prints_once(setup):
    tmp, _ = setup
    out = subprocess.run([*TORCHRUN, "-m", "robustadder", "eval", "--model", str(tmp / "ann.pt"), "--data", str(tmp),
                          "--samples", "20", "--batch-size", "4", "--attack", "pgd:steps=2", "--store", str(tmp / "e.sqlite"),
                          "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, _failure(out)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 reports; rank 1 stays quiet
