"""Issue 38's constraint: every `report`, `compare` and stored-`check` rendering of one store is byte-identical
to what the code before the redesign rendered (tests/golden/, made by tests/golden/generate.py), and rendering
computes nothing (the store already holds every cell the commands need)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
import generate  # noqa: E402 - the generator's own command table and restore step

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden_store(tmp_path_factory):
    from helpers import SHARED

    data = SHARED / "data"
    if not (data / "cifar10_test.npz").is_file():
        pytest.skip("../shared/data/cifar10_test.npz is not here")
    store = tmp_path_factory.mktemp("golden") / "golden.sqlite"
    generate.restore((GOLDEN / "store.sql").read_text(), store, data)
    return store, data


def _cells(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT cell_id, status, seconds, updated FROM cells ORDER BY cell_id").fetchall()


@pytest.mark.parametrize("name", sorted(generate.COMMANDS))
def test_rendering_from_the_golden_store_is_byte_identical(golden_store, name):
    store, data = golden_store
    before = _cells(store)
    args = generate.fill(generate.COMMANDS[name], store=str(store), data=str(data), sweep=str(GOLDEN / "sweep.toml"))
    assert generate.run(args) == (GOLDEN / name).read_text(), f"robustadder {' '.join(args)} renders differently"
    assert _cells(store) == before, "rendering computed a cell: the golden store should hold all of them"
