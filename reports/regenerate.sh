#!/usr/bin/env bash
# Regenerates the reference reports in reports/ — the project's own run of the paper, eps-sweep and
# settings presets (attacks/) on the zoo models, plus the gradient-masking checks of every model:
#   ROBUSTADDER_DATA=../shared/data bash reports/regenerate.sh
# The sweep files actually run are written next to the outputs (reports/*.toml: the presets with the
# number of test images used); results accumulate in $STORE, so an interrupted run resumes.
# RENDER_ONLY=1 runs nothing: it renders the reports from the cells already in $STORE (a run stopped on
# purpose, e.g. without AutoAttack's costliest cells); a preset with missing cells is marked partial in
# reports/README.md, whose hand-written notes (everything after the NOTES line) are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
R="$BIN/robustadder"
STORE=${STORE:-reports/results.sqlite}
declare -A N=([paper]=${N_PAPER:-1000} [eps-sweep]=${N_EPS:-500} [settings]=${N_SETTINGS:-500})
N_CHECK=${N_CHECK:-500}
TP=../shared/checkpoints/thirdparty-addernet-resnet20-cifar10.pt
source reports/reference-models.sh
reference_lists "$TP"

for preset in paper eps-sweep settings; do
    # same directory depth as attacks/, so the presets' relative model paths still resolve
    sed "s/^n = .*/n = ${N[$preset]}/" "attacks/$preset.toml" > "reports/$preset.toml"
done

RENDER_ONLY=${RENDER_ONLY:-0}

# cheapest first, AutoAttack's eps sweep last: an interrupted run has the most finished parts
[ "$RENDER_ONLY" = 1 ] || for preset in paper settings; do
    "$R" sweep "reports/$preset.toml" --store "$STORE"
done
# N_CHECK=0 skips the checks (on a 2-core CPU each ANN's check runs PGD-40 with both gradients over the eps
# grid: about half an hour per model at 200 images)
[ "$N_CHECK" = 0 ] && rm -f reports/check-*.md  # never leave another run's checks beside this run's tables
[ "$N_CHECK" = 0 ] || [ "$RENDER_ONLY" = 1 ] || for model in "${REF_MODELS[@]}"; do
    name=$(basename "$model" .pt)
    if ! "$R" check --model "$model" --n "$N_CHECK" --store "$STORE" > "reports/check-$name.md" 2> "reports/.check-$name.err"; then
        echo "check of $model did not run: $(tail -n 1 "reports/.check-$name.err")" | tee "reports/check-$name.md"
    fi
    rm -f "reports/.check-$name.err"
done
[ "$RENDER_ONLY" = 1 ] || "$R" sweep reports/eps-sweep.toml --store "$STORE"

# reports read the store alone (the sweeps above recorded their grids); md, html and csv with the intervals, the
# LaTeX a paper table of means (its caption says so; the intervals of the same cells are in the md beside it)
for preset in paper eps-sweep settings; do
    "$R" report --sweep "reports/$preset.toml" --store "$STORE" --format md --intervals -o "reports/$preset.md"
    "$R" report --sweep "reports/$preset.toml" --store "$STORE" --format latex --no-intervals -o "reports/$preset.tex"
    "$R" report --sweep "reports/$preset.toml" --store "$STORE" --format csv -o "reports/$preset.csv"
done
"$R" models --ops > reports/models-ops.txt

# the answer to "are AdderNets more robust than CNNs?": compare of the matched pairs (PGD + AutoAttack,
# both adder gradients, intervals, McNemar), each with its plot; N_COMPARE images (the protocol: 1,000)
N_COMPARE=${N_COMPARE:-1000}  # 0: skip (AutoAttack on 1,000 images per model and eps takes hours on a CPU)
[ "$N_COMPARE" = 0 ] || [ "$RENDER_ONLY" = 1 ] || for pair in "${REF_PAIRS[@]}"; do
    set -- $pair
    name="compare-$(basename "$1" .pt)-vs-$2"
    "$R" compare "$1" "$2" --n "$N_COMPARE" --store "$STORE" --format md -o "reports/$name.md" --plot "reports/$name.png"
    "$R" compare "$1" "$2" --n "$N_COMPARE" --store "$STORE" --format json -o "reports/$name.json"  # reused cells
