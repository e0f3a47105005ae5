#!/usr/bin/env bash
# Runs behind the digits report: 3 methods x 3 seeds (n=2, c=8), OPT at the milestones per seed,
# and EANN members n=1, 2, 4 (sieve + aann, seed 0).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../../.."
AW=.venv/bin/adaptive-weights
ROOT=results/runs/report-digits30
EANN=results/runs/report-digits30-eann
COMMON=(--data.name digits --model.c 8 --train.preset digits --train.epochs 30 --train.batch_size 64
        --train.num_threads 1 --train.progress false)
for seed in 0 1 2; do
  for method in sieve:static sieve:aann const:static; do
    scheme=${method%%:*}; strategy=${method##*:}
    out=$ROOT/digits-n2-$scheme-$strategy-s$seed
    [ -f $out/summary.json ] || $AW train --out $out "${COMMON[@]}" --model.n 2 --scheme.name $scheme \
        --strategy.name $strategy --train.seed $seed > /dev/null
  done
  $AW opt --like $ROOT/digits-n2-sieve-static-s$seed
done
for n in 1 4; do
  out=$EANN/digits-n$n-sieve-aann-s0
  [ -f $out/summary.json ] || $AW train --out $out "${COMMON[@]}" --model.n $n --scheme.name sieve \
      --strategy.name aann --train.seed 0 > /dev/null
done

$AW report $ROOT --group-by scheme.name,strategy.name \
  --eann $EANN/digits-n1-sieve-aann-s0 $ROOT/digits-n2-sieve-aann-s0 $EANN/digits-n4-sieve-aann-s0 \
  --title "Weighting rules on digits (resnet n=2, c=8, 30 epochs, 3 seeds)" --out "$HERE"
