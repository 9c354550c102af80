# The reference run's models and matched pairs, in one place: sourced by reports/regenerate.sh (CPU) and
# scripts/gpu-session.sh's reference stage (GPU), which differ only in where the third-party checkpoint
# lies. reference_lists TP sets REF_MODELS (checked one by one) and REF_PAIRS ("A B": compare A B).
reference_lists() {
    local tp=$1
    REF_MODELS=(ann20 ann20-awn cnn20 cnn20-awn "$tp")
    REF_PAIRS=("ann20 cnn20" "ann20-awn cnn20-awn" "$tp cnn20")
}
