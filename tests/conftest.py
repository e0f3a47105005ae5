"""Shared fixtures: tiny configs that train in a second on the CPU."""

from __future__ import annotations

import os

import pytest
import torch

# Ray, when a test starts it, binds to loopback only (docs/sweeps.md, "On this machine").
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TINY = {
    "data.name": "synthetic",
    "data.synthetic_size": 128,
    "data.synthetic_image_size": 8,
    "data.synthetic_classes": 4,
    "model.n": 1,
    "model.c": 4,
    "train.preset": "smoke",
    "train.epochs": 2,
    "train.batch_size": 32,
    "train.progress": False,
    "train.num_threads": 1,
}


def interrupt_after_epoch(cfg, out_dir, epoch: int) -> int:
    """Train ``cfg`` into ``out_dir`` and stop it (as a kill would) right after epoch ``epoch``'s
    checkpoint; returns the epoch it stopped at."""
    from adaptive_weights.training import train

    class _Stop(Exception):
        pass

    def stop(row, ckpt):
        if row["epoch"] == epoch:
            raise _Stop

    try:
        train(cfg, out_dir=out_dir, report=stop, tensorboard=False)
    except _Stop:
        return epoch
    raise AssertionError(f"the run ended before epoch {epoch}")


@pytest.fixture
def tiny_flat() -> dict:
    """Flat config keys of a run that takes about a second (synthetic 8x8, 3 exits)."""
    return dict(TINY)


def train_interrupted_then_resumed(cfg, out_dir, *, after_epoch: int = 1) -> dict:
    """Train `cfg` into `out_dir`, stop it after epoch `after_epoch` (from its report hook, so the
    epoch's checkpoint is written), resume it to the end; the resumed run's summary."""
    from adaptive_weights.training import train

    class Stop(Exception):
        pass

    def stop(row, ckpt):
        if row["epoch"] == after_epoch:
            raise Stop

    with pytest.raises(Stop):
        train(cfg, out_dir=out_dir, report=stop, tensorboard=False)
    return train(cfg, out_dir=out_dir, resume=True, tensorboard=False)


@pytest.fixture(autouse=True)
def _few_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
