# The reference run's models and matched pairs, in one place: sourced by reports/regenerate.sh (CPU) and
# scripts/gpu-session.sh's reference stage (GPU), which differ only in where the third-party checkpoint
# lies. reference_lists TP sets REF_MODELS (checked one by one), REF_PAIRS ("A B": compare A B), REF_CLASSES
# (the --group arguments of the class-level answer: the training seeds of one recipe per class), REF_CLASSES_32
# (the same at depth 32) and REF_RUNS_32 (how many training runs each depth-32 class has). Run from the repository root.
in_zoo() {  # whether every named model is one of the zoo's own, its weights committed (models/NAME.pt)
    local name
    for name in "$@"; do
        grep -q "^\[models\.$name\]" models/zoo.toml 2>/dev/null && [ -f "models/$name.pt" ] || return 1
    done
}
reference_lists() {
    local tp=$1 ann=ann32 cnn=cnn32 k
    REF_MODELS=(ann20 ann20-awn cnn20 cnn20-awn "$tp")
    REF_PAIRS=("ann20 cnn20" "ann20-awn cnn20-awn" "$tp cnn20")
    REF_CLASSES=(--group ANN-20=ann20,ann20-seed1,ann20-seed2 --group CNN-20=cnn20,cnn20-seed1,cnn20-seed2)
    # the same answer at the paper's second depth (issue 39), with every training seed K that both classes ship
    # (ann32-seedK and cnn32-seedK); with none, one training run per class, which its verdict states
    REF_RUNS_32=1
    for k in 1 2; do
        if in_zoo "ann32-seed$k" "cnn32-seed$k"; then
            ann+=",ann32-seed$k" cnn+=",cnn32-seed$k" REF_RUNS_32=$((REF_RUNS_32 + 1))
        fi
    done
    REF_CLASSES_32=(--group "ANN-32=$ann" --group "CNN-32=$cnn")
}
