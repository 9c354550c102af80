"""Engine and store: inference settings, determinism, resume after kill -9, reuse, concurrency, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustadder import evaluate
from robustadder.attacks import ATTACKS, AttackDef
from robustadder.engine import BoundViolation
from robustadder.errors import UserError
from robustadder.store import Store

from helpers import REPO, make_tiny, wait_for_rows

ROWS = ["sample_id", "label", "clean_pred", "adv_pred", "clean_correct", "adv_correct", "linf", "l2"]


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["attack_name", "sample_id"])[["attack_name", *ROWS]].reset_index(drop=True)


def run(store, loaded, data, **kw):
    kw.setdefault("attacks", ["fgsm", "pgd:steps=2"])
    kw.setdefault("grad", "surrogate")  # store mechanics: one cell per attack (grad both: tests/test_compare_protocol.py)
    return evaluate(loaded, data=data, store=store, progress=False, **kw)


def test_identical_config_and_seed_give_identical_rows(tmp_path):
    loaded, data = make_tiny()
    a = run(tmp_path / "a.sqlite", loaded, data, batch_size=8)
    b = run(tmp_path / "b.sqlite", loaded, data, batch_size=8)
    pd.testing.assert_frame_equal(rows(a), rows(b))
    assert a.attrs["summary"][0]["cell_id"] == b.attrs["summary"][0]["cell_id"]
    c = run(tmp_path / "c.sqlite", loaded, data, batch_size=8, seed=1)
    assert not rows(a).equals(rows(c))  # PGD's random start follows the seed


def test_bn_eval_is_independent_of_shuffle_and_batch_size(tmp_path):
    loaded, data = make_tiny()
    base = rows(run(tmp_path / "s.sqlite", loaded, data, batch_size=8))
    for kw in ({"shuffle": True, "seed": 0}, {"batch_size": 5}, {"batch_size": 24, "shuffle": True}):
        other = rows(run(tmp_path / "s.sqlite", loaded, data, **{"batch_size": 8, **kw}))
        pd.testing.assert_frame_equal(other, base)


def test_bn_train_depends_on_batch_composition_and_restores_the_model(tmp_path):
    loaded, data = make_tiny()
    model = loaded.model
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    a = rows(run(tmp_path / "t.sqlite", loaded, data, bn="train", batch_size=8, attacks=["none"]))
    b = rows(run(tmp_path / "t.sqlite", loaded, data, bn="train", batch_size=3, attacks=["none"]))
    c = rows(run(tmp_path / "t.sqlite", loaded, data, bn="train", batch_size=8, shuffle=True, attacks=["none"]))
    assert not a["clean_pred"].equals(b["clean_pred"]) or not a["clean_pred"].equals(c["clean_pred"])
    assert not model.training and not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(stats[k], after[k]) for k in stats)  # running statistics untouched


def test_settings_are_recorded_with_every_result(tmp_path):
    loaded, data = make_tiny()
    out = run(tmp_path / "r.sqlite", loaded, data, attacks=["pgd:steps=1"], bn="train", grad="exact", seed=3, batch_size=6)
    with Store.open(tmp_path / "r.sqlite", readonly=True) as db:
        cfg = db.cells()["config"].iloc[0]
        runs = db.runs()
    assert cfg["settings"] == {"batch_size": 6, "backend": "cpu", "device": "cpu", "dtype": "float32", "bn": "train",
                               "shuffle": False, "seed": 3, "grad": "exact"}  # fmt: skip
    assert cfg["attack"]["params"]["steps"] == 1 and cfg["model"]["weights_sha256"] == loaded.weights_sha256
    assert {"torch", "torchattacks", "robustadder"} <= set(runs["versions"].iloc[0]) and runs["ended"].notna().all()
    assert out.attrs["settings"]["grad"] == "exact"


def test_grad_mode_changes_white_box_results(tmp_path):
    loaded, data = make_tiny(n=24)
    s = run(tmp_path / "g.sqlite", loaded, data, attacks=["pgd:steps=3"], grad="surrogate")
    e = run(tmp_path / "g.sqlite", loaded, data, attacks=["pgd:steps=3"], grad="exact")
    assert s.attrs["summary"][0]["cell_id"] != e.attrs["summary"][0]["cell_id"]
    assert not np.allclose(s["linf"].to_numpy(), e["linf"].to_numpy()) or not s["adv_pred"].equals(e["adv_pred"])


def test_a_cell_of_another_engine_is_recomputed_not_reused(tmp_path, monkeypatch):
    """A code change that moves per-sample results (e.g. a kernel's rounding) bumps ENGINE_VERSION: the store's
    cells of the old engine must not answer for the new code, so the same configuration gets a new cell."""
    import robustadder.engine as engine

    loaded, data = make_tiny()
    old = run(tmp_path / "e.sqlite", loaded, data)
    monkeypatch.setattr(engine, "ENGINE_VERSION", engine.ENGINE_VERSION + 1)
    new = run(tmp_path / "e.sqlite", loaded, data)
    assert [s["reused"] for s in new.attrs["summary"]] == [False, False]
    assert {s["cell_id"] for s in old.attrs["summary"]}.isdisjoint(s["cell_id"] for s in new.attrs["summary"])


def test_finished_cell_is_reused_and_force_recomputes(tmp_path):
    loaded, data = make_tiny()
    first = run(tmp_path / "f.sqlite", loaded, data)
    again = run(tmp_path / "f.sqlite", loaded, data)
    assert [s["reused"] for s in again.attrs["summary"]] == [True, True]
    pd.testing.assert_frame_equal(rows(first), rows(again))
    forced = run(tmp_path / "f.sqlite", loaded, data, force=True)
    assert [s["reused"] for s in forced.attrs["summary"]] == [False, False]
    with Store.open(tmp_path / "f.sqlite", readonly=True) as db:
        assert len(db.samples()) == 2 * len(data)  # never duplicated


def test_bound_violation_fails_the_cell_and_stores_nothing(tmp_path, monkeypatch):
    loaded, data = make_tiny()
    cheat = AttackDef("cheat", "returns a too-large perturbation", ("Linf",), {},
                      lambda cfg, ctx: (lambda m, x, y, ids, seed: (x + 0.1).clamp(0, 1)), lambda c: "Cheat")  # fmt: skip
    monkeypatch.setitem(ATTACKS, "cheat", cheat)
    with pytest.raises(BoundViolation, match="exceeded its Linf budget"):
        run(tmp_path / "v.sqlite", loaded, data, attacks=["cheat"])
    with Store.open(tmp_path / "v.sqlite", readonly=True) as db:
        cells = db.cells()
        assert list(cells["status"]) == ["failed"] and "exceeded" in cells["error"].iloc[0]
        assert len(db.samples()) == 0


def test_partial_cell_resumes_without_duplicates(tmp_path, monkeypatch):
    loaded, data = make_tiny()
    import robustadder.engine as engine

    calls = {"n": 0}
    real = engine.verify_batch

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the third batch
        return real(*a, **k)

    monkeypatch.setattr(engine, "verify_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "p.sqlite", loaded, data, attacks=["pgd:steps=1"], batch_size=5)
    with Store.open(tmp_path / "p.sqlite", readonly=True) as db:
        # never left 'running' (issue 37): marked interrupted, its finished batches kept for the rerun
        cells = db.cells()
        assert len(db.samples()) == 10 and list(cells["status"]) == ["failed"]
        assert "interrupted by SIGINT" in cells["error"].iloc[0]
    monkeypatch.setattr(engine, "verify_batch", real)
    resumed = run(tmp_path / "p.sqlite", loaded, data, attacks=["pgd:steps=1"], batch_size=5)
    clean = run(tmp_path / "q.sqlite", loaded, data, attacks=["pgd:steps=1"], batch_size=5)
    pd.testing.assert_frame_equal(rows(resumed), rows(clean))


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from helpers import make_tiny
    import robustadder.engine as engine
    from robustadder import evaluate
    real = engine.verify_batch
    def slow(*a, **k):
        time.sleep(0.5)
        return real(*a, **k)
    engine.verify_batch = slow
    loaded, data = make_tiny(n=24)
    evaluate(loaded, ["pgd:steps=2"], data=data, store={store!r}, batch_size=4, progress=False)
    """
)


