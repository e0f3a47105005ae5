"""The strategies of a git revision against the working tree's, side by side in one process.

A strategy change is measured before and after on the same machine at the same moment (a shared or
a GPU machine drifts between runs): the revision's `strategies/` folder is exported (`git archive`)
into a temporary package, its classes are built next to the working tree's on the same base weights
and seed, and each pair is timed interleaved (median of --reps repetitions of --steps steps of
`step_weights()` + `observe()`, learning on). Printed per strategy: kernels per step (aten ops that
are not views, as `bench_strategies --count-ops`), microseconds per step and the share of one n=3
training step, and whether both ended in the same state. Then a pack's N members (cycling through --pack-strategies) stepped one by one with
the revision's classes against the working tree's `StrategyGroups`, and whether both give the same
weights and states (they must: an optimisation keeps every number).

    python benchmarks/bench_strategies_versus.py [REV] [--device cuda] [--k 27] [--members 16]
        [--compile none|default|reduce-overhead] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import torch
from _common import count_ops, environment, timer, write_results
from bench_strategies import learning_hparams, make_train_step

from adaptive_weights.compiled import mark_step_begin
from adaptive_weights.strategies import CompiledSteps, StrategyGroups, get_strategy_class, list_strategies

ROOT = Path(__file__).resolve().parent.parent


def load_revision(rev: str, into: Path):
    """The registry and `CompiledSteps` of `rev`'s strategies, imported as the package `strategies_at_rev`."""
    blob = subprocess.run(["git", "archive", rev, "strategies"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    package = into / "strategies_at_rev"
    (into / "strategies").rename(package)
    (package / "__init__.py").write_text('"""A revision\'s strategies, for a benchmark."""\n')
    sys.path.insert(0, str(into))
    with warnings.catch_warnings():  # its registry sees the working tree's entry points: duplicates
        warnings.simplefilter("ignore")
        importlib.import_module("strategies_at_rev.builtin")
        registry = importlib.import_module("strategies_at_rev._api").STRATEGIES
        registry.list()
    return registry, importlib.import_module("strategies_at_rev._capture").CompiledSteps


def median_pair(measure, fns: dict, steps: int, reps: int) -> dict:
    for fn in fns.values():
        measure(fn, max(1, steps // 10))
    times: dict = {k: [] for k in fns}
    for _ in range(reps):  # interleaved: both see the same machine load
        for k, fn in fns.items():
            times[k].append(measure(fn, steps))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", nargs="?", default="HEAD",
                    help="the git revision to compare with (default HEAD: what the uncommitted change gives)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--k", type=int, default=27)
    ap.add_argument("--steps", type=int, default=0, help="steps per repetition (default: 200 GPU, 100 CPU)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--members", type=int, default=16, help="members of the pack part (0: skip it)")
    ap.add_argument("--pack-strategies", nargs="+", default=["static", "aann", "eg", "rwm"])
    ap.add_argument("--compile", default="none", choices=("none", "default", "reduce-overhead"))
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device, K = torch.device(args.device), args.k
    measure = timer(device)
    steps = args.steps or (200 if device.type == "cuda" else 100)
    results: dict = {"rev": args.rev, "k": K, "compile": args.compile, **environment(device), "strategies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        old_registry, old_compiled = load_revision(args.rev, Path(tmp))
        train = make_train_step(device, 128, lambda: torch.ones(9, device=device), lambda losses: None)
        for _ in range(3):
            train()
        t_train = statistics.median(measure(train, 10 if device.type == "cuda" else 2) for _ in range(5))
        results["train_step_ms"] = 1e3 * t_train
        print(f"{results['device']}, torch {torch.__version__}; n=3 c=16 batch 128 step {t_train * 1e3:.3f} ms; "
              f"strategy step {args.compile if args.compile != 'none' else 'eager'}, K={K}, {args.rev} vs working tree")
        print(f"{'strategy':<12} {'kernels':>8} {'now':>5} {'us':>9} {'now':>8} {'share':>7} {'now':>7} {'same':>6}")
        g = torch.Generator().manual_seed(0)
        pool = [(torch.linspace(2.0, 0.5, K) * torch.exp(0.2 * torch.randn(K, generator=g))).to(device)
                for _ in range(16)]
        for name in args.strategies or list_strategies():
            if name not in old_registry.list():
                continue
            base = (torch.rand(K, generator=g) + 0.1).to(device)
            fns, objs = {}, {}
            for version, cls, compiled in (("rev", old_registry.get(name), old_compiled),
                                           ("now", get_strategy_class(name), CompiledSteps)):
                stepper = objs[version] = cls(base, seed=0, **learning_hparams(name))
                if args.compile != "none":  # each version's own CompiledSteps, as train.compile runs it
                    stepper = compiled(stepper, **({} if args.compile == "default" else {"mode": args.compile}))
                fns[version] = _cycle(stepper, pool, args.compile)
            for fn in fns.values():  # past the first step and the draw cache's refill
                fn(), fn()
            kernels = {v: count_ops(fn)[1] for v, fn in fns.items()} if args.compile == "none" else {}
            t = median_pair(measure, fns, steps, args.reps)
            a, b = objs["rev"].state_dict()["tensors"], objs["now"].state_dict()["tensors"]
            same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same steps ran
            results["strategies"][name] = {"kernels": kernels, "us": {v: 1e6 * s for v, s in t.items()},
                                           "share": {v: s / t_train for v, s in t.items()}, "same_state": same}
            kr, kn = kernels.get("rev", "-"), kernels.get("now", "-")
            print(f"{name:<12} {kr:>8} {kn:>5} {t['rev'] * 1e6:>9.1f} {t['now'] * 1e6:>8.1f} "
                  f"{100 * t['rev'] / t_train:>6.2f}% {100 * t['now'] / t_train:>6.2f}% {str(same):>6}", flush=True)
            write_results(args.out, results)
        if args.members:
            results["pack"] = _pack(args, old_registry, device, measure, steps)
            write_results(args.out, results)


def _cycle(stepper, pool, compile_mode: str):
    i = [0]

    def one() -> None:
        mark_step_begin(compile_mode)
        stepper.step_weights()
        stepper.observe(pool[i[0] % len(pool)])
        i[0] += 1

    return one


def _pack(args, old_registry, device: torch.device, measure, steps: int) -> dict:
    """N members one by one with the revision's classes against `StrategyGroups` of the working tree's."""
    K, n, names = args.k, args.members, args.pack_strategies

    def build(get):
        return [get(names[i % len(names)])(torch.linspace(1.0, 2.0, K, device=device), seed=i,
                                          **learning_hparams(names[i % len(names)])) for i in range(n)]

    old, new = build(old_registry.get), build(get_strategy_class)
    groups = StrategyGroups(new)
    losses = torch.linspace(2.0, 0.5, n * K, device=device)

    def one_by_one():
        w = torch.cat([s.step_weights() for s in old])
        for s, part in zip(old, losses.split(K), strict=True):
            s.observe(part)
        return w

    def grouped():
        w = groups.step_weights()
        groups.observe(losses)
        return w

    same = all(torch.equal(one_by_one(), grouped()) for _ in range(3))
    same = same and all(torch.equal(a.state_dict()["tensors"][k], v) for a, b in zip(old, new, strict=True)
                        for k, v in b.state_dict()["tensors"].items())
    kernels = {"rev": count_ops(one_by_one)[1], "now": count_ops(grouped)[1]}
    t = median_pair(measure, {"rev": one_by_one, "now": grouped}, max(1, steps // 4), args.reps)
    print(f"pack of {n} ({'/'.join(names)}, K={K}): kernels per step {kernels['rev']} -> {kernels['now']}; "
          f"{t['rev'] * 1e3:.3f} -> {t['now'] * 1e3:.3f} ms per step ({t['rev'] / t['now']:.1f}x); "
          f"same weights and states: {same}")
    return {"kernels": kernels, "ms": {v: 1e3 * s for v, s in t.items()}, "same": same}


if __name__ == "__main__":
    main()
