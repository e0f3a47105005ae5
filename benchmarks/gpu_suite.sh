#!/usr/bin/env bash
# The GPU checks in one run of at most 8 minutes, cold compilation included, so that a session lent
# a GPU machine (15 minutes of device time, 1-2 of them to start it) runs it once with a margin:
#
#   run(command="bash benchmarks/gpu_suite.sh", timeout_s=540)
#   some stages again, at once (machine still warm, compile cache kept in .gpu_cache/):
#   run(command="GPU_SUITE_BUDGET=240 bash benchmarks/gpu_suite.sh packed strategies", timeout_s=280)
#
#   GPU_SUITE_DRY=1 bash benchmarks/gpu_suite.sh    # every stage at a tiny size on the CPU (plumbing)
#
# Default stages, in order of what matters most, each with a limit from its cold time measured on an
# H200 (2026-12-04), cut to what is left of the budget; a stage that fails or times out costs only
# itself, and one the budget cannot reach is reported as skipped:
#   steps9          n=9 step, fp32 eager (kernels and aten ops per step) against `fast` (train.speed's
#                   GPU default; its cold compilation is most of the 60-100 s): img/s, syncs, memory
#   pytest-fast     pytest -m "gpu and not compiles": no host sync per step, eager CUDA runs, resume (30 s)
#   pytest-compiled pytest -m "gpu and compiles": compiled runs == eager, exact compiled resume, the
#                   default fast run and a fast pack, apart so they cannot starve the rest (90-110 s)
#   projection      a 3-epoch train() at the default speed, projected to 300 epochs; its compilation
#                   comes from the cache steps9 filled, in another process (60 s)
#   packed          bench_packed: N = 1, 16, 32 members (fast eager), the strategies' share batched
#                   and per member
#   strategies      each strategy's share of an n=3 step at K=27, eager (with kernels) and compiled
# Other stages, by name only: cache (bench_compile_cache on CUDA, a cold and a warm process), runs
# (4 processes at once against 1), steps3, data. GPU_SUITE_MODES="fp32 eager|bf16 autocast|fast" sets
# steps9's modes.
# Results: $OUT/suite.log (everything printed, the summary last: what ran, what was skipped) and
# $OUT/parts.tgz (every stage's JSON and pytest XML; refreshed after each stage, so a run cut short
# keeps what it measured). The machine's python3 has torch with CUDA, pytest, pytest-xdist and
# pytest-timeout; the library needs nothing it lacks (Ray, TorchJD).
set -u
cd "$(dirname "$0")/.." || exit 2  # the repository root
OUT="${OUT:-/tmp/gpu_suite_out}"
PARTS="${GPU_SUITE_PARTS:-/tmp/gpu_suite_parts}"
rm -rf "$PARTS"  # this call's results only (a warm machine keeps /tmp between calls)
mkdir -p "$OUT" "$PARTS" .gpu_cache
LOG="$OUT/suite.log"
DRY="${GPU_SUITE_DRY:-0}"
SLOW=$(( DRY == 1 ? 4 : 1 ))  # a dry run's stages get 4x their GPU time limits (a busy CPU compiles)
BUDGET="${GPU_SUITE_BUDGET:-$(( 475 * SLOW ))}"
DEFAULT="steps9 pytest-fast pytest-compiled projection packed strategies"
ALL="$DEFAULT cache runs steps3 data"
STAGES="${*:-$DEFAULT}"
for name in $STAGES; do
  [[ " $ALL " == *" $name "* ]] || { echo "gpu_suite: no stage '$name' (stages: $ALL)"; exit 2; }
done
START=$SECONDS
# one compile cache for all stages and processes (train.compile_cache defaults to it), kept between
# two calls while the machine stays warm; private to this user, as the library requires
chmod 700 .gpu_cache
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  TORCHINDUCTOR_CACHE_DIR="$PWD/.gpu_cache/inductor" TRITON_CACHE_DIR="$PWD/.gpu_cache/triton"

if [[ $DRY == 1 ]]; then  # sizes: tiny on the CPU, CIFAR's on the GPU
  DEV=cpu STEP="--c 4 --batch 16 --image-size 8 --steps 2 --reps 1" MODES=("fp32 eager")
  STRAT="--steps 3 --reps 1 --train-steps 1 --batch 8" DATA="--images 512 --steps 2 --repeats 1 --skip-workers"
  PROJ="--project-images 256" PACKED="--ns 1 2 --c 4 --batch 8 --image-size 8 --n 1 --steps 2 --reps 1"
  CACHE="--device cpu --n 1 --c 4 --batch 16 --images 64 --epochs 2 --mode default --no-control" PROCS=2
