#!/usr/bin/env bash
# The GPU checks of issue 10 in one run of at most 6 minutes, so that the machine's start-up (1-2 min)
# and one rerun still fit in the 15 minutes of device time. For a session lent a GPU machine:
#
#   run(command="bash benchmarks/gpu_suite.sh", timeout_s=400)
#   rerun at once (within 30 s, machine still warm, compile caches kept in .gpu_cache/), some stages:
#   run(command="GPU_SUITE_BUDGET=300 bash benchmarks/gpu_suite.sh steps3 compiled data", timeout_s=330)
#
#   GPU_SUITE_DRY=1 bash benchmarks/gpu_suite.sh    # every stage at a tiny size on the CPU (plumbing)
#
# Stages (default: all, in this order), each with its own time limit, cut to what is left of the
# budget; a stage that fails or times out costs only itself. Every result is written to $OUT as it
# is measured (at most 8 files come back): suite.log (everything printed, a markdown summary last),
#   steps9      step_n9.json    n=9: every mode against fp32 eager (all, compile = CUDA graphs first):
#                               img/s, ms/step, host syncs/step, peak memory, warm-up (compile) time
#   pytest      pytest_gpu.xml  pytest -m gpu: no host sync per step, full CUDA runs in every
#                               train.compile mode, captured strategy step == eager, exact resume
#   strategies  strategies_eager.json     each strategy's share of an n=3 step at K=27 and 75
#   runs        runs.json       4 processes training at once against 1 (no Ray there), then the
#                               300-epoch CIFAR-10 n=9 projection from a timed 3-epoch run
#   steps3      step_n3.json    n=3: every mode against fp32 eager
#   compiled    strategies_compiled.json  the strategies' step compiled (reduce-overhead), K=27
#   data        data_wait.json  DeviceLoader against DataLoader, data wait per step
# A first run may leave the last stages to the budget (cold compilation); rerun those at once.
# The machine's python3 (/opt/torch/.venv) has torch with CUDA, pytest and pytest-xdist; nothing is
# installed (it has no network), and the library's imports need nothing it lacks (Ray, TorchJD).
set -u
cd "$(dirname "$0")/.." || exit 2  # the repository root
OUT="${OUT:-/tmp/gpu_suite_out}"
mkdir -p "$OUT" .gpu_cache
LOG="$OUT/suite.log"
DRY="${GPU_SUITE_DRY:-0}"
SLOW=$(( DRY == 1 ? 5 : 1 ))  # a dry run's stages get 5x their GPU time limits (a busy CPU compiles)
BUDGET="${GPU_SUITE_BUDGET:-$(( 360 * SLOW ))}"
ALL="steps9 pytest strategies runs steps3 compiled data"
STAGES="${*:-$ALL}"
for name in $STAGES; do
  [[ " $ALL " == *" $name "* ]] || { echo "gpu_suite: no stage '$name' (stages: $ALL)"; exit 2; }
done
START=$SECONDS
# one compile cache for all stages, kept between two calls while the machine stays warm
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  TORCHINDUCTOR_CACHE_DIR="$PWD/.gpu_cache/inductor" TRITON_CACHE_DIR="$PWD/.gpu_cache/triton"

if [[ $DRY == 1 ]]; then  # sizes: tiny on the CPU, CIFAR's on the GPU
  DEV=cpu STEP="--c 4 --batch 16 --image-size 8 --steps 2 --reps 1" MODES=("fp32 eager" "all")
  STRAT="--steps 3 --reps 1 --train-steps 1 --batch 8" DATA="--images 512 --steps 2 --repeats 1 --skip-workers"
  PROJ="--project-images 256" PACKED=2
else
  DEV=cuda STEP="--steps 30 --reps 3" MODES=() STRAT="--steps 100 --reps 3" DATA="--images 10000 --steps 20"
  PROJ="" PACKED=4
fi

# the first python whose torch can run here (CUDA unless dry): the machine's image has it as python3
PY=""
for cand in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3; do
  if "$cand" -c "import torch, sys; sys.exit(0 if '$DEV' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
  then PY=$cand; break; fi
done
if [[ -z $PY ]]; then echo "gpu_suite: no python with a torch that runs on $DEV; nothing measured" | tee "$LOG"; exit 3; fi

left() { echo $(( BUDGET - (SECONDS - START) )); }

stage() {  # stage NAME LIMIT_S COMMAND...: skipped unless asked for; min(LIMIT, time left); never aborts
  local name=$1 limit=$(( $2 * SLOW )) rest
  shift 2
  [[ " $STAGES " == *" $name "* ]] || return 0
  rest=$(left)
  if (( rest < 20 )); then echo "== $name: SKIPPED (only ${rest}s of the budget left)" | tee -a "$LOG"; return 0; fi
  (( limit > rest )) && limit=$rest
  echo "== $name (limit ${limit}s, t=$((SECONDS - START))s)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - START))s" | tee -a "$LOG"
}

{
  date -u
  echo "stages: $STAGES | budget ${BUDGET}s | dry $DRY | python $PY"
  [[ $DRY == 1 ]] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__,
  '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version(), '| GPUs', torch.cuda.device_count())"
  git log -1 --format='commit %H %s' 2>/dev/null || echo "commit: (no git here)"
} 2>&1 | tee -a "$LOG"

# pytest: 4 workers share the GPU (its compilations are CPU-bound); a hung test stops at 80 s
PYTEST_PAR=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 4")
PYTEST_TIMEOUT=$("$PY" -c "import pytest_timeout" 2>/dev/null && echo "--timeout=80")
B="benchmarks"
stage steps9 140 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --n 9 ${MODES[@]+--modes "${MODES[@]}"} \
  --out "$OUT/step_n9.json"
stage pytest 120 "$PY" -m pytest -q -rfE -m gpu -p no:cacheprovider $PYTEST_PAR $PYTEST_TIMEOUT --durations=10 \
  --junitxml="$OUT/pytest_gpu.xml" tests/test_gpu.py tests/test_strategies_contract.py tests/test_strategies_batched.py
stage strategies 25 "$PY" $B/bench_strategies.py --device $DEV --ks 27 75 --count-ops $STRAT \
  --out "$OUT/strategies_eager.json"
stage runs 90 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --modes --packed $PACKED \
  --project reduce-overhead $PROJ --out "$OUT/runs.json"
stage steps3 45 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --n 3 ${MODES[@]+--modes "${MODES[@]}"} \
  --out "$OUT/step_n3.json"
stage compiled 40 "$PY" $B/bench_strategies.py --device $DEV --ks 27 $STRAT --compile reduce-overhead \
  --out "$OUT/strategies_compiled.json"
stage data 20 "$PY" $B/bench_data.py --device $DEV $DATA --out "$OUT/data_wait.json"

echo "suite done in $((SECONDS - START))s; files in $OUT:" | tee -a "$LOG"
ls -la "$OUT" | tee -a "$LOG"
"$PY" $B/gpu_summary.py "$OUT" 2>&1 | tee -a "$LOG"
