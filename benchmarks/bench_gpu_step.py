"""Training-step throughput of the library's own step, mode by mode, side by side (CUDA events).

For the CIFAR-size anytime ResNet (c=16, batch 128, synthetic 32x32 data on the device, strategy
`eg` learning) and each n in --n, every mode is timed against fp32 eager:

    fp32 eager | fast (`train.speed fast`: reduce-overhead + channels_last + cudnn.benchmark + fused
    SGD, the GPU default) | fast + bf16 | all (the same as fast + bf16, kept for older tables) |
    compile reduce-overhead (CUDA graphs) | bf16 autocast | channels_last | cudnn.benchmark |
    fused SGD | foreach SGD | compile default

The compiled modes go through `adaptive_weights.compiled.compile_training`, exactly as
`train.compile` does (strategy compiled too when capture-safe). `--project SPEED` also times a 3-epoch run
of `train()` at that `train.speed` on CIFAR-10-shaped synthetic data (50,000 images) plus one evaluation of 10,000 images
per epoch, and projects a 300-epoch run. `--packed 4` times 4 processes training n=9 on one device at
once against one alone (the packing of `--gpus-per-trial 0.25` sweep trials, without Ray). Each mode also reports ms/step, host-device syncs per
step (CUDA's sync debug mode, counted after the timing) and peak device memory. Results print as a
table and go to --out as JSON after every mode, so a run cut short keeps what it measured. On the
CPU (`--device cpu`, small `--c/--batch/--image-size`) it only checks the plumbing.

    python benchmarks/bench_gpu_step.py [--n 3 9] [--modes ...] [--packed 4] [--project auto] [--count-kernels]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import environment, syncs_per_call, timer, write_results

from adaptive_weights.compiled import compile_training, mark_step_begin
from adaptive_weights.config import RunConfig
from adaptive_weights.speed import speed_settings
from adaptive_weights.training import build_run, build_step_plugins, training_step


def _fast_mode() -> dict:
    """`train.speed fast` on CUDA, as measure()'s keywords: the library's GPU default, stated once."""
    fast = speed_settings("fast", torch.device("cuda"))
    return {"compile": fast["compile"], "channels_last": fast["channels_last"],
            "cudnn_benchmark": fast["cudnn_benchmark"], "sgd": "fused" if fast["fused_sgd"] else "default"}


MODES: dict[str, dict] = {  # in the order they are timed: the likeliest GPU defaults first
    "fp32 eager": {},
    "fast": _fast_mode(),  # train.speed auto on a GPU
    "fast + bf16": {**_fast_mode(), "amp": True},
    "all": {"amp": True, "channels_last": True, "cudnn_benchmark": True, "sgd": "fused", "compile": "reduce-overhead"},
    "compile reduce-overhead": {"compile": "reduce-overhead"},
    "bf16 autocast": {"amp": True},
    "channels_last": {"channels_last": True},
    "cudnn.benchmark": {"cudnn_benchmark": True},
    "fused SGD": {"sgd": "fused"},
    "foreach SGD": {"sgd": "foreach"},
    "compile default": {"compile": "default"},
}


def measure(n: int, steps: int, reps: int, device: torch.device, size: dict, *, amp: bool = False,
            channels_last: bool = False, cudnn_benchmark: bool = False, sgd: str = "default",
            compile: str = "none", before_timing: Callable[[], object] | None = None,
            count_kernels: bool = False) -> dict:
    """One mode: images/s (median of `reps` timed repetitions of `steps` steps, after one warm-up
    repetition that includes compilation), host syncs per step and peak device memory.
    `before_timing` is called between the warm-up and the timing (packed processes meet there)."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch._dynamo.reset()  # and free the last mode's graphs: peak memory counts this mode's alone
    gc.collect()
    held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    batch = size["batch"]
    cfg = RunConfig.from_flat({
        "data.name": "synthetic", "data.synthetic_size": batch * steps, "data.synthetic_image_size": size["image"],
        "model.n": n, "model.c": size["c"], "strategy.name": "eg", "train.batch_size": batch,
        "train.device": device.type,
    }).resolve()
    data, model, base, strat = build_run(cfg, device)
    objective, gradient = build_step_plugins(cfg, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    sgd_kw = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(sgd, {})
    opt = torch.optim.SGD(model.parameter_groups(2e-4, base.tolist()), lr=0.05, momentum=0.9, **sgd_kw)
    strat.start_epoch(1)  # learning on
    forward, stepper = compile_training(model, strat, compile)
    data.train.set_epoch(0)
    batches = list(iter(data.train))[:steps]
    if channels_last:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    pool = itertools.cycle(batches)

    def step() -> None:
        x, y = next(pool)
        mark_step_begin(compile)
        training_step(forward, opt, stepper, x, y, objective=objective, gradient=gradient, amp=amp, device=device)

    time_steps = timer(device)
    t0 = time.perf_counter()
    time_steps(step, steps)  # warm-up: compilation, CUDA-graph recording, cuDNN autotuning
    warmup_s = time.perf_counter() - t0
    if before_timing is not None:
        before_timing()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = [batch / time_steps(step, steps) for _ in range(reps)]
    peak = (torch.cuda.max_memory_allocated(device) - held) / 2**20 if device.type == "cuda" else None
    syncs = syncs_per_call(step, min(steps, 10), device)
    launches = launches_per_step(step, device) if count_kernels and compile == "none" else {}
    torch.backends.cudnn.benchmark = False
    img_s = statistics.median(rates)
    return {"img_s": img_s, "step_ms": 1e3 * batch / img_s, "min": min(rates), "max": max(rates),
            "warmup_s": warmup_s, "syncs_per_step": syncs, "peak_mem_mib": peak,
            "strategy_compiled": stepper is not strat, **launches}


def launches_per_step(step: Callable[[], None], device: torch.device, n: int = 3) -> dict:
    """What the host does per eager step (torch.profiler over `n` steps): CUDA kernels launched,
    aten operators dispatched, of them dtype casts (`aten::_to_copy`, what autocast adds per weight),
    and the host's time per step without waiting for the GPU. A step whose host time is close to
    its wall time is launch-bound: every added kernel (a cast) makes it slower."""
    from torch.profiler import ProfilerActivity, profile

    if device.type != "cuda":
        return {}
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        host_s = (time.perf_counter() - t0) / n
        torch.cuda.synchronize(device)
    events = prof.events()
    kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    aten = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU and e.name.startswith("aten::")]
    casts = sum(1 for e in aten if e.name == "aten::_to_copy")
    return {"kernels_per_step": kernels / n, "aten_ops_per_step": len(aten) / n, "casts_per_step": casts / n,
            "host_ms_per_step_profiled": 1e3 * host_s}


