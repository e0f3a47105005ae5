"""Training-step throughput of the full loop on one device (CUDA events after warm-up).

Compares fp32 with bf16 autocast (+ channels_last) for the n=9, c=16 CIFAR-size anytime ResNet on
synthetic 32x32 data, using the library's own `training_step` and device-resident loader, and prints
images/s and the ratio. Run on a GPU node: `python benchmarks/bench_gpu_step.py`.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from adaptive_weights.config import RunConfig
from adaptive_weights.train import build_run, training_step


def measure(amp: bool, channels_last: bool, steps: int, reps: int, n: int, device: torch.device,
            compile_model: bool = False) -> list[float]:
    cfg = RunConfig.from_flat({
        "data.name": "synthetic", "data.synthetic_size": 128 * (steps + 2), "data.synthetic_image_size": 32,
        "model.n": n, "model.c": 16, "strategy.name": "eg", "train.batch_size": 128,
        "train.device": device.type,
    }).resolve()
    data, model, base, strat = build_run(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameter_groups(2e-4, base.tolist()), lr=0.05, momentum=0.9)
    forward = torch.compile(model) if compile_model else model  # as train.compile does
    strat.start_epoch(1)
    rates = []
    for rep in range(reps + 1):
        data.train.set_epoch(rep)
        batches = list(iter(data.train))[:steps]
        if channels_last:
            batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for x, y in batches:
            training_step(forward, opt, strat, x, y, amp=amp, device=device)
        end.record()
        torch.cuda.synchronize()
        if rep > 0:  # the first repetition is warm-up
            rates.append(128 * steps / (start.elapsed_time(end) / 1000))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n", type=int, default=9)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu_step: no CUDA device here; nothing to measure (run it on a GPU node)")
        return
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | n={args.n} c=16 batch 128")
    results = {}
    variants = [("fp32", False, False, False), ("bf16 autocast + channels_last", True, True, False)]
    if args.compile:
        variants += [("fp32 + torch.compile", False, False, True),
                     ("bf16 + channels_last + torch.compile", True, True, True)]
    for name, amp, cl, comp in variants:
        r = measure(amp, cl, args.steps, args.reps, args.n, device, comp)
        results[name] = statistics.mean(r)
        print(f"{name:>32}: {statistics.mean(r):9,.0f} img/s (spread {min(r):,.0f} .. {max(r):,.0f})")
    for name in list(results)[1:]:
        print(f"speed-up of {name} over fp32: {results[name] / results['fp32']:.2f}x")


if __name__ == "__main__":
    main()
