"""``make demo``: train a small anytime ResNet on scikit-learn's digits (offline) and print how
good every exit is and what it costs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import RunConfig
from .evaluate import format_exit_table
from .train import train

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adaptive_weights.demo", description=__doc__)
    p.add_argument("--out", default="results/runs/demo-digits-sieve-aann")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    cfg = RunConfig.from_flat({
        "data.name": "digits", "model.n": 3, "model.c": 16, "scheme.name": "sieve",
        "strategy.name": "aann", "train.preset": "digits", "train.epochs": args.epochs,
        "train.batch_size": 64, "train.num_threads": 2,
    })
    out = Path(args.out)
    if out.exists():  # the demo always starts fresh; real runs refuse to overwrite
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = train(cfg, out_dir=out)
    print(f"\nanytime ResNet (n=3, c=16, {len(summary['exit_units'])} exits) on digits, sieve + aann, "
          f"{summary['epochs']} epochs in {time.perf_counter() - t0:.0f} s")
    print(format_exit_table(summary["exit_units"], summary["exit_macs"], {"test": summary["errors"]["test"]}))
    print(f"run directory: {out} (config.json, metrics.jsonl, summary.json, tb/, checkpoints/last.pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