def _packed_worker(barrier, results, args: tuple, mode: str) -> None:
    try:
        results.put(measure(*args, **MODES[mode], before_timing=barrier.wait)["img_s"])
    except Exception as err:  # noqa: BLE001 - reported by the parent; the others must not wait for it
        barrier.abort()
        results.put(f"{type(err).__name__}: {err}")


def packed(procs: int, n: int, steps: int, reps: int, device: torch.device, size: dict, mode: str) -> dict:
    """Aggregate images/s of `procs` processes training one net each on one device at the same time
    (what `--gpus-per-trial 1/procs` sweep trials do, without Ray), against one such process alone.
    The processes start their timing together, after each one's warm-up."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    rates = {}
    for k in (1, procs):
        barrier, queue = ctx.Barrier(k), ctx.Queue()
        workers = [ctx.Process(target=_packed_worker, args=(barrier, queue, (n, steps, reps, device, size), mode),
                               daemon=True) for _ in range(k)]  # daemons: a cut-short parent ends them
        for w in workers:
            w.start()
        rates[k] = [queue.get(timeout=300) for _ in workers]
        for w in workers:
            w.join()
        if errors := [r for r in rates[k] if isinstance(r, str)]:
            raise RuntimeError(f"{k} packed process(es): {errors[0]}")
    total = sum(rates[procs])
    return {"mode": mode, "n": n, "procs": procs, "alone_img_s": rates[1][0], "packed_img_s": rates[procs],
            "packed_total_img_s": total, "vs_alone": total / rates[1][0]}


def project(speed: str, device: torch.device, size: dict, images: int = 50_000, eval_images: int = 10_000) -> dict:
    """Wall time of a 3-epoch CIFAR-10-shaped run of `train()` (n=9, fp32, `train.speed SPEED`: `auto`
    is what a user gets without flags) and its 300-epoch projection: epoch 1 (compilation, or loading
    it from the compile cache, included) + 299 x the mean later epoch, each with a 10,000-image
    evaluation. Reports the execution settings the run recorded."""
    import json
    import tempfile

    from adaptive_weights.evaluate import evaluate_exits
    from adaptive_weights.speed import SPEED_KEYS
    from adaptive_weights.training import train

    flat = {"data.name": "synthetic", "data.synthetic_size": images, "data.synthetic_image_size": size["image"],
            "model.n": 9, "model.c": size["c"], "strategy.name": "eg", "train.batch_size": size["batch"],
            "train.epochs": 3, "train.device": device.type, "train.speed": speed, "train.progress": False}
    marks: list[float] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(RunConfig.from_flat(flat), out_dir=Path(tmp) / "run", tensorboard=False,
              report=lambda metrics, ckpt: marks.append(time.perf_counter()))
        used = json.loads((Path(tmp) / "run" / "config.json").read_text())["config"]["train"]
        cfg = RunConfig.from_flat(flat).resolve()
        _, model, _, _ = build_run(cfg, device)
    settings = {k: used[k] for k in SPEED_KEYS}
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    # the synthetic test split is small; CIFAR's has 10,000 images: time that evaluation on its own
    shape = (eval_images, 3, size["image"], size["image"])
    x, y = torch.randn(shape, device=device), torch.randint(0, 10, (eval_images,), device=device)
    loader = [(x[i:i + 500], y[i:i + 500]) for i in range(0, len(y), 500)]
    evaluate = lambda: evaluate_exits(model, loader, channels_last=settings["channels_last"])  # noqa: E731
    evaluate()  # warm-up
    eval_s = timer(device)(evaluate, 1)
    epochs = [marks[0] - t0] + [b - a for a, b in zip(marks, marks[1:], strict=False)]
    later = statistics.mean(epochs[1:]) + eval_s
    return {"speed": speed, "settings": settings, "images": images, "epoch_s": epochs,
            "eval_10k_s": eval_s, "projected_300_epochs_min": (epochs[0] + eval_s + 299 * later) / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu: a plumbing check at small sizes, nothing to measure")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n", type=int, nargs="+", default=[3, 9])
    p.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES), metavar="MODE",
                   help="the modes to time (none: only --packed and --project)")
    p.add_argument("--c", type=int, default=16, help="channels of the first stage")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--project", default=None, choices=["auto", "fast", "exact"],
                   help="also project a 300-epoch run of train() at this train.speed")
    p.add_argument("--project-images", type=int, default=50_000, help="training images per projected epoch")
    p.add_argument("--packed", type=int, default=0, metavar="PROCS",
                   help="also time PROCS processes sharing the device (n=9) against one alone")
    p.add_argument("--packed-mode", default="fp32 eager", choices=list(MODES), help="the mode of --packed")
    p.add_argument("--count-kernels", action="store_true",
                   help="eager modes: also count kernels, aten ops and casts per step (torch.profiler)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu_step: no CUDA device here; nothing to measure (run it on a GPU node)")
        return
    size = {"c": args.c, "batch": args.batch, "image": args.image_size}
    results: dict = {**environment(device), **size, "strategy": "eg", "steps": {}}
    print(f"device: {results['device']} | torch {results['torch']} | cuda {results['cuda']} | c={args.c} "
          f"batch {args.batch} {args.image_size}x{args.image_size}, strategy eg", flush=True)
    for n in args.n if args.modes else []:
        rows = results["steps"][f"n={n}"] = {}
        for mode in args.modes:
            try:
                rows[mode] = measure(n, args.steps, args.reps, device, size, **MODES[mode],
                                     count_kernels=args.count_kernels)
            except Exception as err:  # noqa: BLE001 - one failing mode must not lose the others
                rows[mode] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
                print(f"n={n} {mode:>26}: FAILED {rows[mode]['error']}", flush=True)
                write_results(args.out, results)
                continue
            r, ref = rows[mode], rows.get("fp32 eager", {}).get("img_s")
            r["vs_fp32_eager"] = r["img_s"] / ref if ref else None
            ratio = f"{r['vs_fp32_eager']:5.2f}x" if ref else "  -  "
            peak = f"{r['peak_mem_mib']:,.0f} MiB" if r["peak_mem_mib"] is not None else "-"
            print(f"n={n} {mode:>26}: {r['img_s']:9,.0f} img/s {r['step_ms']:7.2f} ms/step {ratio} fp32 eager | "
                  f"syncs/step {r['syncs_per_step']} | peak {peak} | spread {r['min']:,.0f}..{r['max']:,.0f} | "
                  f"warm-up {r['warmup_s']:.1f} s | strategy compiled: {r['strategy_compiled']}"
                  + (f" | kernels/step {r['kernels_per_step']:.0f}, aten ops {r['aten_ops_per_step']:.0f}, casts "
                     f"{r['casts_per_step']:.0f}, host {r['host_ms_per_step_profiled']:.1f} ms/step"
                     if "kernels_per_step" in r else ""), flush=True)
            write_results(args.out, results)  # after every mode: a run cut short keeps what it measured
    if args.packed:
        try:  # a failure here must not lose the projection after it
            results["packed"] = r = packed(args.packed, 9, args.steps, args.reps, device, size, args.packed_mode)
            print(f"{args.packed} processes sharing the device ({args.packed_mode}, n=9): "
                  f"{r['packed_total_img_s']:,.0f} img/s in all, {r['vs_alone']:.2f}x one alone "
                  f"({r['alone_img_s']:,.0f} img/s)", flush=True)
        except Exception as err:  # noqa: BLE001
            results["packed"] = {"error": f"{type(err).__name__}: {err}"}
            print(f"packed: FAILED {results['packed']['error']}", flush=True)
        write_results(args.out, results)
    if args.project:
        results["projection"] = project(args.project, device, size=size, images=args.project_images)
        print(f"300-epoch projection (train.speed {args.project}: {results['projection']['settings']}): "
              f"{results['projection']['projected_300_epochs_min']:.1f} min "
              f"(epochs {[round(e, 1) for e in results['projection']['epoch_s']]} s, "
              f"eval 10k {results['projection']['eval_10k_s']:.2f} s)")
        write_results(args.out, results)


if __name__ == "__main__":
    main()
