#!/usr/bin/env bash
# Issue 16, step 3: retrain the zoo's AWN models with the AWN form the ablation chose (weight normalization,
# `train --awn`'s default) under the zoo's recipe (models/train_zoo.sh: 30 epochs, seed 0), into runs/retrain/
# (ignored), one after the other, niced. Resumable: rerun it and each unfinished run continues from its
# .state (about 10 min per ANN-20 epoch on a 2-core AVX2 CPU). When the ANN run is done it copies its
# metrics to reports/awn-ablation/full-recipe/ for scripts/awn_ablation_table.py's full-recipe section.
#   ROBUSTADDER_DATA=../shared/data nohup bash scripts/retrain-awn.sh &
# When both runs are done, scripts/promote_retrain.py puts them into the zoo (checkpoints, metrics, manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=runs/retrain
mkdir -p "$OUT" reports/awn-ablation/full-recipe
run() {  # name, flags...
    local name=$1; shift
    if [ -f "$OUT/$name.pt" ]; then echo "$OUT/$name.pt exists"; return; fi
    local resume=""
    if [ -f "$OUT/$name.pt.state" ]; then resume=--resume; fi
    nice -n 19 "$BIN/robustadder" train --arch resnet20 "$@" --epochs 30 --seed 0 --out "$OUT/$name.pt" $resume
}
run ann20-awn-norm --kind adder --awn --awn-form norm
cp "$OUT/ann20-awn-norm.metrics.csv" reports/awn-ablation/full-recipe/awn-norm.metrics.csv
run cnn20-awn-norm --kind conv --awn --awn-form norm
