"""Step time of every gradient rule (and the distillation objective) next to the default ``sum``.

For K = 9 and 27 exits (the anytime ResNet with n = 3 and n = 9, an exit after every unit) it times
the library's `training_step` with each gradient rule and prints the time per step and the ratio
to ``ce + sum`` side by side. It also measures the default path against the training step as it
was before objectives and gradient rules existed (inlined below), interleaving the two so that
machine load affects both alike: the goal is a ratio within 1.00 +- 0.02. On the CPU it counts the
process's CPU time (one thread by default), which other jobs on a shared machine barely disturb.

    python benchmarks/bench_gradients.py [--device cpu] [--threads 1] [--batch 32] [--c 8] [--steps 2] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from adaptive_weights.evaluate import per_exit_losses
from adaptive_weights.gradients import create_gradient_rule
from adaptive_weights.models import AnytimeResNet
from adaptive_weights.objectives import create_objective
from adaptive_weights.strategies import create_strategy
from adaptive_weights.training import training_step

KS = {9: 3, 27: 9}  # K -> n (3n units, an exit after each)
RULES: list[tuple[str, str, dict]] = [  # (label, gradient rule, hyper-parameters)
    ("ge", "ge", {}),
    ("pcgrad", "pcgrad", {}),
    ("upgrad", "upgrad", {}),
    ("upgrad last-group", "upgrad", {"scope": "last-group"}),
    ("mgda", "mgda", {}),
    ("cagrad", "cagrad", {}),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(n: int, c: int, batch: int, device: torch.device, objective: str = "ce",
              rule: str = "sum", old: bool = False, **hparams) -> Callable[[], None]:
    """One training step of a fresh seeded model: the library's, or the pre-plug-in one (``old``)."""
    torch.manual_seed(0)
    model = AnytimeResNet(n=n, c=c, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    strategy = create_strategy("static", torch.ones(model.num_exits, device=device))
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if old:
        def step() -> None:
            weights = strategy.step_weights()
            losses = per_exit_losses(model(x), y)
            loss = (weights * losses).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            strategy.observe(losses.detach())
        return step
    obj = create_objective(objective)
    gradient = create_gradient_rule(rule, model, **hparams)
    forward = gradient.forward_fn()
    return lambda: training_step(forward, opt, strategy, x, y, objective=obj, gradient=gradient,
                                 amp=False, device=device)


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Wall time per step on an accelerator, the process's CPU time per step on the CPU."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    _sync(device)
    t0 = clock()
    for _ in range(steps):
        step()
    _sync(device)
    return (clock() - t0) / steps


def interleaved(steps_by_name: dict[str, Callable[[], None]], steps: int, reps: int,
                device: torch.device) -> dict[str, float]:
    """Median seconds per step of each candidate, measured in alternation (after one warm-up step)."""
    for step in steps_by_name.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(reps):
        for name, step in steps_by_name.items():
            times[name].append(seconds_per_step(step, steps, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--c", type=int, default=8, help="base width of the ResNet")
    ap.add_argument("--steps", type=int, default=2, help="steps per timing")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions (the median is reported)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    clock = "wall time" if device.type == "cuda" else "CPU time"
    print(f"{where}; torch {torch.__version__}; AnytimeResNet(c={args.c}), batch {args.batch}, 32x32; "
          f"{clock}, median of {args.reps} x {args.steps} steps")

    print("\ndefault path (ce + sum) against the step before plug-ins existed, interleaved:")
    for k, n in KS.items():
        t = interleaved({"before": make_step(n, args.c, args.batch, device, old=True),
                         "now": make_step(n, args.c, args.batch, device)},
                        args.steps, 3 * args.reps, device)
        print(f"  K={k:<3} before {1e3 * t['before']:8.1f} ms   now {1e3 * t['now']:8.1f} ms   "
              f"ratio {t['now'] / t['before']:.3f}")

    rows = [("sum (ce)", "ce", "sum", {}), ("sum + distill", "distill", "sum", {})]
    rows += [(label, "ce", rule, hp) for label, rule, hp in RULES]
    results: dict[int, dict[str, float]] = {}
    for k, n in KS.items():
        candidates = {label: make_step(n, args.c, args.batch, device, objective, rule, **hp)
                      for label, objective, rule, hp in rows}
        results[k] = interleaved(candidates, args.steps, args.reps, device)
    print(f"\n{'rule':<20}" + "".join(f"{'K=' + str(k) + ' ms':>12}{'x sum':>8}" for k in KS))
    for label, *_ in rows:
        line = f"{label:<20}"
        for k in KS:
            t = results[k][label]
            line += f"{1e3 * t:12.1f}{t / results[k]['sum (ce)']:8.2f}"
        print(line)


if __name__ == "__main__":
    main()
