"""Device-resident loader vs a torch DataLoader doing the same per-sample work (CIFAR-shaped data).

Prints, side by side, images/s of ``DeviceLoader`` and of ``DataLoader(num_workers=0 and 2)`` whose
Dataset pads, crops, flips and normalises one image at a time, and the fraction of an anytime ResNet
(n=3, c=16) training step spent waiting for data with each. On CUDA, times come from CUDA events
after a warm-up epoch; on the CPU from ``perf_counter``. Mean and spread over ``--repeats``.

    python benchmarks/bench_data.py --device cpu
    python benchmarks/bench_data.py --device cuda --images 50000 [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import environment, write_results
from torch.utils.data import DataLoader, Dataset

from adaptive_weights.data import DeviceLoader, make_synthetic, pixel_mean


class _PerSampleDataset(Dataset):
    """The same augmentation as DeviceLoader, one image per call (what a torchvision pipeline does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, pad: int = 4) -> None:
        self.images, self.labels, self.mean, self.pad = images, labels, mean, pad

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(self.images[i], (self.pad,) * 4)
        r, c = torch.randint(0, 2 * self.pad, (2,)).tolist()
        x = x[:, r:r + 32, c:c + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x.float() - self.mean) / 128.0, self.labels[i]


class _Timer:
    """Wall time on the CPU, CUDA events (no mid-run sync) on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return a.elapsed_time(b) / 1000.0
        return b - a


def _to_device(batches, device):
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _make_loaders(images, labels, mean, batch_size, device):
    dev = DeviceLoader(images, labels, batch_size=batch_size, shuffle=True, pad=4, flip=True, mean=mean,
                       seed=0, device=device, drop_last=True)
    out = {"DeviceLoader": dev}
    for w in (0, 2):
        dl = DataLoader(_PerSampleDataset(images, labels, mean), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=w, persistent_workers=w > 0,
                        pin_memory=device.type == "cuda")
        out[f"DataLoader(workers={w})"] = dl
    return out


def _iterate(loader, device):
    it = iter(loader)
    return it if isinstance(loader, DeviceLoader) else _to_device(it, device)


def bench_throughput(loader, device, timer, repeats: int) -> list[float]:
    """Images per second over full epochs (after one warm-up epoch, which also starts the workers)."""
    n = len(loader) * loader.batch_size
    rates = []
    for r in range(repeats + 1):
        start = timer.mark()
        for _batch in _iterate(loader, device):
            pass
        end = timer.mark()
        if r:
            rates.append(n / timer.seconds(start, end))
    return rates


def bench_wait_fraction(loader, device, timer, steps: int, repeats: int, num_classes: int) -> list[float]:
    """Share of (data + training step) time spent producing the batch, for an n=3, c=16 anytime ResNet."""
    from adaptive_weights.models import AnytimeResNet

    torch.manual_seed(0)
    model = AnytimeResNet(n=3, c=16, num_classes=num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fractions = []
    for r in range(repeats + 1):
        marks = []
        it = _iterate(loader, device)
        for _ in range(steps):
            t0 = timer.mark()
            x, y = next(it)
            t1 = timer.mark()
            logits = model(x)  # [K, B, classes]
            loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            marks.append((t0, t1, timer.mark()))
        del it
        if r:  # the first round warms up (allocator, workers, kernels)
            wait = sum(timer.seconds(a, b) for a, b, _ in marks)
            total = sum(timer.seconds(a, c) for a, _, c in marks)
            fractions.append(wait / total)
    return fractions


def _fmt(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    mean = statistics.fmean(values) * scale
    spread = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
    return f"{mean:,.{digits}f} ± {spread:,.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=10_000, help="CIFAR-shaped training images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per wait-fraction round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    p.add_argument("--skip-workers", action="store_true", help="leave out DataLoader(workers=2)")
    p.add_argument("--out", default=None, help="write the results as JSON here (after every loader)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = make_synthetic(args.images, image_size=32, num_classes=10, seed=0)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    mean = pixel_mean(x)
    timer = _Timer(device)
    results: dict = {**environment(device), "images": args.images, "batch_size": args.batch_size, "loaders": {}}
    print(f"device: {results['device']}; {args.images} images 3x32x32, batch {args.batch_size}; "
          f"mean ± sd over {args.repeats} repeats after a warm-up\n")
    print(f"{'loader':<26}{'images/s':>22}{'x DataLoader(0)':>17}{'data wait / step (n=3,c=16)':>32}")
    loaders = _make_loaders(images, labels, mean, args.batch_size, device)
    if args.skip_workers:
        loaders.pop("DataLoader(workers=2)")
    base = None
    for label in ("DataLoader(workers=0)", "DeviceLoader", "DataLoader(workers=2)"):  # baseline first
        if label not in loaders:
            continue
        rates = bench_throughput(loaders[label], device, timer, args.repeats)
        waits = bench_wait_fraction(loaders[label], device, timer, args.steps, args.repeats, 10)
        base = base or statistics.fmean(rates)
        print(f"{label:<26}{_fmt(rates):>22}{statistics.fmean(rates) / base:>16.1f}x"
              f"{_fmt(waits, 100, 2) + ' %':>32}", flush=True)
        rate = statistics.fmean(rates)
        results["loaders"][label] = {"img_s": rate, "vs_DataLoader_0": rate / base,
                                     "data_wait_share": statistics.fmean(waits)}
        write_results(args.out, results)


if __name__ == "__main__":
    main()