done

# the class-level answer (issue 36): ANN-20 against CNN-20 as classes of training seeds, on minimal perturbations
# (FMN, both adder gradients) enveloped with PGD-20x2 at 1, 2, 4, 8/255; then the calibration of that curve against
# the committed PGD + AutoAttack worst case of the seed-0 pair (same images, cells reused). Its compute time is kept.
# The same answer at depth 32 (issue 39) once ann32 and cnn32 are in the zoo, with the training seeds both classes ship.
N_CLASS=${N_CLASS:-1000}  # 0: skip
class_answer() {  # NAME GROUP-ARGS...: reports/NAME.{md,png,json} and the cells' compute time in reports/NAME.time
    local name=$1 start=$SECONDS cost
    shift
    "$R" compare "$@" --n "$N_CLASS" --store "$STORE" --format md -o "reports/$name.md" --plot "reports/$name.png"
    "$R" compare "$@" --n "$N_CLASS" --store "$STORE" --format json -o "reports/$name.json"
    # the cells' seconds as stored when they ran (the run may span sessions: wall time says nothing)
    cost=$(sed -n 's/^Compute: \(.*\) of cell time.*/\1/p' "reports/$name.md")
    echo "${cost:-?} of cell compute ($(( (SECONDS - start) / 60 )) min wall in this run), $(nproc) CPU cores, $(date -u +%Y-%m-%d)" \
        > "reports/$name.time"
}
if [ "$N_CLASS" != 0 ] && [ "$RENDER_ONLY" != 1 ]; then
    class_answer class-ann20-vs-cnn20 "${REF_CLASSES[@]}"
    if [ "$N_CLASS" = 1000 ]; then  # the committed seed-0 compare is on the first 1,000 images
        "$BIN/python" scripts/fmn_calibration.py --compare reports/compare-ann20-vs-cnn20.json --store "$STORE" \
            > reports/class-calibration.md.tmp
        mv reports/class-calibration.md.tmp reports/class-calibration.md
    fi
    ! in_zoo ann32 cnn32 || class_answer class-ann32-vs-cnn32 "${REF_CLASSES_32[@]}"
fi

# the page leads with the class-level answer(s) when there are any, then the paper-style tables; with both depths'
# answers also a table and a plot of each class's median minimal eps across the depths (class-depth.png)
answer=()
for name in class-ann20-vs-cnn20 class-ann32-vs-cnn32; do
    [ ! -f "reports/$name.json" ] || answer+=(--answer "reports/$name.json")
done
[ "${#answer[@]}" -lt 4 ] || answer+=(--plot reports/class-depth.png)  # two or more answers (two words each)
"$R" report "${answer[@]}" --sweep reports/paper.toml --sweep reports/eps-sweep.toml --sweep reports/settings.toml --checks \
    --store "$STORE" --format html --intervals -o reports/index.html

