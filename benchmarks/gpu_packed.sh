#!/usr/bin/env bash
# Packed runs on a lent GPU: bench_packed, then the CIFAR-10 GPU reference campaign, as two calls
# that fit the device's 10-minute limit per command (the second made at once, while the machine is
# warm, finds the data set the first built). With the CIFAR-10 source in an ignored folder first:
#
#   mkdir -p .gpu_data && cp ../shared/data/cifar10/{cifar10-jpeg.tar.xz,SHA256SUMS,*.npy,*.py} .gpu_data/
#   run(command="bash benchmarks/gpu_packed.sh .gpu_data bench", carry=[".gpu_data"], timeout_s=240)
#   run(command="bash benchmarks/gpu_packed.sh .gpu_data campaign 15", carry=[".gpu_data"], timeout_s=600)
#
# bench: the data set is built in the background (CPU) while bench_packed times N = 1, 4, 16, 32
# members (fast eager: bf16 + channels_last + cudnn.benchmark) and, for N = 1 and 16, fp32 eager.
# campaign EPOCHS: reproduce.sh with train.epochs EPOCHS. Everything goes to $OUT (gpu.log,
# build.log, bench_packed*.json, runs.tgz: the run directories without checkpoints, report.tgz).
set -u
cd "$(dirname "$0")/.." || exit 2
SRC=${1:?usage: gpu_packed.sh CIFAR10_SOURCE_DIR bench|campaign [EPOCHS]}
SRC=$(cd "$SRC" && pwd)  # absolute: the checksum check runs in the data folder
STAGE=${2:?usage: gpu_packed.sh CIFAR10_SOURCE_DIR bench|campaign [EPOCHS]}
OUT=${OUT:-/tmp/gpu_packed_out}; mkdir -p "$OUT"
LOG=$OUT/gpu.log
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
START=$SECONDS

build() {  # build.sh's steps; its checksum check may fail under another Pillow: then say so, keep the data
  [ -f /tmp/cifar10/cifar-10-batches-py/test_batch ] && { echo "already built"; return 0; }
  mkdir -p /tmp/cifar_src && tar -xJf "$SRC/cifar10-jpeg.tar.xz" -C /tmp/cifar_src &&
  "$PY" "$SRC/cifar10_from_image_folders.py" --src /tmp/cifar_src --out /tmp/cifar10 --no-npz \
    --train-labels "$SRC/train_labels_original_order.npy" --test-labels "$SRC/test_labels_original_order.npy" &&
  { (cd /tmp/cifar10/cifar-10-batches-py && sha256sum -c --quiet "$SRC/SHA256SUMS") && echo "checksums verified" ||
    echo "checksums differ from SHA256SUMS (another JPEG decoder): a few pixels may differ by 1"; }
}

if [ "$STAGE" = bench ]; then
  { nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv; "$PY" -c "import torch; print('torch', torch.__version__)"; } >> "$LOG" 2>&1
  ( build > "$OUT/build.log" 2>&1 ) &
  BUILD=$!
  echo "== bench_packed, n=9 c=16 batch 128" | tee -a "$LOG"
  timeout 130 "$PY" benchmarks/bench_packed.py --device cuda --ns 1 4 16 32 --modes "fast eager" --steps 10 --reps 3 \
    --out "$OUT/bench_packed.json" 2>&1 | tee -a "$LOG"
  timeout 60 "$PY" benchmarks/bench_packed.py --device cuda --ns 1 16 --modes eager --steps 5 --reps 3 \
    --out "$OUT/bench_packed_fp32.json" 2>&1 | tee -a "$LOG"
  wait $BUILD; cat "$OUT/build.log" >> "$LOG"
else
  EPOCHS=${3:-15}
  build >> "$LOG" 2>&1
  echo "== campaign: $EPOCHS epochs" | tee -a "$LOG"
  EPOCHS=$EPOCHS timeout "${CAMPAIGN_S:-560}" bash results/reports/reference/cifar10-gpu/reproduce.sh /tmp/cifar10 /tmp/sweeps \
    2>&1 | grep -v " step " | tee -a "$LOG"
  tar czf "$OUT/runs.tgz" --exclude=checkpoints -C /tmp/sweeps cifar10-gpu 2>>"$LOG"
  tar czf "$OUT/report.tgz" -C results/reports/reference cifar10-gpu 2>>"$LOG"
fi
echo "== $STAGE done in $(( SECONDS - START )) s" | tee -a "$LOG"
