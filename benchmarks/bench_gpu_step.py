"""Training-step throughput of the library's own step, mode by mode, side by side (CUDA events).

For the CIFAR-size anytime ResNet (c=16, batch 128, synthetic 32x32 data on the device, strategy
`eg` learning) and each n in --n, every mode is timed against fp32 eager:

    fp32 eager | bf16 autocast | channels_last | cudnn.benchmark | foreach SGD | fused SGD |
    compile default | compile reduce-overhead (CUDA graphs) | all (bf16 + channels_last +
    cudnn.benchmark + fused SGD + reduce-overhead)

The compiled modes go through `adaptive_weights.compiled.compile_training`, exactly as
`train.compile` does (strategy compiled too when capture-safe). `--project` also times a 3-epoch run
of `train()` on CIFAR-10-shaped synthetic data (50,000 images) plus one evaluation of 10,000 images
per epoch, and projects a 300-epoch run. Results print as a table and go to --out as JSON.

    python benchmarks/bench_gpu_step.py [--n 3 9] [--modes ...] [--project reduce-overhead] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from adaptive_weights.compiled import compile_training, mark_step_begin
from adaptive_weights.config import RunConfig
from adaptive_weights.train import build_run, build_step_plugins, training_step

MODES: dict[str, dict] = {
    "fp32 eager": {},
    "bf16 autocast": {"amp": True},
    "channels_last": {"channels_last": True},
    "cudnn.benchmark": {"cudnn_benchmark": True},
    "foreach SGD": {"sgd": "foreach"},
    "fused SGD": {"sgd": "fused"},
    "compile default": {"compile": "default"},
    "compile reduce-overhead": {"compile": "reduce-overhead"},
    "all": {"amp": True, "channels_last": True, "cudnn_benchmark": True, "sgd": "fused", "compile": "reduce-overhead"},
}


def measure(n: int, steps: int, reps: int, device: torch.device, *, amp: bool = False,
            channels_last: bool = False, cudnn_benchmark: bool = False, sgd: str = "default",
            compile: str = "none") -> dict:
    """Images/s of `reps` timed repetitions of `steps` steps (after one warm-up repetition)."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch._dynamo.reset()
    cfg = RunConfig.from_flat({
        "data.name": "synthetic", "data.synthetic_size": 128 * steps, "data.synthetic_image_size": 32,
        "model.n": n, "model.c": 16, "strategy.name": "eg", "train.batch_size": 128,
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
    t0 = time.perf_counter()
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
            mark_step_begin(compile)
            training_step(forward, opt, stepper, x, y, objective=objective, gradient=gradient, amp=amp,
                          device=device)
        end.record()
        torch.cuda.synchronize()
        if rep == 0:
            warmup_s = time.perf_counter() - t0  # includes compilation
        else:
            rates.append(128 * steps / (start.elapsed_time(end) / 1000))
    torch.backends.cudnn.benchmark = False
    return {"img_s": statistics.mean(rates), "min": min(rates), "max": max(rates), "warmup_s": warmup_s,
            "strategy_compiled": stepper is not strat}


def project(compile: str, device: torch.device, amp: bool, channels_last: bool, images: int = 50_000,
            eval_images: int = 10_000) -> dict:
    """Wall time of a 3-epoch CIFAR-10-shaped run of `train()` (n=9) and its 300-epoch projection:
    epoch 1 (compilation included) + 299 x the mean later epoch, each with a 10,000-image evaluation."""
    import tempfile

    from adaptive_weights.evaluate import evaluate_exits
    from adaptive_weights.train import train

    flat = {"data.name": "synthetic", "data.synthetic_size": images, "data.synthetic_image_size": 32,
            "model.n": 9, "model.c": 16, "strategy.name": "eg", "train.batch_size": 128, "train.epochs": 3,
            "train.device": device.type, "train.compile": compile, "train.amp": amp,
            "train.channels_last": channels_last, "train.progress": False}
    marks: list[float] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(RunConfig.from_flat(flat), out_dir=Path(tmp) / "run", tensorboard=False,
              report=lambda metrics, ckpt: marks.append(time.perf_counter()))
        cfg = RunConfig.from_flat(flat).resolve()
        _, model, _, _ = build_run(cfg, device)
    # the synthetic test split has 128 images; CIFAR's has 10,000: time that evaluation on its own
    x, y = torch.randn(eval_images, 3, 32, 32, device=device), torch.randint(0, 10, (eval_images,), device=device)
    loader = [(x[i:i + 500], y[i:i + 500]) for i in range(0, len(y), 500)]
    evaluate_exits(model, loader, amp=amp, channels_last=channels_last)
    torch.cuda.synchronize()
    te = time.perf_counter()
    evaluate_exits(model, loader, amp=amp, channels_last=channels_last)
    torch.cuda.synchronize()
    eval_s = time.perf_counter() - te
    epochs = [marks[0] - t0] + [b - a for a, b in zip(marks, marks[1:], strict=False)]
    later = statistics.mean(epochs[1:]) + eval_s
    return {"mode": compile, "amp": amp, "channels_last": channels_last, "epoch_s": epochs, "eval_10k_s": eval_s,
            "projected_300_epochs_min": (epochs[0] + eval_s + 299 * later) / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n", type=int, nargs="+", default=[3, 9])
    p.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES), metavar="MODE")
    p.add_argument("--project", default=None, help="also project a 300-epoch run in this train.compile mode")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu_step: no CUDA device here; nothing to measure (run it on a GPU node)")
        return
    device = torch.device("cuda")
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "date": time.strftime("%Y-%m-%d"), "steps": {}}
    print(f"device: {results['device']} | torch {results['torch']} | c=16 batch 128, strategy eg")
    for n in args.n:
        rows = results["steps"][f"n={n}"] = {}
        for mode in args.modes:
            try:
                rows[mode] = measure(n, args.steps, args.reps, device, **MODES[mode])
            except Exception as err:  # noqa: BLE001 - one failing mode must not lose the others
                rows[mode] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
                print(f"n={n} {mode:>26}: FAILED {rows[mode]['error']}", flush=True)
                continue
            r, ref = rows[mode], rows.get("fp32 eager", {}).get("img_s")
            ratio = f"{r['img_s'] / ref:5.2f}x" if ref else "  -  "
            print(f"n={n} {mode:>26}: {r['img_s']:9,.0f} img/s  {ratio} fp32 eager  (spread {r['min']:,.0f}"
                  f"..{r['max']:,.0f}; warm-up {r['warmup_s']:.1f} s; strategy compiled: {r['strategy_compiled']})",
                  flush=True)
            if args.out:  # after every mode: a run cut short keeps what it measured
                args.out.write_text(json.dumps(results, indent=1))
    if args.project:
        all_on = args.project != "none"
        results["projection"] = project(args.project, device, amp=all_on, channels_last=all_on)
        print(f"300-epoch projection ({args.project}): {results['projection']['projected_300_epochs_min']:.1f} min "
              f"(epochs {[round(e, 1) for e in results['projection']['epoch_s']]} s, "
              f"eval 10k {results['projection']['eval_10k_s']:.2f} s)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