# reports/README.md: what was run, on how many images, how long each part took on this machine
# both read one dry run of the preset (a dry run loads every model and calibrates a cost estimate)
compute() {  # the preset's compute time as measured when its cells ran (summed over resumes)
    sed -n 's/.*as measured when they ran: //p' <<< "$1"
}
partial() {  # " (**partial**: D of T cells)" when some of the preset's cells are not in the store
    awk '/^  done / { gsub(",", ""); if ($5 > 0) printf " (**partial**: %d of %d cells)", $2, $2 + $5 }' <<< "$1"
}
vector_isa() {  # the kernel's code path depends on it (adder_cpu.cc), and so do the compute times
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then echo "AVX-512"
    elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then echo "AVX2, no AVX-512"
    else echo "no AVX2"; fi
}
answer() {  # what a reader came for, first: the class sentences each class-*.md leads with, each check's verdict
    local f name ans=""
    for f in reports/class-ann20-vs-cnn20.md reports/class-ann32-vs-cnn32.md; do
        [ ! -f "$f" ] || ans+=$(sed -n '/^$/q; /^- /p' "$f")$'\n'
    done
    for f in reports/check-*.md; do
        name=${f#reports/check-}
        [ ! -f "$f" ] || ans+=$(sed -n "s/^\*\*Verdict:\*\* \([^;]*\);.*/- gradient-masking checks of ${name%.md}: \1/p" "$f")$'\n'
    done
    ans=$(grep -v '^$' <<< "$ans" || true)
    [ -z "$ans" ] || printf '%s\n\n%s\n\n' "## The answer (measured by the run below)" "$ans"
}
NOTES="<!-- notes: written by hand, kept by regenerate.sh -->"
notes=$(sed -n "/^$NOTES\$/,\$p" reports/README.md 2>/dev/null || true)
{
    echo "# Reference reports"
    echo
    answer
    echo "The project's own run of the sweep presets (\`attacks/\`) on the zoo models (\`models/zoo.toml\`) and"
    echo "the third-party checkpoint of \`../shared/checkpoints\`, and the gradient-masking checks of each model."
    echo "Every number in these files was measured by that run; regenerate them all (results accumulate in"
    echo "\`$STORE\`, which is not committed, so an interrupted run resumes) with:"
    echo
    echo '```bash'
    echo "ROBUSTADDER_DATA=../shared/data N_PAPER=${N[paper]} N_EPS=${N[eps-sweep]} N_SETTINGS=${N[settings]} N_CHECK=$N_CHECK N_COMPARE=$N_COMPARE N_CLASS=$N_CLASS bash reports/regenerate.sh"
    echo '```'
    echo
    echo "Generated $(date -u +%Y-%m-%d) by robustadder $("$R" --version | awk '{print $NF}') at commit" \
         "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), on $(nproc) CPU cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(vector_isa))."
    echo
    echo "| part | files | CIFAR-10 test images | compute time |"
    echo "|---|---|---|---|"
    for preset in paper eps-sweep settings; do
        dry=$("$R" sweep "reports/$preset.toml" --store "$STORE" --dry-run || true)
        echo "| \`$preset\` preset$(partial "$dry") | \`$preset.{md,tex,csv}\`, sweep file \`$preset.toml\` | first ${N[$preset]} | $(compute "$dry") |"
    done
    [ "$N_CHECK" = 0 ] || for model in ann20 ann20-awn cnn20 cnn20-awn thirdparty-addernet-resnet20-cifar10; do
        echo "| \`check\` of $model | \`check-$model.md\` | first $N_CHECK | |"
    done
    [ "$N_CLASS" = 0 ] || [ ! -f reports/class-ann20-vs-cnn20.time ] || echo "| class-level answer, ANN-20 vs CNN-20 (3 training seeds each) and its calibration against AutoAttack | \`class-ann20-vs-cnn20.{md,json,png}\`, \`class-calibration.md\` | first $N_CLASS | $(cat reports/class-ann20-vs-cnn20.time) |"
    [ "$N_CLASS" = 0 ] || [ ! -f reports/class-ann32-vs-cnn32.time ] || echo "| class-level answer at depth 32, ANN-32 vs CNN-32 ($([ "$REF_RUNS_32" = 1 ] && echo "one training run" || echo "$REF_RUNS_32 training seeds") each), and the median minimal eps across depths | \`class-ann32-vs-cnn32.{md,json,png}\`, \`class-depth.png\` | first $N_CLASS | $(cat reports/class-ann32-vs-cnn32.time) |"
    echo "| all tables, plots and checks | \`index.html\` | | |"
    echo "| operation counts and energy | \`models-ops.txt\` | | |"
    echo
    echo "Compute time: the summed batch times of a preset's cells, as stored when they ran (a check reuses the"
    echo "sweeps' cells where they coincide and adds its own)."
    [ "$N_CHECK" != 0 ] || { echo; echo "The gradient-masking checks were not run (N_CHECK=0)."; }
    [ "$N_COMPARE" != 0 ] || { echo; echo "The \`compare\` reports were not run (N_COMPARE=0)."; }
    [ "$N_CLASS" != 0 ] || { echo; echo "The class-level answer was not run (N_CLASS=0)."; }
    [ -z "$notes" ] || { echo; echo "$notes"; }
} > reports/README.md.tmp
mv reports/README.md.tmp reports/README.md  # whole or not at all: the notes are never lost half-written
