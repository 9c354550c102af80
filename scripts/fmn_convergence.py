"""Convergence check of FMN's step count on zoo models: how far its results move from N to 3N steps.

Issue 36 item 1: the median distance and the 1/255 point, quoted in README (compare).

    ROBUSTADDER_DATA=../shared/data python scripts/fmn_convergence.py --models ann20,cnn20 --n 200 --steps 100

Cells go to the store (``--store``, default reports/fmn-convergence.sqlite, not committed) and are reused by a
rerun. Prints a Markdown table: per model and step count the median minimal L∞ distance (×255) with its
bootstrap interval, robust accuracy at 1/255 and 2/255 with Wilson intervals, compute seconds, and the change
from N to 3N steps.
"""

from __future__ import annotations

import argparse
import sys

import robustadder
from robustadder.distances import median_distance, minimal_distances, robustness_curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ann20,cnn20")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--store", default="reports/fmn-convergence.sqlite")
    args = parser.parse_args(argv)
    print("| model | steps | median distance (/255) [95 %] | robust at 1/255 (%) | robust at 2/255 (%) | seconds |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        results = {}
        for steps in (args.steps, 3 * args.steps):
            frame = robustadder.evaluate(model, [f"fmn:steps={steps}"], n=args.n, store=args.store, progress=False).frame
            rows = frame[frame["attack_name"] == "fmn"]
            d = minimal_distances(rows)
            med = median_distance(d)
            curve = robustness_curve(d, [1 / 255, 2 / 255])
            seconds = frame.attrs["summary"][0]["seconds"]
            results[steps] = (med, curve)
            cells = [f"{r.robust_accuracy:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]" for r in curve.itertuples()]
            print(f"| {model} | {steps} | {med['median'] * 255:.3f} [{med['ci_low'] * 255:.3f}, {med['ci_high'] * 255:.3f}] | "
                  f"{cells[0]} | {cells[1]} | {seconds:.0f} |")  # fmt: skip
        (m1, c1), (m3, c3) = results[args.steps], results[3 * args.steps]
        print(f"| {model} | change {args.steps} → {3 * args.steps} | {(m3['median'] - m1['median']) * 255:+.3f} | "
              f"{c3.robust_accuracy.iloc[0] - c1.robust_accuracy.iloc[0]:+.1f} points | "
              f"{c3.robust_accuracy.iloc[1] - c1.robust_accuracy.iloc[1]:+.1f} points | |")  # fmt: skip
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
