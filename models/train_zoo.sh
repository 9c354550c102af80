#!/usr/bin/env bash
# Trains the project's zoo models: ResNet-20 ANN / CNN, with and without AWN, one recipe for all four
# (the official AdderNet recipe, DESIGN §3, with the epoch count this project's CPU budget allows).
# Resumable: rerunning continues every unfinished model from its models/NAME.pt.state.
#   ROBUSTADDER_DATA=../shared/data bash models/train_zoo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-30}
BIN=${BIN:-.venv/bin}
train() {  # name, kind flags...
    local name=$1; shift
    if [ -f "models/$name.pt" ]; then echo "models/$name.pt exists"; return; fi
    local resume=""
    if [ -f "models/$name.pt.state" ]; then resume=--resume; fi
    "$BIN/robustadder" train --arch resnet20 "$@" --epochs "$EPOCHS" --seed 0 --out "models/$name.pt" $resume
}
# --awn is weight normalization with the gains starting at 4 since issue 16's ablation (README, AWN): the
# shipped ann20-awn / cnn20-awn were trained that way (by scripts/retrain-awn.sh, the same command with the
# flags spelled out). The pair shipped before was trained with --awn-form standardize --awn-gain-init one
# (reports/awn-ablation/full-recipe/*-standardize.pt; their checkpoints carry no awn_variant)
train ann20-awn --kind adder --awn
train cnn20 --kind conv
train ann20 --kind adder
train cnn20-awn --kind conv --awn
