#!/usr/bin/env bash
# Trains the project's zoo models: ResNet-20 ANN / CNN, with and without AWN, one recipe for all
# (the official AdderNet recipe, docs/design.md §3, with the epoch count this project's CPU budget allows), and
# the training seeds 1 and 2 of ann20 and cnn20 (the same recipe and flags, another --seed: issue 36's
# class-level comparison needs several training runs per architecture).
# Resumable: rerunning continues every unfinished model from its models/NAME.pt.state, one after another.
#   ROBUSTADDER_DATA=../shared/data bash models/train_zoo.sh            # every model
#   ROBUSTADDER_DATA=../shared/data bash models/train_zoo.sh ann20-seed1 # only the named ones
#   ROBUSTADDER_DATA=../shared/data bash models/train_zoo.sh ann32 cnn32 # the ResNet-32 pair (issue 39)
#   ROBUSTADDER_DATA=../shared/data bash models/train_zoo.sh ann32-seed1 cnn32-seed1 ann32-seed2 cnn32-seed2
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-30}
BIN=${BIN:-.venv/bin}
ONLY=" $* "
train() {  # name, seed, flags... (an --arch among the flags wins over resnet20: click keeps an option's last value)
    local name=$1 seed=$2; shift 2
    if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
    if [ -f "models/$name.pt" ]; then echo "models/$name.pt exists"; return; fi
    local resume=""
    if [ -f "models/$name.pt.state" ]; then resume=--resume; fi
    "$BIN/robustadder" train --arch resnet20 "$@" --epochs "$EPOCHS" --seed "$seed" --out "models/$name.pt" $resume
}
# --awn is weight normalization with the gains starting at 4 since issue 16's ablation (README, AWN): the
# shipped ann20-awn / cnn20-awn were trained that way (by scripts/retrain-awn.sh, the same command with the
# flags spelled out). The pair shipped before was trained with --awn-form standardize --awn-gain-init one
# (reports/awn-ablation/full-recipe/*-standardize.pt; their checkpoints carry no awn_variant)
train ann20-awn 0 --kind adder --awn
train cnn20 0 --kind conv
train ann20 0 --kind adder
train cnn20-awn 0 --kind conv --awn
# training seeds of ann20 and cnn20: NAME-seedK is NAME's recipe and flags with --seed K
train ann20-seed1 1 --kind adder
train cnn20-seed1 1 --kind conv
train ann20-seed2 2 --kind adder
train cnn20-seed2 2 --kind conv
# issue 39: the paper's second depth, ResNet-32, with the same recipe and flags (seed 0); then its AWN pair
train ann32 0 --arch resnet32 --kind adder
train cnn32 0 --arch resnet32 --kind conv
train ann32-awn 0 --arch resnet32 --kind adder --awn
train cnn32-awn 0 --arch resnet32 --kind conv --awn
# training seeds of ann32 and cnn32 (the depth-32 class answer about architectures, as issue 36's at depth 20)
train ann32-seed1 1 --arch resnet32 --kind adder
train cnn32-seed1 1 --arch resnet32 --kind conv
train ann32-seed2 2 --arch resnet32 --kind adder
train cnn32-seed2 2 --arch resnet32 --kind conv
