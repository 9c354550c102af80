"""Results store: one SQLite file (standard library) holding runs, cells and per-sample rows.

* ``runs``: one row per process that wrote results — library versions, device, host, start/end.
* ``cells``: one row per (model, attack + parameters, eps, settings, sample ids), keyed by a stable
  hash of that configuration; the full configuration as JSON, the weights sha256, status
  (``running`` / ``done`` / ``failed``), sample count, compute seconds.
* ``samples``: one row per (cell, sample id): label, clean and adversarial prediction and correctness,
  L∞ and L2 norm of the perturbation, the batch it was computed in and that batch's seconds.

Every batch is written in one transaction, so a reader (WAL mode) never sees half a batch and an
interrupted run leaves only whole batches; ``INSERT`` on the (cell, sample) primary key makes a rerun
unable to duplicate rows. Errors a user can cause (not a SQLite file, read-only, newer schema) are
reported before anything is written.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .errors import UserError, interruption
from .fileio import note_input

SCHEMA_VERSION = 3  # 2: gradient-masking check reports (table checks); 3: sweep grids and models (tables grid, models)
DEFAULT_STORE = "robustadder.sqlite"
SAMPLE_COLUMNS = (
    "sample_id",
    "label",
    "clean_pred",
    "adv_pred",
    "clean_correct",
    "adv_correct",
    "linf",
    "l2",
    "batch",
    "batch_seconds",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    ended REAL,
    command TEXT,
    versions TEXT NOT NULL,
    device TEXT,
    host TEXT,
    status TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    model TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    attack TEXT NOT NULL,
    eps REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    n_samples INTEGER NOT NULL,
    seconds REAL NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    run_id INTEGER REFERENCES runs(run_id)
);
CREATE TABLE IF NOT EXISTS samples (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    sample_id INTEGER NOT NULL,
    label INTEGER NOT NULL,
    clean_pred INTEGER NOT NULL,
    adv_pred INTEGER NOT NULL,
    clean_correct INTEGER NOT NULL,
    adv_correct INTEGER NOT NULL,
    linf REAL NOT NULL,
    l2 REAL NOT NULL,
    batch INTEGER NOT NULL,
    batch_seconds REAL NOT NULL,
    run_id INTEGER REFERENCES runs(run_id),
    PRIMARY KEY (cell_id, sample_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    weights_sha256 TEXT PRIMARY KEY,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_models (
    sweep TEXT NOT NULL,
    label TEXT NOT NULL,
    ref TEXT NOT NULL,
    weights_sha256 TEXT,
    reason TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (sweep, label)
);
CREATE TABLE IF NOT EXISTS grid (
    sweep TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    settings TEXT NOT NULL,
    n INTEGER NOT NULL,
    cell_id TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (sweep, model, attack, settings, n)
);
CREATE TABLE IF NOT EXISTS checks (
    check_id INTEGER PRIMARY KEY AUTOINCREMENT,
    weights_sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    report TEXT NOT NULL,
    created REAL NOT NULL,
    run_id INTEGER REFERENCES runs(run_id)
);
"""


def default_store_path() -> Path:
    """``$ROBUSTADDER_STORE``, else ``robustadder.sqlite`` in the current directory."""
    return Path(os.environ.get("ROBUSTADDER_STORE") or DEFAULT_STORE)


