"""Cost of a strategy per training step, next to one training step of the n=3 anytime ResNet.

For every registered strategy and K in {9, 27, 75} it times `step_weights()` + `observe(losses)`
(learning switched on) and prints the ratio to one SGD step of `AnytimeResNet(n=3, c=16)` at batch
128 on the same device (goal: under 1%). On CUDA it also measures the in-loop overhead: the training
step with the strategy minus the step with constant weights, which is what a run actually pays, since
the strategy's tiny kernels queue behind the network's. GPU times use CUDA events after warm-up;
each number is the mean (and spread) over repetitions.

`--compile reduce-overhead` times each strategy's step through `adaptive_weights.strategies.CompiledSteps` (as
`train.compile` runs it: one CUDA graph per call instead of about 20-40 small kernels).

`--count-ops` first prints, per strategy and K, the aten ops one eager `step_weights()` +
`observe()` dispatches and how many of them launch a kernel (views and scalar wrappers do not): the
figure the eager cost follows, machine-independent, so a CPU and a GPU run can be compared.

    python benchmarks/bench_strategies.py [--device cuda] [--reps 5] [--steps 200] [--ks 27 75]
        [--compile none|default|reduce-overhead] [--count-ops] [--strategies eg aann] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _common import count_ops, environment, timer, write_results

from adaptive_weights.compiled import mark_step_begin
from adaptive_weights.strategies import CompiledSteps, create_strategy, get_strategy_class, list_strategies

KS = (9, 27, 75)


def repeat(measure, fn, n: int, reps: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = [measure(fn, n) for _ in range(reps)]
    return statistics.mean(times), (statistics.stdev(times) if reps > 1 else 0.0)


def learning_hparams(name: str) -> dict:
    hp = get_strategy_class(name).hparams
    return {**({"warmup_epochs": 0} if "warmup_epochs" in hp else {}), **({"period": 1} if "period" in hp else {})}


def make_train_step(device: torch.device, batch: int, weights_fn: Callable[[], torch.Tensor],
                    observe: Callable[[torch.Tensor], None]) -> Callable[[], None]:
    from adaptive_weights.models import AnytimeResNet

    torch.manual_seed(0)
    model = AnytimeResNet(n=3, c=16, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        weights = weights_fn()
        logits = model(x)  # [K, B, classes]
        K = logits.shape[0]
        losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(K), reduction="none")
        losses = losses.view(K, batch).mean(1)
        opt.zero_grad(set_to_none=True)
        (weights * losses).sum().backward()
        opt.step()
        observe(losses.detach())

    return step


def stepper_for(strategy, compile_mode: str):
    """The strategy itself, or its step compiled as `train.compile=compile_mode` compiles it."""
    if compile_mode == "none":
        return strategy
    return CompiledSteps(strategy, **({} if compile_mode == "default" else {"mode": compile_mode}))


def strategy_step(strategy, pool: list[torch.Tensor], compile_mode: str = "none") -> Callable[[], None]:
    """One training step's worth of strategy calls, cycling through a pool of loss vectors."""
    i = 0

    def one() -> None:
        nonlocal i
        mark_step_begin(compile_mode)
        strategy.step_weights()
        strategy.observe(pool[i % len(pool)])
        i += 1

    return one


