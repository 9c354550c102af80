# The reference run's models and matched pairs, in one place: sourced by reports/regenerate.sh (CPU) and
# scripts/gpu-session.sh's reference stage (GPU), which differ only in where the third-party checkpoint
# lies. reference_lists TP sets REF_MODELS (checked one by one), REF_PAIRS ("A B": compare A B), REF_CLASSES
# (the --group arguments of the class-level answer: the training seeds of one recipe per class) and REF_CLASSES_32
# (the same at depth 32).
reference_lists() {
    local tp=$1
    REF_MODELS=(ann20 ann20-awn cnn20 cnn20-awn "$tp")
    REF_PAIRS=("ann20 cnn20" "ann20-awn cnn20-awn" "$tp cnn20")
    REF_CLASSES=(--group ANN-20=ann20,ann20-seed1,ann20-seed2 --group CNN-20=cnn20,cnn20-seed1,cnn20-seed2)
    # the same answer at the paper's second depth (issue 39): one training run per class, which its verdict states
    REF_CLASSES_32=(--group ANN-32=ann32 --group CNN-32=cnn32)
}
