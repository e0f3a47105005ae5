#!/usr/bin/env bash
# The CIFAR-10 reference campaign on CPU: every run behind report.md, then the report itself.
#   results/reports/reference/cifar10-cpu/reproduce.sh DATA_ROOT [OUT]
# DATA_ROOT holds cifar-10-batches-py/ (../shared/data/cifar10/build.sh DATA_ROOT .venv/bin/python);
# Needs the repository's .venv (make test or make demo creates it). OUT (default results/sweeps)
# receives the run directories. Every step resumes: rerun the same
# command after an interruption and finished runs are kept. Each step's wall time is appended to
# OUT/cifar10-cpu.wall_times.md (wall_times.md here holds those of the committed campaign).
set -euo pipefail
[ -d "${1:?usage: reproduce.sh DATA_ROOT [OUT]}" ] || {
  echo "error: DATA_ROOT $1 is not a directory; build it: ../shared/data/cifar10/build.sh $1 .venv/bin/python" >&2; exit 2; }
DATA=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../../.."
OUT=${2:-results/sweeps}
AW=.venv/bin/adaptive-weights
[ -x $AW ] || { echo "error: $AW not found; run make test (or make demo) first" >&2; exit 2; }
RUNS=$OUT/cifar10-cpu/runs
EANN=$OUT/cifar10-cpu-eann/runs
TIMES=$OUT/cifar10-cpu.wall_times.md
[ -f "$DATA/cifar-10-batches-py/test_batch" ] || { echo "error: $DATA/cifar-10-batches-py/test_batch not found" >&2; exit 2; }

step() {  # step NAME COMMAND...: run it and record its wall time
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  echo "| $name | $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s |" >> "$TIMES"
}
sweep() {  # a sweep, resumed when its directory exists
  local file=$1 name=$2
  local resume=(); [ -d "$OUT/$name" ] && resume=(--resume)
  $AW sweep "tuning/sweeps/$file" --data.root "$DATA" --out "$OUT" --cpus-per-trial 1 -q "${resume[@]}"
}
opt_both_seeds() {  # OPT at the four milestones for seeds 0 and 1, two runs at a time, one core each
  $AW opt --like "$RUNS/cifar10-resnet3c8-sieve-static-s0" --like "$RUNS/cifar10-resnet3c8-sieve-static-s1" \
    --jobs 2 --train.num_threads 1 --no-tensorboard > /dev/null
}

mkdir -p "$OUT"
VERSION=$($AW --version)
printf '\n%s, %s CPU core(s), %s, %s, git %s\n\n| step | wall time |\n|---|---|\n' \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$(uname -srm)" "$VERSION" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >> "$TIMES"
step "anytime runs: sweep cifar10-cpu.yaml (32 runs, 2 at a time)" sweep cifar10-cpu.yaml cifar10-cpu
step "EANN members: sweep cifar10-cpu-eann.yaml (3 runs)" sweep cifar10-cpu-eann.yaml cifar10-cpu-eann
step "OPT at the milestones, seeds 0 and 1 (8 runs)" opt_both_seeds
step "report" $AW report "$RUNS" --group-by scheme.name,strategy.name,objective.name,gradient.name \
  --eann "$EANN/cifar10-resnet1c8-sieve-aann-s0" "$EANN/cifar10-resnet2c8-sieve-aann-s0" \
         "$EANN/cifar10-resnet4c8-sieve-aann-s0" \
  --baseline const+static+ce+sum --baseline sieve+static+ce+sum --baseline sieve+aann+ce+sum \
  --claims --preamble "$HERE/protocol.md" --title "Weighting rules on CIFAR-10, CPU scale (resnet n=3, c=8, 4 short epochs)" --out "$HERE"
echo "wall times: $TIMES"
