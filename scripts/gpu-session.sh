#!/usr/bin/env bash
# Work on a lent GPU machine in as few calls as possible (see the device tool's notes): stages named on
# the command line run in order, each logging to $OUT (or ./gpu-out), the last lines summarising.
#
#   verify     CUDA correctness tests (tests/test_cuda.py) against the float64 reference
#   bench      `robustadder bench kernels --device cuda` at batch 128 and 512 (autotuned), JSON to $OUT
#   e2e        end-to-end eval timings of a zoo ANN and its CNN on the full test set
#   reference  the reference `compare` runs (issue 12 item 7; issue 17 item 3 with REF_N=10000) of the matched
#              pairs and each model's `check`, on CUDA, stopping itself before the call's limit (REF_BUDGET_S,
#              default 500 s). Resumable across calls: the results store travels in .gpustore/ (ignored; carry
#              it) and comes back as $OUT/ref.sqlite (copy it to .gpustore/ for the next call); the reports
#              come back in $OUT/reference.tgz, with the seconds each command took (reference-times.txt).
#
# The machine starts bare: wheels of torchattacks and pyautoattack travel in .whl/ (ignored), CIFAR-10
# and the third-party checkpoint in .gpudata/ (ignored); both are named in the call's `carry`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ROBUSTADDER_DATA="$PWD/.gpudata" ROBUSTADDER_HOME=/tmp/rahome
RA="python3 -m robustadder"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

for stage in "$@"; do
  start=$(date +%s)
  case "$stage" in
    verify)
      python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/verify.log" | tail -15 ;;
    bench)
      for b in 128 512; do
        $RA bench kernels --device cuda --batch-size "$b" --backends triton${BENCH_EXTRA:-} --json \
          > "$OUT/bench-cuda-batch$b.json" 2> "$OUT/bench-$b.err" || tail -5 "$OUT/bench-$b.err"
        python3 - "$OUT/bench-cuda-batch$b.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(d["machine"].get("gpu"), "batch", d["batch_size"])
for r in d["rows"]:
    print(f"{r['layer'][:40]:40s} {r['op'][:30]:30s} {r['backend']:9s} {r['ms']:9.4f} fp32x{r['ratio_to_conv']:6.2f} "
          f"tf32x{r.get('ratio_to_tf32', float('nan')):6.2f} {r.get('triton_config') or ''}")
EOF
      done ;;
    e2e)
      for m in ann20 cnn20; do
        timeout 200 $RA eval --model "$m" --device cuda --n 10000 --batch-size 500 --attack none \
          --attack pgd:steps=10 --store /tmp/e2e.sqlite 2>&1 | tail -6; echo "$m: $SECONDS s since start"
      done
      timeout 200 $RA eval --model ann20 --device cuda --n 1000 --batch-size 500 --eps 2/255 \
        --attack autoattack --store /tmp/e2e.sqlite 2>&1 | tail -4 ;;
    reference)
      rm -rf /tmp/ref; mkdir -p .gpustore /tmp/ref
      store=.gpustore/ref.sqlite n=${REF_N:-1000} deadline=$(( $(date +%s) + ${REF_BUDGET_S:-500} ))
      source reports/reference-models.sh
      reference_lists .gpudata/thirdparty-addernet-resnet20-cifar10.pt
      step() {  # name, robustadder arguments...: runs while time is left, logs its wall time
        local name=$1 left; shift
        left=$(( deadline - $(date +%s) ))
        if [ "$left" -lt 20 ]; then echo "$name: no time left (rerun the stage)" | tee -a /tmp/ref/reference-times.txt; return; fi
        local t0=$(date +%s)
        if timeout "$left" $RA "$@" --device "${REF_DEVICE:-cuda}" --store "$store" > "/tmp/ref/$name.out" 2> "/tmp/ref/$name.err"; then
          echo "$name: $(( $(date +%s) - t0 )) s" | tee -a /tmp/ref/reference-times.txt
        else
          echo "$name: stopped or failed after $(( $(date +%s) - t0 )) s: $(tail -n 1 "/tmp/ref/$name.err")" | tee -a /tmp/ref/reference-times.txt
        fi
      }
      for pair in "${REF_PAIRS[@]}"; do
        set -- $pair
        name="compare-$(basename "$1" .pt)-vs-$2"
        step "$name" compare "$1" "$2" --n "$n" --format md -o "/tmp/ref/$name.md" --plot "/tmp/ref/$name.png"
        step "$name-json" compare "$1" "$2" --n "$n" --format json -o "/tmp/ref/$name.json"  # reuses the cells
      done
      for model in "${REF_MODELS[@]}"; do
        step "check-$(basename "$model" .pt)" check --model "$model" --n "${REF_CHECK_N:-$n}"
      done
      python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" > /tmp/ref/device.txt
      cp "$store" "$OUT/ref.sqlite" 2>/dev/null
      tar czf "$OUT/reference.tgz" -C /tmp ref ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
  echo "== stage $stage: $(( $(date +%s) - start )) s" | tee -a "$OUT/stages.txt"
done
