"""Packed runs against the same runs one after another: images/s in all, ms/step, peak memory.

For each N in --ns, N members of one anytime ResNet (default n=9, c=16, batch 128; seeds 0..N-1,
strategies cycling through static, aann, eg, rwm on the sieve scheme) train as one packed network
(`adaptive_weights.packing.build_pack`, the step `train_packed` runs), side by side with one member
trained alone by the library's own step (`train.training_step`): N runs one after another take N
times one run's time, so their images/s in all is one run's. Each mode times both the same way
(median of --reps repetitions of --steps steps after one warm-up repetition that includes any
compilation; CUDA events on a GPU). The strategies' share of the packed step (their
`step_weights` + `observe` calls for all N members, timed alone) is reported twice: as the pack
steps them (`strategies`: members of one class batched, `StrategyGroups`) and one member after
another (`per member`, the loop packs ran before batching), side by side on the same objects.

Modes: `eager` (fp32, `train.speed exact`), `fast eager` (bf16 autocast + channels_last +
cudnn.benchmark + fused SGD, not compiled), `compiled` (`train.compile default`) and `fast` (what a
pack gets without flags: `train.speed fast`, on CUDA CUDA graphs too). Results print as a table and go
to --out as JSON after every row, so a run cut short keeps what it measured.

    python benchmarks/bench_packed.py [--device cuda] [--ns 1 4 16 32] [--modes eager compiled] [--out FILE]
    python benchmarks/bench_packed.py --device cpu --c 4 --n 1 --batch 16 --image-size 16 --ns 1 4   # CPU
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch
from _common import environment, timer, write_results

from adaptive_weights.compiled import compile_training, mark_step_begin
from adaptive_weights.config import RunConfig
from adaptive_weights.packing import build_pack
from adaptive_weights.speed import apply_backend_settings, resolve_speed, sgd_kernel
from adaptive_weights.training import build_run, build_step_plugins, training_step

STRATEGIES = ("static", "aann", "eg", "rwm")
MODES = {  # config keys; "fast" is what a run gets without flags on a GPU (train.speed auto)
    "eager": {"train.speed": "exact"},
    "fast eager": {"train.speed": "exact", "train.amp": True, "train.channels_last": True,
                   "train.cudnn_benchmark": True, "train.fused_sgd": True},
    "compiled": {"train.speed": "exact", "train.compile": "default"},
    "fast": {"train.speed": "fast"},
}


def _config(args, i: int, mode: dict) -> RunConfig:
    flat = {"data.name": "synthetic", "data.synthetic_size": args.batch * 4, "data.synthetic_image_size": args.image_size,
            "data.synthetic_classes": 10, "model.n": args.n, "model.c": args.c, "train.batch_size": args.batch,
            "train.epochs": 10, "train.device": args.device, "train.progress": False, "train.seed": i,
            "scheme.name": "sieve", "strategy.name": STRATEGIES[i % len(STRATEGIES)], "name": f"m{i}"}
    flat.update({k: v for k, v in mode.items() if k.startswith("train.")})
    return RunConfig.from_flat(flat).resolve()


def _median_time(step, measure, args, reps: int | None = None) -> float:
    measure(step, args.steps)  # warm-up: compilation, cuDNN's algorithm search
    return statistics.median(measure(step, args.steps) for _ in range(reps or args.reps))


def _packed(args, n: int, mode: dict, device: torch.device, measure) -> dict:
    cfgs = [_config(args, i, mode) for i in range(n)]
    pack = build_pack(cfgs, device)
    for m in pack.members:
        m.strategy.start_epoch(1)  # learners past their warm-up epoch: they learn in every step
    batches = [next(iter(m.data.train)) for m in pack.members]
    x = torch.cat([b[0] for b in batches], dim=1)
    y = torch.stack([b[1] for b in batches], dim=1)
    if cfgs[0].train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    amp, compile_mode = cfgs[0].train.amp, pack.cfg.train.compile  # the pack's: train.speed resolved

    def step():
        mark_step_begin(compile_mode)
        pack.step(x, y, amp)

    t0 = time.perf_counter()
    measure(step, 1)
    warmup = time.perf_counter() - t0
    seconds = _median_time(step, measure, args)
    losses = torch.linspace(2.0, 0.5, sum(pack.sizes), device=device)

    def batched():
        pack.strategies.step_weights()
        pack.strategies.observe(losses)

    def per_member():
        torch.cat([m.strategy.step_weights() for m in pack.active])
        for m, part in zip(pack.active, losses.split(pack.sizes), strict=True):
            m.strategy.observe(part)

    batched_s, per_member_s = [], []
    for _ in range(args.reps):  # interleaved: both see the same machine load
        batched_s.append(_median_time(batched, measure, args, reps=1))
        per_member_s.append(_median_time(per_member, measure, args, reps=1))
    batched_m, per_member_m = statistics.median(batched_s), statistics.median(per_member_s)
    return {"ms_per_step": 1e3 * seconds, "img_s": n * args.batch / seconds, "first_step_s": warmup,
            "strategy_share": batched_m / seconds, "strategy_ms": 1e3 * batched_m,
            "strategy_share_per_member": per_member_m / seconds, "strategy_ms_per_member": 1e3 * per_member_m,
            "strategies_batched": pack.strategies.batched}


def _alone(args, mode: dict, device: torch.device, measure) -> dict:
    cfg = resolve_speed(_config(args, 2, mode), device)  # an `eg` member: a learner
    apply_backend_settings(cfg)
    torch.manual_seed(0)
    data, model, _, strategy = build_run(cfg, device)
    strategy.start_epoch(1)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, **sgd_kernel(cfg))
    objective, gradient = build_step_plugins(cfg, model)
    forward, stepper = compile_training(gradient.forward_fn(), strategy, cfg.train.compile)
    x, y = next(iter(data.train))
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        mark_step_begin(cfg.train.compile)
        training_step(forward, optimizer, stepper, x, y, objective=objective, gradient=gradient,
                      amp=cfg.train.amp, device=device)

    seconds = _median_time(step, measure, args)
    return {"ms_per_step": 1e3 * seconds, "img_s": args.batch / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ns", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--modes", nargs="+", default=None, choices=list(MODES),
                   help="default: eager and compiled (CPU), fast eager and eager (CUDA)")
    p.add_argument("--n", type=int, default=9, help="units per stage (K = 3n exits)")
    p.add_argument("--c", type=int, default=16)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON results, rewritten after every row")
    args = p.parse_args()
    device = torch.device(args.device)
    modes = args.modes or (["fast eager", "eager"] if device.type == "cuda" else ["eager", "compiled"])
    measure = timer(device)
    results = {"environment": environment(device), "args": vars(args), "rows": []}
    print(f"{results['environment']['device']}, torch {torch.__version__}; n={args.n} c={args.c} batch {args.batch}")
    print(f"{'mode':<11} {'N':>3} {'packed img/s':>13} {'one after another':>18} {'ratio':>6} {'ms/step':>8} "
          f"{'strategies':>10} {'per member':>10} {'peak MiB':>9}")
    for mode_name in modes:
        mode = MODES[mode_name]
        alone = _alone(args, mode, device, measure)
        for n in args.ns:
            gc.collect()
            torch._dynamo.reset()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                row = _packed(args, n, mode, device, measure)
            except torch.OutOfMemoryError:
                print(f"{mode_name:<11} {n:>3} out of memory")
                continue
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            row.update(mode=mode_name, members=n, alone_img_s=alone["img_s"], alone_ms_per_step=alone["ms_per_step"],
                       ratio=row["img_s"] / alone["img_s"], peak_mib=peak)
            results["rows"].append(row)
            write_results(args.out, results)
            print(f"{mode_name:<11} {n:>3} {row['img_s']:>13,.0f} {alone['img_s']:>18,.0f} {row['ratio']:>5.2f}x "
                  f"{row['ms_per_step']:>8.1f} {100 * row['strategy_share']:>9.1f}% "
                  f"{100 * row['strategy_share_per_member']:>9.1f}% {'' if peak is None else f'{peak:,.0f}':>9}", flush=True)


if __name__ == "__main__":
    main()