def library_versions() -> dict[str, str]:
    """Versions of everything that can change a number, recorded with every run."""
    import numpy
    import torch

    versions = {"robustadder": __version__, "python": sys.version.split()[0], "torch": torch.__version__}
    versions["numpy"] = numpy.__version__
    for name in ("torchattacks", "pyautoattack", "autoattack", "triton"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            continue
    return versions


def _loads(text: str, store: Path, what: str) -> Any:
    """JSON stored by this module; a hand-edited value is a damaged store, said in one line."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise UserError(f"store {store} is damaged: {what} is not valid JSON") from None


@dataclass
class CellRecord:
    """A cell as stored."""

    cell_id: str
    config: dict[str, Any]
    status: str
    n_samples: int
    seconds: float
    error: str | None


def sqlite_uri(path: str | os.PathLike, mode: str) -> str:
    """An SQLite ``file:`` URI that addresses exactly ``path``, whatever characters its name holds.

    SQLite reads ``?`` as the start of the query, ``#`` as a fragment and ``%xx`` as an escape: a path
    passed in unquoted once put rows into another existing store (``a?b.sqlite`` opened ``a``), and a
    read-only open created a stray file. Every character outside the unreserved set is percent-encoded.
    """
    return f"file:{urllib.parse.quote(str(Path(path).resolve()), safe='/')}?mode={mode}"


class Store:
    """Connection to one results file. Use :meth:`open` (validates) rather than the constructor."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.run_id: int | None = None

    # -- opening ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, readonly: bool = False) -> Store:
        """Open (creating when allowed) and validate a store; every failure is a one-line UserError."""
        path = Path(path) if path else default_store_path()
        if path.exists() and not path.is_file():
            raise UserError(f"store {path} is not a file")
        if readonly:
            if not path.is_file():
                raise UserError(f"store {path} does not exist; run 'robustadder eval' or 'sweep' first, or pass --store")
            uri = sqlite_uri(path, "ro")
        else:
            if path.exists() and not os.access(path, os.W_OK):
                raise UserError(f"store {path} is read-only; pass --store with a writable file")
            if not path.exists() and not os.access(path.parent.resolve() if str(path.parent) else Path("."), os.W_OK):
                raise UserError(f"cannot create store {path}: directory {path.parent} is not writable")
            uri = sqlite_uri(path, "rwc")
        conn = None
        note_input(path, "a results store")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(path, conn)
            if readonly:
                try:
                    store._validate()
                except sqlite3.OperationalError:
                    # read-only media: a WAL store needs its -shm file, which cannot be created there;
                    # nothing can write such a file, so read it as immutable (no locks, no -shm)
                    conn.close()
                    conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
                    store = cls(path, conn)
                    store._validate()
            else:
                # Several processes (torchrun ranks) may open a new file at once: checking and creating
                # the schema in one write transaction serializes them, so exactly one creates it.
                with store.transaction():
                    version = store._validate()
                    # every table IF NOT EXISTS: creates a new file, migrates an older schema (migrations add
                    # tables) and restores an auxiliary table someone dropped (before, a check computed its
                    # whole report and then lost it on the missing table)
                    for stmt in filter(str.strip, _SCHEMA.split(";")):  # executescript would COMMIT
                        conn.execute(stmt)
                    if "status" not in store._columns("runs"):  # how a run ended (interrupted, ...); NULL: normally
                        conn.execute("ALTER TABLE runs ADD COLUMN status TEXT")
                    if version < SCHEMA_VERSION:
                        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                store._use_wal()
        except (UserError, sqlite3.DatabaseError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, UserError):
                raise
            if "full" in str(exc).lower():  # SQLITE_FULL: the store may be fine; deleting it would lose results
                raise UserError(f"store {path}: the disk is full ({exc}); free some space and rerun, the store is kept") from None
            raise UserError(f"store {path} is not a robustadder results file ({exc}); pass another --store") from None
        return store

    def _validate(self) -> int:
        """The file's schema version (0 for an empty file); UserError for a foreign or newer file."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        core = {"meta", "cells", "samples", "runs"}
        if "meta" in tables and not core <= tables:
            missing = ", ".join(sorted(core - tables))
            raise UserError(f"store {self.path} is damaged: table(s) {missing} missing; its results cannot be read")
        if not core <= tables:
            raise UserError(f"store {self.path} is an SQLite file of something else (tables {sorted(tables)})")
        raw = dict(self.conn.execute("SELECT key, value FROM meta").fetchall()).get("schema_version", 0)
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise UserError(f"store {self.path} is damaged: schema version {raw!r} is not a number") from None
        if version > SCHEMA_VERSION:
            raise UserError(f"store {self.path} has schema {version}, newer than this robustadder; upgrade it")
        return version

    def _use_wal(self, timeout: float = 60.0) -> None:
        """Switch to WAL, in which readers never block the writer.

        The switch needs the file to itself for a moment and SQLite refuses it at once (no busy wait)
        while another process writes, so retry; a store left in rollback-journal mode is still correct,
        only less concurrent.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def close(self, status: str | None = None) -> None:
        """End the run (if one was started) and close the connection.

        ``status`` says how the run ended when not normally; closed while an interruption (Ctrl-C, SIGTERM,
        SIGHUP) unwinds the stack, the run is recorded as ``interrupted by <signal>``.
        """
        pending = sys.exc_info()[1]
        if status is None and isinstance(pending, KeyboardInterrupt):
            status = f"interrupted by {interruption(pending)[0]}"
        if self.run_id is not None:
            with self.transaction():
                if status is not None and "status" in self._columns("runs"):
                    self.conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, self.run_id))
                self.conn.execute("UPDATE runs SET ended = ? WHERE run_id = ?", (time.time(), self.run_id))
            self.run_id = None
        self.conn.close()

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transaction(self):
        """``with store.transaction():`` — BEGIN IMMEDIATE … COMMIT, ROLLBACK on any exception."""
        conn = self.conn

        class _Tx:
            def __enter__(self_inner):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                conn.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # -- writing ----------------------------------------------------------------------------------------
    def start_run(self, command: str, device: str) -> int:
        """Record this process as a run; returns its id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started, command, versions, device, host) VALUES (?, ?, ?, ?, ?)",
                (time.time(), command, json.dumps(library_versions()), device, socket.gethostname() or platform.node()),
            )
        self.run_id = int(cur.lastrowid)
        return self.run_id

    def begin_cell(self, cell_id: str, config: dict[str, Any], n_samples: int, *, force: bool = False) -> CellRecord:
        """Create the cell (or reset it with ``force``); returns what is stored."""
        now = time.time()
        with self.transaction():
            if force:
                self.conn.execute("DELETE FROM samples WHERE cell_id = ?", (cell_id,))
                self.conn.execute("DELETE FROM cells WHERE cell_id = ?", (cell_id,))
            row = self.conn.execute("SELECT status FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO cells (cell_id, config, model, weights_sha256, attack, eps, status, n_samples,"
                    " created, updated, run_id) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                    (cell_id, json.dumps(config, sort_keys=True), config["model"]["name"],
                     config["model"]["weights_sha256"], config["attack"]["name"], config["attack"]["eps"],
                     n_samples, now, now, self.run_id),
                )  # fmt: skip
            elif row[0] == "failed":
                self.conn.execute(
                    "UPDATE cells SET status = 'running', error = NULL, updated = ? WHERE cell_id = ?", (now, cell_id)
                )
        return self.cell(cell_id)  # type: ignore[return-value]

    def add_batch(self, cell_id: str, rows: Sequence[Sequence[Any]], seconds: float) -> None:
        """Write one batch of per-sample rows (ordered as SAMPLE_COLUMNS) in one transaction.

        Two processes working on the same cell compute the same batches (a batch is fixed by the cell's
        configuration and results are deterministic): a batch another process already wrote is left as
        it is, not duplicated, and its time is not counted twice.
        """
        with self.transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                f"INSERT OR IGNORE INTO samples (cell_id, {', '.join(SAMPLE_COLUMNS)}, run_id) "
                f"VALUES (?, {', '.join('?' * len(SAMPLE_COLUMNS))}, ?)",
                [(cell_id, *r, self.run_id) for r in rows],
            )
            if self.conn.total_changes > before:
                self.conn.execute(
                    "UPDATE cells SET seconds = seconds + ?, updated = ? WHERE cell_id = ?", (seconds, time.time(), cell_id)
                )

    def copy_batches(self, source: str, cell_id: str, batches: int) -> int:
        """Copy the rows of ``source``'s batches ``0 .. batches-1`` into ``cell_id`` (one transaction).

        For a cell whose first batches are exactly another cell's (the same configuration on a prefix of
        the samples): those rows are that computation, already done. Their measured seconds travel with
        them. Returns the number of rows copied.
        """
        cols = ", ".join(SAMPLE_COLUMNS)
        with self.transaction():
            before = self.conn.total_changes
            self.conn.execute(
                f"INSERT OR IGNORE INTO samples (cell_id, {cols}, run_id) SELECT ?, {cols}, run_id FROM samples "
                "WHERE cell_id = ? AND batch < ?",
                (cell_id, source, batches),
            )
            copied = self.conn.total_changes - before
            seconds = self.conn.execute(
                "SELECT coalesce(sum(s), 0) FROM (SELECT max(batch_seconds) AS s FROM samples WHERE cell_id = ? AND batch < ? "
                "GROUP BY batch)",
                (source, batches),
            ).fetchone()[0]
            self.conn.execute(
                "UPDATE cells SET seconds = seconds + ?, updated = ? WHERE cell_id = ?", (seconds, time.time(), cell_id)
            )
        return copied

    def finish_cell(self, cell_id: str, *, error: str | None = None) -> None:
        """Mark a cell done (all rows present) or failed (with the reason)."""
        with self.transaction():
            if error is None:
                n = self.conn.execute("SELECT count(*) FROM samples WHERE cell_id = ?", (cell_id,)).fetchone()[0]
                expected = self.conn.execute("SELECT n_samples FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()[0]
                if n != expected:
                    raise RuntimeError(f"cell {cell_id}: {n} rows stored, {expected} expected")
            self.conn.execute(
                "UPDATE cells SET status = ?, error = ?, updated = ? WHERE cell_id = ?",
                ("failed" if error else "done", error, time.time(), cell_id),
            )

    def add_check(self, weights_sha256: str, model: str, report: dict[str, Any]) -> None:
        """Record a gradient-masking check report (the latest per weights is what reports show)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO checks (weights_sha256, model, report, created, run_id) VALUES (?, ?, ?, ?, ?)",
                (weights_sha256, model, json.dumps(report), time.time(), self.run_id),
            )

    def checks(self) -> list[dict[str, Any]]:
        """Latest check report per (weights, model), oldest first."""
        if not self._has_table("checks"):
            return []
        rows = self.conn.execute(
            "SELECT report FROM checks WHERE check_id IN (SELECT max(check_id) FROM checks GROUP BY weights_sha256, model) "
            "ORDER BY check_id"
        ).fetchall()
        return [_loads(r[0], self.path, "a check report") for r in rows]

    def record_sweep(
        self,
        sweep: str,
        models: Sequence[tuple[str, str, str | None, str | None]],
        infos: dict[str, dict[str, Any]],
        points: Sequence[tuple[str, str, str, int, str]],
        source: tuple[str, str] | None = None,
    ) -> None:
        """Record what a sweep's grid is made of, so that reports need neither weights nor data.

        ``models``: (label, ref, weights sha256 or None, skip reason or None); ``infos``: per weights
        sha256, what reports say of a model (architecture, variant, operation counts); ``points``:
        (model label, attack key, settings key, n, cell id) per grid point; ``source``: the sweep file's name and
        text, so that ``report`` can render the sweep without it. A rerun of the sweep replaces its records (the
        newest grid wins, e.g. after a checkpoint was retrained).
        """
        now = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO sweep_models (sweep, label, ref, weights_sha256, reason, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(sweep, label, ref, sha, reason, now) for label, ref, sha, reason in models],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO models (weights_sha256, info) VALUES (?, ?)",
                [(sha, json.dumps(info, sort_keys=True)) for sha, info in infos.items()],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO grid (sweep, model, attack, settings, n, cell_id, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(sweep, *point, now) for point in points],
            )
            if source is not None:
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                  (f"sweep:{sweep}", json.dumps({"file": source[0], "text": source[1]})))  # fmt: skip

    # -- reading ----------------------------------------------------------------------------------------
    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def sweep_records(self, sweep: str) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], pd.DataFrame]:
        """What :meth:`record_sweep` stored for a sweep: its models, their infos, its grid points."""
        if not self._has_table("grid"):  # a store of schema 2 (opened read-only, not migrated)
            return (
                pd.DataFrame(columns=["label", "ref", "weights_sha256", "reason"]),
                {},
                pd.DataFrame(columns=["model", "attack", "settings", "n", "cell_id"]),
            )
        models = pd.read_sql_query(
            "SELECT label, ref, weights_sha256, reason FROM sweep_models WHERE sweep = ?", self.conn, params=(sweep,)
        )
        shas = [s for s in models["weights_sha256"] if s]
        infos = {
            sha: _loads(info, self.path, f"the record of model {sha[:12]}")
            for sha, info in self.conn.execute(
                f"SELECT weights_sha256, info FROM models WHERE weights_sha256 IN ({', '.join('?' * len(shas))})", shas
            )
        }
        grid = pd.read_sql_query(
            "SELECT model, attack, settings, n, cell_id FROM grid WHERE sweep = ?", self.conn, params=(sweep,)
        )
        return models, infos, grid

    def model_info(self, weights_sha256: str) -> dict[str, Any] | None:
        """What a sweep recorded of a model (architecture, variant, operation counts), or None."""
        if not self._has_table("models"):
            return None
        row = self.conn.execute("SELECT info FROM models WHERE weights_sha256 = ?", (weights_sha256,)).fetchone()
        return None if row is None else _loads(row[0], self.path, f"the record of model {weights_sha256[:12]}")

    def sweeps(self) -> list[str]:
        """The names of the sweeps whose grids the store records, in the order they were first recorded."""
        if not self._has_table("grid"):
            return []
        rows = self.conn.execute("SELECT sweep FROM sweep_models GROUP BY sweep ORDER BY MIN(updated), sweep").fetchall()
        return [r[0] for r in rows]

    def sweep_source(self, sweep: str) -> tuple[str, str] | None:
        """The file name and text of a sweep as its last run recorded them (None for stores from before)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"sweep:{sweep}",)).fetchone()
        if row is None:
            return None
        value = _loads(row[0], self.path, f"the record of sweep {sweep}")
        return str(value["file"]), str(value["text"])

    def eval_cells(self) -> pd.DataFrame:
        """The cells ``eval`` computed that no sweep's grid names, the per-gradient parts of combined cells left out."""
        cells = self.cells()
        gridded = {r[0] for r in self.conn.execute("SELECT cell_id FROM grid")} if self._has_table("grid") else set()
        parts = {cid for config in cells["config"] for cid in (config.get("components") or {}).values()}
        by_eval = {r[0] for r in self.conn.execute(
            "SELECT c.cell_id FROM cells c JOIN runs r ON c.run_id = r.run_id WHERE r.command GLOB 'evaluate*'")}  # fmt: skip
        keep = cells["cell_id"].isin(by_eval - gridded - parts)
        return cells[keep].reset_index(drop=True)

    def cell(self, cell_id: str) -> CellRecord | None:
        """One cell, or None."""
        row = self.conn.execute(
            "SELECT cell_id, config, status, n_samples, seconds, error FROM cells WHERE cell_id = ?", (cell_id,)
        ).fetchone()
        if row is None:
            return None
        return CellRecord(row[0], _loads(row[1], self.path, f"the config of cell {row[0]}"), row[2], row[3], row[4], row[5])

    def batch_times(self, cell_id: str) -> list[tuple[int, float]]:
        """(samples, seconds) of each stored batch of a cell, in batch order.

        What a resumed cell's remaining cost is estimated from: its own batches ran on this model, attack
        and data, which no short calibration of an adaptive attack can match.
        """
        rows = self.conn.execute(
            "SELECT COUNT(*), MAX(batch_seconds) FROM samples WHERE cell_id = ? GROUP BY batch ORDER BY batch", (cell_id,)
        )
        return [(int(n), float(s)) for n, s in rows]

    def done_sample_ids(self, cell_id: str) -> set[int]:
        """Sample ids already stored for a cell."""
        return {r[0] for r in self.conn.execute("SELECT sample_id FROM samples WHERE cell_id = ?", (cell_id,))}

    def samples(self, cell_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Per-sample rows (all cells, or the given ones), with the cell id."""
        cols = ", ".join(("cell_id", *SAMPLE_COLUMNS))
        if cell_ids is None:
            query, args = f"SELECT {cols} FROM samples ORDER BY cell_id, sample_id", ()
        else:
            ids = list(cell_ids)
            query = f"SELECT {cols} FROM samples WHERE cell_id IN ({', '.join('?' * len(ids))}) ORDER BY cell_id, sample_id"
            args = tuple(ids)
        frame = pd.read_sql_query(query, self.conn, params=args)
        for col in ("clean_correct", "adv_correct"):
            frame[col] = frame[col].astype(bool)
        return frame

    def cells(self) -> pd.DataFrame:
        """All cells with their configuration (parsed) and status."""
        frame = pd.read_sql_query(
            "SELECT cell_id, config, model, weights_sha256, attack, eps, status, n_samples, seconds, error, "
            "created, updated FROM cells ORDER BY created",
            self.conn,
        )
        frame["config"] = [
            _loads(c, self.path, f"the config of cell {i}") for c, i in zip(frame["config"], frame["cell_id"], strict=True)
        ]
        return frame

    def runs(self) -> pd.DataFrame:
        """All runs, versions parsed."""
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self.conn)
        frame["versions"] = [_loads(v, self.path, "a run's versions") for v in frame["versions"]]
        return frame
