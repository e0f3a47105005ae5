"""Training-step cost of all anytime heads versus the same trunk with only the final head.

One step = forward, all exits' losses in one vectorised cross-entropy over [K*B, classes], weighted
sum, backward, SGD step. Variants are interleaved rep by rep so drifts in machine load hit both.
Goal: anytime / final-only <= 1.05 (CPU, batch 128, 32x32, c=16). Wall time and process CPU time
are both printed: on a shared machine the CPU-time ratio is the steadier of the two.

    python benchmarks/bench_anytime_overhead.py --reps 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from adaptive_weights.models import AnytimeResNet


def make_step(model: AnytimeResNet, batch: int, device: torch.device):
    """A closure running one full training step on fixed random data."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, model.num_classes, (batch,), generator=gen).to(device)
    weights = torch.ones(model.num_exits, device=device)
    opt = torch.optim.SGD(model.parameter_groups(2e-4, [1.0] * model.num_exits), lr=0.01, momentum=0.9)
    targets = y.repeat(model.num_exits)

    def step() -> None:
        logits = model(x)  # [K, B, classes]
        k, b, c = logits.shape
        losses = F.cross_entropy(logits.reshape(k * b, c), targets, reduction="none").view(k, b).mean(1)
        loss = (weights * losses).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _stats(ts: list[float]) -> str:
    spread = statistics.stdev(ts) if len(ts) > 1 else 0.0
    return f"mean {statistics.mean(ts):.4f} s  sd {spread:.4f}  median {statistics.median(ts):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per variant (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n", type=int, nargs="+", default=[3, 9], help="units per stage")
    parser.add_argument("--c", type=int, default=16, help="base width")
    args = parser.parse_args()
    if args.reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"CPU, {args.threads} thread(s), batch {args.batch}, 32x32, c={args.c}; seconds per training step")
    for n in args.n:
        torch.manual_seed(0)
        variants = {
            "anytime": AnytimeResNet(n=n, c=args.c).to(device),
            "final-only": AnytimeResNet(n=n, c=args.c, exits=[3 * n - 1]).to(device),
        }
        steps = {name: make_step(m, args.batch, device) for name, m in variants.items()}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.reps):
            for name, step in steps.items():
                w0, c0 = time.perf_counter(), time.process_time()
                step()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        for name in steps:
            print(
                f"n={n:<2d} {name:<10s} K={variants[name].num_exits:<2d} wall {_stats(wall[name])} | cpu {_stats(cpu[name])}"
            )
        for clock, ts in (("wall", wall), ("cpu", cpu)):
            mean = statistics.mean(ts["anytime"]) / statistics.mean(ts["final-only"])
            median = statistics.median(ts["anytime"]) / statistics.median(ts["final-only"])
            print(
                f"n={n:<2d} ratio anytime/final-only ({clock}): mean {mean:.3f}  median {median:.3f}  (goal <= 1.05)"
            )


if __name__ == "__main__":
    main()
