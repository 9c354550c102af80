"""Regenerate the golden outputs of issue 38: what `report`, `compare` and the stored `check` reports render
from one store, captured before the redesign so that the redesign can be shown to change no byte.

    .venv/bin/python tests/golden/generate.py --data ../shared/data

Runs a small sweep, two `compare`s and one `check` on the zoo's ann20 / cnn20 (and their AWN variants for the
groups) over the first 12 CIFAR-10 test images with cheap attacks, dumps the store as SQL text (store.sql,
machine-local paths replaced) and writes every rendering beside it (COMMANDS below: the file name and the
arguments after `robustadder`). tests/test_golden_outputs.py loads store.sql and asserts the same bytes.
Run it again only when an output is meant to change, and say why in the commit.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 12
DATA_PLACEHOLDER = "DATA"  # the data directory's absolute path in the dumped store
GOLDEN_PLACEHOLDER = "GOLDEN"  # this folder's (the sweep file's)

#: file name → CLI arguments (``{store}``, ``{data}``, ``{sweep}`` filled in); every one reads the store only
#: or finds every cell it needs there
COMPARE = ["compare", "ann20", "cnn20", "--n", str(N), "--eps", "1/255,8/255", "--attack", "fgsm",
           "--attack", "pgd:steps=2", "--data", "{data}", "--store", "{store}"]  # fmt: skip
GROUPS = ["compare", "--group", "ANN=ann20,ann20-awn", "--group", "CNN=cnn20,cnn20-awn", "--minimal", "fmn:steps=10",
          "--attack", "pgd:steps=2", "--n", str(N), "--eps", "1/255,2/255", "--data", "{data}", "--store", "{store}"]  # fmt: skip
REPORT = ["report", "--sweep", "{sweep}", "--store", "{store}"]
COMMANDS: dict[str, list[str]] = {
    "report.md": [*REPORT, "--format", "md", "--no-intervals"],  # --intervals is the default since 2026-12-07
    "report-intervals.md": [*REPORT, "--format", "md", "--intervals"],
    "report.csv": [*REPORT, "--format", "csv"],
    "report.tex": [*REPORT, "--format", "latex", "--no-intervals"],
    "report-wide-intervals.tex": [*REPORT, "--format", "latex", "--wide", "--intervals"],
    "report-checks.md": [*REPORT, "--format", "md", "--checks", "--no-intervals"],
    "report-checks.html": [*REPORT, "--format", "html", "--checks", "--intervals"],
    "compare.txt": COMPARE,
    "compare.md": [*COMPARE, "--format", "md"],
    "compare.tex": [*COMPARE, "--format", "latex"],
    "compare.csv": [*COMPARE, "--format", "csv"],
    "compare.html": [*COMPARE, "--format", "html"],
    "compare.json": [*COMPARE, "--format", "json"],
    "groups.txt": GROUPS,
    "groups.md": [*GROUPS, "--format", "md"],
    "groups.json": [*GROUPS, "--format", "json"],
}
CHECK = ["check", "--model", "cnn20", "--n", str(N), "--steps", "5", "--queries", "50", "--data", "{data}",
         "--store", "{store}", "--json"]  # fmt: skip


def fill(args: list[str], **values: str) -> list[str]:
    return [a.format(**values) for a in args]


def run(args: list[str]) -> str:
    from click.testing import CliRunner

    from robustadder.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"robustadder {' '.join(args)} failed ({result.exit_code}): {result.output[-2000:]}")
    return result.stdout


def restore(sql: str, store: Path, data: Path) -> None:
    """A store from the dump, the placeholders back to this machine's data directory and this folder."""
    sql = sql.replace(DATA_PLACEHOLDER + "/", str(data.resolve()) + "/").replace(GOLDEN_PLACEHOLDER + "/", str(HERE) + "/")
    with sqlite3.connect(store) as conn:
        conn.executescript(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the directory of cifar10_test.npz")
    args = parser.parse_args()
    data = args.data.resolve()
    sweep = HERE / "sweep.toml"
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "golden.sqlite"
        values = {"store": str(store), "data": str(data), "sweep": str(sweep)}
        run(["sweep", str(sweep), "--store", str(store), "--data", str(data)])
        run(fill(CHECK, **values))
        for command in COMMANDS.values():
            run(fill(command, **values))  # computes what the store lacks
        with sqlite3.connect(store) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sql = "\n".join(conn.iterdump()) + "\n"
        sql = sql.replace(str(data) + "/", DATA_PLACEHOLDER + "/").replace(str(HERE) + "/", GOLDEN_PLACEHOLDER + "/")
        for local in (str(data), str(HERE), tmp):
            if local in sql:
                raise SystemExit(f"the machine-local path {local} is still in the dump")
        (HERE / "store.sql").write_text(sql)
        # the goldens are rendered from the restored dump, exactly as the test renders them
        restored = Path(tmp) / "restored.sqlite"
        restore(sql, restored, data)
        values["store"] = str(restored)
        for name, command in COMMANDS.items():
            (HERE / name).write_text(run(fill(command, **values)))
            print("wrote", name, file=sys.stderr)


if __name__ == "__main__":
    main()