else
  DEV=cuda STEP="--steps 30 --reps 3" MODES=("fp32 eager" "fast")  # add "bf16 autocast" by GPU_SUITE_MODES
  [[ -n ${GPU_SUITE_MODES:-} ]] && IFS='|' read -r -a MODES <<< "$GPU_SUITE_MODES"  # e.g. "fp32 eager|fast"
  STRAT="--steps 100 --reps 3" DATA="--images 10000 --steps 20" PROJ=""
  PACKED="--ns 1 16 32 --modes fast\ eager --steps 10 --reps 3"
  CACHE="--device cuda --n 9 --c 16 --batch 128 --images 12800 --epochs 3 --mode reduce-overhead --no-control"
  PROCS=4
fi

# the first python whose torch can run here (CUDA unless dry): the machine's image has it as python3
PY=""
for cand in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3; do
  if "$cand" -c "import torch, sys; sys.exit(0 if '$DEV' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
  then PY=$cand; break; fi
done
if [[ -z $PY ]]; then echo "gpu_suite: no python with a torch that runs on $DEV; nothing measured" | tee "$LOG"; exit 3; fi

left() { echo $(( BUDGET - (SECONDS - START) )); }
pack_parts() { tar czf "$OUT/parts.tgz.tmp" -C "$PARTS" . 2>/dev/null && mv "$OUT/parts.tgz.tmp" "$OUT/parts.tgz"; }

stage() {  # stage NAME LIMIT_S COMMAND...: skipped unless asked for; min(LIMIT, time left); never aborts
  local name=$1 limit=$(( $2 * SLOW )) rest status
  shift 2
  [[ " $STAGES " == *" $name "* ]] || return 0
  rest=$(left)
  if (( rest < 20 )); then
    echo "== $name: SKIPPED (only ${rest}s of the budget left)" | tee -a "$LOG"
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$PARTS/stages.tsv"
    return 0
  fi
  (( limit > rest )) && limit=$rest
  echo "== $name (limit ${limit}s, t=$((SECONDS - START))s)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  status=${PIPESTATUS[0]}
  case $status in 0) state=ok ;; 124|137) state=timeout ;; *) state="exit-$status" ;; esac
  echo "== $name: $state after $((SECONDS - t0))s (t=$((SECONDS - START))s)" | tee -a "$LOG"
  printf '%s\t%s\t%s\t%s\n' "$name" "$state" "$((SECONDS - t0))" "$limit" >> "$PARTS/stages.tsv"
  pack_parts
}

{
  date -u
  echo "stages: $STAGES | budget ${BUDGET}s | dry $DRY | python $PY"
  [[ $DRY == 1 ]] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__,
  '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version(), '| GPUs', torch.cuda.device_count())"
  git log -1 --format='commit %H %s' 2>/dev/null || echo "commit: (no git here)"
} 2>&1 | tee -a "$LOG"
: > "$PARTS/stages.tsv"
echo "${AW_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$PARTS/commit.txt"  # the device's copy may have no .git

PYTEST=("$PY" -m pytest -q -rfE -p no:cacheprovider --durations=5)
"$PY" -c "import xdist" 2>/dev/null && XDIST=1 || XDIST=0
"$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST+=(--timeout=100)
GPU_TESTS=(tests/test_gpu.py tests/test_strategies_contract.py tests/test_strategies_batched.py)
B="benchmarks"
stage steps9 130 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --n 9 --modes "${MODES[@]}" --count-kernels \
  --out "$PARTS/step_n9.json"
stage pytest-fast 50 "${PYTEST[@]}" $( ((XDIST)) && echo "-n 8" ) -m "gpu and not compiles" \
  --junitxml="$PARTS/pytest_fast.xml" "${GPU_TESTS[@]}"
stage pytest-compiled 130 "${PYTEST[@]}" $( ((XDIST)) && echo "-n 6" ) -m "gpu and compiles" \
  --junitxml="$PARTS/pytest_compiled.xml" "${GPU_TESTS[@]}"
stage projection 70 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --modes --project auto $PROJ \
  --out "$PARTS/projection.json"
eval "PACKED_ARGS=($PACKED)"
stage packed 70 "$PY" $B/bench_packed.py --device $DEV "${PACKED_ARGS[@]}" --out "$PARTS/packed.json"
stage strategies 50 bash -c "'$PY' $B/bench_strategies.py --device $DEV --ks 27 --count-ops $STRAT --out '$PARTS/strategies_eager.json' &&
  '$PY' $B/bench_strategies.py --device $DEV --ks 27 $STRAT --compile reduce-overhead --out '$PARTS/strategies_compiled.json'"
stage cache 110 "$PY" $B/bench_compile_cache.py $CACHE --out "$PARTS/compile_cache.json"
stage runs 90 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --modes --packed $PROCS --out "$PARTS/runs.json"
stage steps3 45 "$PY" $B/bench_gpu_step.py --device $DEV $STEP --n 3 --modes "${MODES[@]}" --out "$PARTS/step_n3.json"
stage data 20 "$PY" $B/bench_data.py --device $DEV $DATA --out "$PARTS/data_wait.json"

echo "suite done in $((SECONDS - START))s" | tee -a "$LOG"
pack_parts
"$PY" $B/gpu_summary.py "$PARTS" 2>&1 | tee -a "$LOG" "$PARTS/summary.md"
pack_parts
