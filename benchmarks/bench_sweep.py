"""What Ray Tune costs and what it buys on a small machine.

Measures, side by side on this machine (loopback-only in-process Ray):
  * the same N small trials run one after another by plain ``train()`` calls (no Ray): the baseline;
  * one trial at a time under Ray Tune: (time - baseline) / N is Ray's overhead per trial;
  * 2 concurrent 1-CPU trials under Ray Tune: throughput in trials per minute against the baseline.
Ray's own start-up is reported separately (paid once per sweep).

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 .venv/bin/python benchmarks/bench_sweep.py [--trials 6] [--epochs 3]
"""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: loopback only

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=2048, help="synthetic training images per trial")
    args = p.parse_args()

    from adaptive_weights.config import RunConfig
    from adaptive_weights.training import train
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import parse_sweep

    spec = parse_sweep({
        "data.name": "synthetic", "data.synthetic_size": args.size, "data.synthetic_image_size": 16,
        "model.n": 2, "model.c": 8, "train.preset": "smoke", "train.epochs": args.epochs,
        "train.batch_size": 64, "train.progress": False, "train.num_threads": 1,
        "train.seed": list(range(args.trials)), "strategy.name": "eg", "sweep.paper_grid": False,
    }, name="bench")
    root = Path(tempfile.mkdtemp(prefix="aw-bench-sweep-"))

    t0 = time.perf_counter()
    for i, flat in enumerate(spec.trials):
        train(RunConfig.from_flat(flat), out_dir=root / "plain" / str(i), tensorboard=False)
    sequential = time.perf_counter() - t0

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, num_cpus=2, configure_logging=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    try:
        timings = {}
        for label, concurrent in (("ray-1", 1), ("ray-2", 2)):
            t0 = time.perf_counter()
            outcome = run_sweep(spec, out=root / label, cpus_per_trial=1, max_concurrent=concurrent,
                                tensorboard=False, verbose=0)
            timings[label] = time.perf_counter() - t0
            assert not outcome.errored, outcome.errored
    finally:
        ray.shutdown()

    n = len(spec.trials)
    print(f"{n} trials (synthetic 16x16, n=2 c=8, {args.epochs} epochs, 1 thread each) on {os.cpu_count()} CPUs")
    print(f"  sequential train() calls, no Ray : {sequential:7.1f} s  ({60 * n / sequential:5.1f} trials/min)")
    print(f"  Ray start-up (once per sweep)    : {startup:7.1f} s")
    print(f"  Ray Tune, 1 trial at a time      : {timings['ray-1']:7.1f} s  overhead per trial "
          f"{(timings['ray-1'] - sequential) / n:+.2f} s")
    print(f"  Ray Tune, 2 concurrent 1-CPU     : {timings['ray-2']:7.1f} s  ({60 * n / timings['ray-2']:5.1f} trials/min)")
    print(f"  throughput, 2 concurrent / sequential: {sequential / timings['ray-2']:.2f}x "
          f"(with Ray start-up: {sequential / (timings['ray-2'] + startup):.2f}x)")


if __name__ == "__main__":
    main()
