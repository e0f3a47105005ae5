#!/usr/bin/env bash
# The GPU checks of issue 10 in one run of under 8 minutes, for a session that has a GPU machine:
#
#   run(command="bash benchmarks/gpu_suite.sh", timeout_s=540)
#
# Stages, each with its own time limit (cut to what is left of the 470 s budget), results in $OUT
# (at most 8 files come back): suite.log (everything printed), pytest_gpu.xml, strategies_eager.json,
# strategies_compiled.json, step_n9.json, step_n3.json, projection.json.
#   1. pytest -m gpu: no host sync per step, full CUDA runs in every train.compile mode, the captured
#      strategy step against eager for every built-in, a compiled run against an eager one + resume
#   2. each strategy's share of an n=3 step at K=27 and 75, eager and compiled (reduce-overhead)
#   3. the step modes against fp32 eager (bench_gpu_step.py) for n=9 (all) and n=3 (a subset)
#   4. the 300-epoch CIFAR-10 n=9 projection from a timed 3-epoch run, if time is left
# The machine has no Ray: the packed-trial measurement (issue 10 item 3) is not part of this script.
set -u
OUT="${OUT:-/tmp/gpu_suite_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
BUDGET=470
START=$SECONDS
LOG="$OUT/suite.log"

left() { echo $(( BUDGET - (SECONDS - START) )); }

stage() {  # stage NAME LIMIT_S COMMAND...: runs with min(LIMIT, time left), never aborts the suite
  local name=$1 limit=$2
  shift 2
  local rest
  rest=$(left)
  if (( rest < 20 )); then
    echo "== $name: SKIPPED (only ${rest}s of the budget left)" | tee -a "$LOG"
    return
  fi
  (( limit > rest )) && limit=$rest
  echo "== $name (limit ${limit}s, t=$((SECONDS - START))s)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - START))s" | tee -a "$LOG"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"
  git rev-parse HEAD 2>/dev/null
} 2>&1 | tee "$LOG"

stage "pytest -m gpu" 190 "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$OUT/pytest_gpu.xml" \
  tests/test_gpu.py tests/test_strategies_contract.py
stage "strategy share, eager" 50 "$PY" benchmarks/bench_strategies.py --device cuda --ks 27 75 --reps 3 \
  --steps 100 --out "$OUT/strategies_eager.json"
stage "strategy share, compiled reduce-overhead" 70 "$PY" benchmarks/bench_strategies.py --device cuda --ks 27 \
  --reps 3 --steps 100 --compile reduce-overhead --out "$OUT/strategies_compiled.json"
stage "step modes n=9" 150 "$PY" benchmarks/bench_gpu_step.py --n 9 --steps 30 --reps 3 --out "$OUT/step_n9.json"
stage "step modes n=3" 60 "$PY" benchmarks/bench_gpu_step.py --n 3 --steps 30 --reps 3 \
  --modes "fp32 eager" "bf16 autocast" "channels_last" "cudnn.benchmark" "fused SGD" "compile reduce-overhead" \
  --out "$OUT/step_n3.json"
stage "300-epoch projection" 120 "$PY" benchmarks/bench_gpu_step.py --modes \
  --project reduce-overhead --out "$OUT/projection.json"
echo "suite done in $((SECONDS - START))s; files in $OUT:" | tee -a "$LOG"
ls -la "$OUT" | tee -a "$LOG"
