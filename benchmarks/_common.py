"""What the benchmark scripts share: the machine a number was measured on, timing, host-sync counts
and result files that survive a run cut short (each script rewrites its JSON after every row)."""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from adaptive_weights._io import atomic_write_json


def environment(device: torch.device) -> dict:
    """The device's name and the versions a GPU number depends on (torch, CUDA, cuDNN, Python)."""
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_results(path: str | Path | None, results: dict) -> None:
    """Write `results` as JSON to `path` (atomically: a run killed mid-write keeps the last rows)."""
    if path:
        atomic_write_json(Path(path), results)


def timer(device: torch.device) -> Callable[[Callable[[], None], int], float]:
    """Seconds per call of fn, measured over `n` calls (CUDA events on GPU, perf_counter on CPU)."""

    def measure(fn: Callable[[], None], n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3 / n
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    return measure


def syncs_per_call(fn: Callable[[], None], n: int, device: torch.device) -> float | None:
    """Host-device synchronisations per call of `fn` over `n` calls, counted by CUDA's sync debug
    mode (each sync warns once); None on the CPU, where there is nothing to count."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(n):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught) / n


#: aten ops that only make a view or a CPU scalar: dispatched, but no kernel runs on the device
_NO_KERNEL = frozenset({"detach", "view", "_unsafe_view", "slice", "select", "alias", "expand", "reshape",
                        "as_strided", "unsqueeze", "squeeze", "t", "transpose", "permute", "scalar_tensor",
                        "lift_fresh", "_to_copy_noop", "narrow"})


def count_ops(fn: Callable[[], None]) -> tuple[int, int]:
    """(aten ops dispatched, of which kernels) for one call of `fn`: every op seen by a
    TorchDispatchMode, and those that are not a view or a scalar wrapper (each such op is one or
    more device kernels when eager). The eager cost of a small step is about proportional to both."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with _Count() as counter:
        fn()
    return len(counter.ops), sum(op not in _NO_KERNEL for op in counter.ops)
