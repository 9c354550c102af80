#!/usr/bin/env bash
# Issue 16, step 3: retrain the zoo's AWN models with the AWN variant the ablation chose — weight normalization
# (`train --awn`'s default form) with the gains starting at 4 (`--awn-gain-init 4`: the template scale the
# model without AWN learns; the pilot's best, reports/awn-ablation) — under the zoo's recipe
# (models/train_zoo.sh: 30 epochs, seed 0), into runs/retrain/ (ignored), one after the other, niced. The CNN
# gets the same flags, so the pair differs in the layer alone (for a conv followed by BN the gain's scale
# cancels). Resumable: rerun it and each unfinished run continues from its .state (about 6.5 min per ANN-20
# epoch and 4 min per CNN-20 epoch on a 2-core AVX2 CPU).
#   ROBUSTADDER_DATA=../shared/data nohup bash scripts/retrain-awn.sh &
# When both runs are done, scripts/promote_retrain.py puts them into the zoo (checkpoints, metrics, manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=runs/retrain
GAIN=4
mkdir -p "$OUT"
run() {  # name, flags...
    local name=$1; shift
    if [ -f "$OUT/$name.pt" ]; then echo "$OUT/$name.pt exists"; return; fi
    local resume=""
    if [ -f "$OUT/$name.pt.state" ]; then resume=--resume; fi
    nice -n 19 "$BIN/robustadder" train --arch resnet20 "$@" --epochs 30 --seed 0 --out "$OUT/$name.pt" $resume
}
run ann20-awn-g$GAIN --kind adder --awn --awn-form norm --awn-gain-init $GAIN
run cnn20-awn-g$GAIN --kind conv --awn --awn-form norm --awn-gain-init $GAIN
