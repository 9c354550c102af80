"""Calibration of the minimal-perturbation curve against AutoAttack, on the pair whose AutoAttack cells are committed.

Issue 36 item 6: the class-level protocol reads robustness from FMN (enveloped with PGD) instead of AutoAttack at
every eps; this says how far that curve lies from what PGD + AutoAttack measured on the same images.

    ROBUSTADDER_DATA=../shared/data python scripts/fmn_calibration.py --compare reports/compare-ann20-vs-cnn20.json \
        --store reports/class-answer.sqlite

For each model of the committed ``compare --json`` (same first-N images, checked by the data fingerprint) and each of
its budgets: robust accuracy from FMN's distances alone, from the envelope with the fixed-eps attacks of the class
protocol (``--attack``, default PGD-20x2), and the committed per-sample worst case of PGD-20x2 and AutoAttack, with
95 % Wilson intervals, and the differences in points. Cells go through ``--store`` (the class run's store reuses
them: nothing is computed twice). Prints a Markdown table; exit 2 with one line when the images differ.
"""

from __future__ import annotations

import argparse
import json
import sys

from robustadder.attacks import parse_eps
from robustadder.distances import robustness_curve
from robustadder.engine import data_fingerprint
from robustadder.errors import UserError
from robustadder.groups import DEFAULT_GROUP_ATTACKS, MINIMAL_ATTACK, model_envelope
from robustadder.models import as_loaded, evaluation_images, opened_dataset


def calibrate(committed: dict, store: str, minimal: str, attacks: list[str], data: str | None) -> list[dict]:
    """One row per model and budget of the committed comparison (see the module docstring)."""
    settings = committed["settings"]
    rows = []
    for name in dict.fromkeys(m["model"] for m in committed["models"]):
        model = as_loaded(name)
        images = evaluation_images([model], opened_dataset(settings.get("dataset")), data, settings["n"])
        if data_fingerprint(images) != settings["data_fingerprint"]:
            raise UserError(f"{name}: the images differ from the committed comparison's (data fingerprint "
                            f"{data_fingerprint(images)} vs {settings['data_fingerprint']}); pass the same data")  # fmt: skip
        # the label, not the JSON's rounded float: the cells are keyed on the exact budget compare --group runs
        budgets = [(parse_eps(m["eps_label"], "Linf"), m) for m in committed["models"] if m["model"] == name]
        fmn, env, *_ = model_envelope(model, images, store, None, minimal, attacks, [e for e, _ in budgets])
        alone, enveloped = robustness_curve(fmn, [e for e, _ in budgets]), robustness_curve(env, [e for e, _ in budgets])
        for (_eps, ref), a, e in zip(budgets, alone.itertuples(), enveloped.itertuples(), strict=True):
            rows.append({"model": name, "eps": ref["eps_label"], "fmn": (a.robust_accuracy, a.ci_low, a.ci_high),
                         "envelope": (e.robust_accuracy, e.ci_low, e.ci_high),
                         "committed": (ref["robust_accuracy"], ref["robust_ci_low"], ref["robust_ci_high"])})  # fmt: skip
    return rows


def _cell(value: tuple[float, float, float]) -> str:
    return f"{value[0]:.1f} [{value[1]:.1f}, {value[2]:.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", required=True, help="a committed `compare --json` whose attacks include AutoAttack")
    parser.add_argument("--store", default="reports/class-answer.sqlite")
    parser.add_argument("--minimal", default=MINIMAL_ATTACK)
    parser.add_argument("--attack", action="append", default=None, help="[default: PGD-20x2, as compare --group]")
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    try:
        with open(args.compare, encoding="utf-8") as fh:
            committed = json.load(fh)
        rows = calibrate(committed, args.store, args.minimal, args.attack or list(DEFAULT_GROUP_ATTACKS), args.data)
    except (UserError, OSError, ValueError, KeyError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    reference = " + ".join(committed["settings"]["attacks"])
    print(f"| model | eps | {args.minimal} alone (%) | envelope (%) | committed {reference} (%) | {args.minimal} − committed "
          "| envelope − committed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['eps']} | {_cell(r['fmn'])} | {_cell(r['envelope'])} | {_cell(r['committed'])} | "
              f"{r['fmn'][0] - r['committed'][0]:+.1f} | {r['envelope'][0] - r['committed'][0]:+.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
