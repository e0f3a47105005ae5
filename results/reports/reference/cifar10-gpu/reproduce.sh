#!/usr/bin/env bash
# The CIFAR-10 GPU reference campaign: the paper's model (resnet n=9, c=16, 27 exits) and claims,
# all 30 runs (const, linear, sieve, exp-lin static; sieve+aann, exp-lin+aann; OPT at the four
# milestones; 3 seeds each) trained as packed members of one network on one GPU, then the report.
#
#   results/reports/reference/cifar10-gpu/reproduce.sh DATA_ROOT [OUT]   # GPU; about 8 min on an H200
#   results/reports/reference/cifar10-gpu/reproduce.sh --dry-run [OUT]   # CPU, tiny sizes (CI checks this)
#
# DATA_ROOT holds cifar-10-batches-py/. OUT (default results/sweeps) receives OUT/cifar10-gpu/runs;
# the report goes next to this script (a dry run writes it to OUT/cifar10-gpu/report instead).
# EPOCHS (default 15) sets train.epochs. Rerun the same command after an interruption: finished
# packs are kept, a started pack resumes from its members' checkpoints. Needs only torch, numpy,
# scipy, matplotlib, pyyaml, tensorboard and pillow (no Ray, no TorchJD): it runs the repository's
# source with PYTHON (default: .venv/bin/python if present, else python3).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; else
  [ -d "${1:?usage: reproduce.sh DATA_ROOT [OUT] | reproduce.sh --dry-run [OUT]}" ] || {
    echo "error: DATA_ROOT $1 is not a directory" >&2; exit 2; }
  DATA=$(cd "$1" && pwd); shift
  [ -f "$DATA/cifar-10-batches-py/test_batch" ] || { echo "error: $DATA/cifar-10-batches-py/test_batch not found" >&2; exit 2; }
fi
OUT=${1:-$ROOT/results/sweeps}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
AW=("$PY" -m adaptive_weights.cli)
EPOCHS=${EPOCHS:-15}
if [ $DRY = 1 ]; then  # the same commands on tiny synthetic data on the CPU (keeps n=9: OPT's units stay valid)
  SIZES=(--data.name synthetic --data.synthetic_size 64 --data.synthetic_image_size 8 --data.val_split 16
         --model.c 2 --train.batch_size 8 --train.max_steps_per_epoch 2 --train.device cpu --train.amp false
         --train.channels_last false --train.num_threads 1 --no-tensorboard)
  EPOCHS=2; REPORT=$OUT/cifar10-gpu/report
else
  SIZES=(--data.root "$DATA"); REPORT=$HERE
fi
T0=$SECONDS
"${AW[@]}" pack tuning/sweeps/cifar10-gpu.yaml --pack 32 --out "$OUT" --train.epochs "$EPOCHS" "${SIZES[@]}"
TRAIN_S=$(( SECONDS - T0 ))
"${AW[@]}" report "$OUT/cifar10-gpu/runs" --group-by scheme.name,strategy.name \
  --baseline const+static --baseline sieve+static --baseline exp-lin+static --claims \
  --preamble "$HERE/protocol.md" --title "The paper's claims on CIFAR-10 at GPU scale (resnet n=9, c=16, packed)" \
  --out "$REPORT"
echo "training: $TRAIN_S s for $EPOCHS epochs; report: $REPORT/report.md"