def test_kill_9_mid_cell_then_rerun_gives_the_uninterrupted_rows(tmp_path):
    store = tmp_path / "k.sqlite"
    script = KILL_SCRIPT.format(tests=str(REPO / "tests"), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", script])
    n = wait_for_rows(store, 8, timeout=120, poll=0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 8 <= n < 24, n
    loaded, data = make_tiny(n=24)
    resumed = run(store, loaded, data, attacks=["pgd:steps=2"], batch_size=4)
    fresh = run(tmp_path / "fresh.sqlite", loaded, data, attacks=["pgd:steps=2"], batch_size=4)
    pd.testing.assert_frame_equal(rows(resumed), rows(fresh))
    with Store.open(store, readonly=True) as db:
        assert len(db.samples()) == 24 and list(db.cells()["status"]) == ["done"]


def test_concurrent_reader_never_sees_half_a_batch(tmp_path):
    loaded, data = make_tiny(n=24)
    store = tmp_path / "c.sqlite"
    Store.open(store).close()
    seen: list[int] = []
    stop = threading.Event()

    def reader():
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        while not stop.is_set():
            try:
                seen.append(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
            except sqlite3.OperationalError:
                pass
        conn.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        run(store, loaded, data, attacks=["pgd:steps=1"], batch_size=6)
    finally:
        stop.set()
        t.join()
    assert seen and all(count % 6 == 0 for count in seen)


def test_store_opened_while_another_process_creates_it(tmp_path):
    """torchrun ranks open a new store at the same moment: the one that comes second waits for the
    first to finish creating it (SQLite refuses the switch to WAL at once, without waiting, while another
    connection writes), then uses it."""
    path = tmp_path / "shared.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other rank, mid-creation
    timer = threading.Timer(0.5, other.execute, ("COMMIT",))
    timer.start()
    try:
        with Store.open(path) as db:
            assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            db.start_run("test", "cpu")
    finally:
        timer.join()
        other.close()
    with Store.open(path, readonly=True) as db:
        assert len(db.runs()) == 1


# -- bad input: one line, exit 2, store untouched -------------------------------------------------------
def test_store_that_is_not_sqlite(tmp_path):
    loaded, data = make_tiny()
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are my notes, not a database\n" * 20)
    before = bad.read_bytes()
    with pytest.raises(UserError, match="not a robustadder results file"):
        run(bad, loaded, data)
    assert bad.read_bytes() == before


def test_read_only_store(tmp_path):
    loaded, data = make_tiny()
    store = tmp_path / "ro.sqlite"
    run(store, loaded, data, attacks=["none"])
    before = store.read_bytes()
    store.chmod(0o444)
    immutable = False
    if os.access(store, os.W_OK):  # root ignores permissions; the immutable attribute binds root too
        immutable = subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode == 0
    try:
        if os.access(store, os.W_OK):
            pytest.skip("cannot make a file read-only for this user")
        with pytest.raises(UserError, match="read-only"):
            run(store, loaded, data, attacks=["fgsm"])
        assert store.read_bytes() == before
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(store)], check=True)
        store.chmod(0o644)


def test_other_sqlite_database(tmp_path):
    loaded, data = make_tiny()
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(UserError, match="something else"):
        run(other, loaded, data)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--eps", "-8/255"], "must not be negative"),
        (["--eps", "nan"], "finite"),
        (["--eps", "8"], "absurd for Linf on [0, 1] images (at most 1); did you mean 8/255?"),
        (["--eps", "300/255"], "absurd for Linf on [0, 1] images (at most 1)\n"),  # not 'did you mean 300/255/255?'
        (["--eps", "eight"], "must be a number"),
        (["--attack", "pgd", "--steps", "0"], "steps must be >= 1"),
        (["--attack", "deepfool"], "unknown attack"),
        (["--attack", "fgsm", "--steps", "3"], "applies to none of the attacks"),
        (["--attack", "pgd:stpes=3"], "unknown option 'stpes'"),
        (["--attack", "pgd", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--attack", "autoattack", "--device", "cuda"], "no CUDA GPU"),
        (["--attack", "pgd", "--backend", "triton", "--device", "cpu"], "cannot run on cpu"),
        (["--attack", "transfer", "--source", "{gray}"], "takes inputs of shape (1, 32, 32)"),
        (["--attack", "transfer", "--source", "nowhere.pt"], "checkpoint not found"),
        (["--attack", "pgd", "--store", "{notdb}"], "not a robustadder results file"),
    ],
)
def test_cli_bad_input(tmp_path, monkeypatch, shared_data, thirdparty, args, match):
    from click.testing import CliRunner

    from robustadder.cli import main
    from robustadder.models import create_model, save_checkpoint

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.chdir(tmp_path)
    gray = create_model("resnet20_conv")
    gray.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1, bias=False)
    save_checkpoint(tmp_path / "gray.pt", gray)
    notdb = tmp_path / "notdb.sqlite"
    notdb.write_text("x" * 100)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    args = [a.format(gray=tmp_path / "gray.pt", notdb=notdb) for a in args]
    result = CliRunner().invoke(main, ["eval", "--model", str(thirdparty), "--data", str(shared_data), "--n", "4", *args])
    assert result.exit_code == 2, result.output
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # no store created, nothing changed
    assert not Path(tmp_path / "robustadder.sqlite").exists()


def test_transfer_cell_records_the_source_weights(tmp_path):
    from robustadder.models import save_checkpoint

    target, data = make_tiny(seed=0)
    source, _ = make_tiny("conv", seed=1)
    save_checkpoint(tmp_path / "src.pt", source.model)
    out = run(tmp_path / "tr.sqlite", target, data, attacks=[f"transfer:source={tmp_path / 'src.pt'},steps=2"])
    summary = out.attrs["summary"][0]
    assert summary["params"]["source_sha256"] == source.weights_sha256
    assert summary["attack"].startswith("Transfer-PGD-2") and (out["linf"] <= 8 / 255 + 1e-6).all()
