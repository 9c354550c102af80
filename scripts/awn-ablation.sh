#!/usr/bin/env bash
# Issue 16: short controlled runs of ANN-20 without AWN and with each AWN variant — same seed, recipe,
# cosine schedule over EPOCHS, data — recording test accuracy and the BN running-statistics magnitudes
# after the adder layers per epoch (the metrics CSVs), then the table (scripts/awn_ablation_table.py).
# Resumable: rerun it and every unfinished run continues from OUT/NAME.pt.state. Run it alone, niced:
#   ROBUSTADDER_DATA=../shared/data nohup bash scripts/awn-ablation.sh &
# EPOCHS (default 8) and SUBSET (first N training images; default all) set the budget; OUT the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
SUBSET=${SUBSET:-}
TEST_SUBSET=${TEST_SUBSET:-}  # first N test images (default all; smoke runs only)
OUT=${OUT:-reports/awn-ablation}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
run() {  # name, flags...
    local name=$1; shift
    if [ -f "$OUT/$name.pt" ]; then echo "$OUT/$name.pt exists"; return; fi
    local resume=""
    if [ -f "$OUT/$name.pt.state" ]; then resume=--resume; fi
    nice -n 19 "$BIN/robustadder" train --arch resnet20 --kind adder "$@" --epochs "$EPOCHS" --seed 0 \
        ${SUBSET:+--train-subset "$SUBSET"} ${TEST_SUBSET:+--test-subset "$TEST_SUBSET"} --out "$OUT/$name.pt" $resume
}
run ann20                                                   # no AWN: the reference
run awn --awn --awn-form standardize --awn-gain-init one    # the original reading (docs/design.md §4)
run awn-norm --awn --awn-form norm --awn-gain-init one      # weight normalization (Salimans & Kingma; the default form since)
run awn-no-gain-decay --awn --awn-form standardize --no-awn-gain-decay --awn-gain-init one  # weight decay off the gains γ
run awn-eta-normalized --awn --awn-form standardize --awn-eta normalized --awn-gain-init one  # η on the normalized weight's gradient
run awn-gain-scale --awn --awn-form standardize --awn-gain-init scale              # γ starts at each filter's scale
run awn-norm-gain4 --awn --awn-form norm --awn-gain-init 4                         # norm, γ starts at ann20's template scale
"$BIN/python" scripts/awn_ablation_table.py "$OUT"