def print_op_counts(ks: tuple[int, ...], device: torch.device, names: list[str]) -> dict:
    """Ops (and kernels) of one eager `step_weights()` + `observe()` per strategy and K, learning on."""
    print("eager ops per strategy step (step_weights + observe), dispatched / kernels:")
    print(f"{'strategy':<16}" + "".join(f"{'K=' + str(k):>14}" for k in ks))
    counts: dict = {}
    g = torch.Generator().manual_seed(0)
    for sname in names:
        row = f"{sname:<16}"
        for K in ks:
            s = create_strategy(sname, (torch.rand(K, generator=g) + 0.1).to(device), seed=0, **learning_hparams(sname))
            losses = torch.linspace(2.0, 0.5, K, device=device)
            for _ in range(2):  # past the first step (and the eager draw cache's refill)
                s.step_weights(), s.observe(losses)
            ops, kernels = count_ops(lambda s=s, losses=losses: (s.step_weights(), s.observe(losses)))
            counts.setdefault(sname, {})[f"K={K}"] = {"ops": ops, "kernels": kernels}
            row += f"{f'{ops} / {kernels}':>14}"
        print(row, flush=True)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200, help="strategy steps per repetition")
    ap.add_argument("--train-steps", type=int, default=0, help="training steps per repetition (default: 20 GPU, 3 CPU)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS), help="numbers of exits to time")
    ap.add_argument("--compile", default="none", choices=("none", "default", "reduce-overhead"),
                    help="time the strategy step compiled as train.compile does")
    ap.add_argument("--strategies", nargs="+", default=None, help="time only these (default: every registered one)")
    ap.add_argument("--count-ops", action="store_true", help="print the ops and kernels per eager strategy step first")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    ks = tuple(args.ks)
    results: dict = {"compile": args.compile, "ks": list(ks), "strategies": {}, "in_loop_k9": {}}
    device = torch.device(args.device)
    names = args.strategies or list_strategies()
    if args.count_ops:
        results["ops_per_step"] = print_op_counts(ks, device, names)
        write_results(args.out, results)
    measure = timer(device)
    train_steps = args.train_steps or (20 if device.type == "cuda" else 3)

    const = torch.ones(9, device=device)
    train = make_train_step(device, args.batch, lambda: const, lambda losses: None)
    t_train, sd_train = repeat(measure, train, train_steps, args.reps, warmup=5 if device.type == "cuda" else 1)
    results.update(environment(device))
    print(f"device: {results['device']}; torch {results['torch']}; cuda {results['cuda']}")
    print(f"train step, AnytimeResNet(n=3, c=16), batch {args.batch}: {t_train * 1e3:.3f} ms (sd {sd_train * 1e3:.3f})")
    print(f"strategy step: {'eager' if args.compile == 'none' else 'compiled, mode ' + args.compile}")
    results.update(train_step_ms=t_train * 1e3)
    print(f"{'strategy':<16}" + "".join(f"{'K=' + str(k) + ' us':>12}{'ratio':>9}" for k in ks))
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for sname in names:
        row = f"{sname:<16}"
        for K in ks:
            base = torch.rand(K, generator=g).to(device) + 0.1
            pool = [(torch.linspace(2.0, 0.5, K) * torch.exp(0.2 * torch.randn(K, generator=g))).to(device)
                    for _ in range(16)]
            s = stepper_for(create_strategy(sname, base, seed=0, **learning_hparams(sname)), args.compile)
            t, _ = repeat(measure, strategy_step(s, pool, args.compile), args.steps, args.reps, warmup=20)
            worst = max(worst, t / t_train)
            results["strategies"].setdefault(sname, {})[f"K={K}"] = {"us": t * 1e6, "share": t / t_train}
            row += f"{t * 1e6:>12.1f}{100 * t / t_train:>8.2f}%"
        print(row, flush=True)
        write_results(args.out, results)  # after every strategy: a run cut short keeps its rows
    results["worst_share"] = worst
    write_results(args.out, results)
    print(f"worst ratio: {100 * worst:.2f}% of a training step (goal < 1%)")

    if device.type == "cuda":
        print("in-loop overhead at K=9: train step with the strategy minus with constant weights,")
        print("interleaved per repetition (median difference over repetitions):")
        for sname in names:
            s = create_strategy(sname, torch.rand(9, generator=g).to(device) + 0.1, seed=0, **learning_hparams(sname))
            s = stepper_for(s, args.compile)

            def weights(s=s):
                mark_step_begin(args.compile)
                return s.step_weights()

            step = make_train_step(device, args.batch, weights, s.observe)
            for _ in range(5):
                step(), train()
            diffs = [measure(step, train_steps) - measure(train, train_steps) for _ in range(2 * args.reps)]
            d = statistics.median(diffs)
            print(f"  {sname:<16}{d * 1e6:>9.1f} us  ({100 * d / t_train:+.2f}%; spread {statistics.pstdev(diffs) * 1e6:.0f} us)",
                  flush=True)
            results["in_loop_k9"][sname] = {"us": d * 1e6, "share": d / t_train}
            write_results(args.out, results)

if __name__ == "__main__":
    main()
