"""Data-parallel runs (DDP over gloo on loopback): two processes train the run one process trains.

One 2-process run (``torch.multiprocessing``), one 1-process run and one ``torchrun`` resume cover:
the same per-exit errors within a small tolerance (BatchNorm normalises over each rank's slice, so
the runs are close, not bit-equal), bit-equal strategy states on the two ranks, a run directory
written by rank 0 alone, and a resume from a checkpoint of either world size in the other.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import TINY

from adaptive_weights.config import RunConfig
from adaptive_weights.data import DeviceLoader
from adaptive_weights.distributed import _destroy
from adaptive_weights.errors import RefusedError
from adaptive_weights.training import train

REPO = Path(__file__).resolve().parent.parent
STRATEGY = {"strategy.name": "eg", "strategy.warmup_epochs": 0}  # learns from the losses, draws exits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snapshot_after_first_epoch(run_dir: Path, snapshot: Path):
    """A report hook keeping a copy of the run directory as it was after epoch 1."""
    def report(row, ckpt):
        if row["epoch"] == 1 and ckpt.exists():
            shutil.copytree(run_dir, snapshot)
    return report


def _rank_main(rank: int, world_size: int, port: int, flat: dict, out: str) -> None:
    """One rank of the 2-process run: its own out_dir when not rank 0 (it must stay unwritten), its
    strategy state saved for the comparison."""
    import adaptive_weights.training as train_module

    faulthandler.enable()  # a rank killed by a signal prints where each thread was
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    built = {}
    build_run = train_module.build_run

    def capture(*args, **kw):
        built["run"] = build_run(*args, **kw)
        return built["run"]

    train_module.build_run = capture
    out_dir = Path(out) / ("run" if rank == 0 else f"rank{rank}-run")
    try:
        train(RunConfig.from_flat(flat), out_dir=out_dir, tensorboard=False,
              report=_snapshot_after_first_epoch(out_dir, Path(out) / "after-epoch-1") if rank == 0 else None)
        torch.save(built["run"][3].state_dict(), Path(out) / f"strategy-rank{rank}.pt")
    finally:
        # drop every reference to the run (its DDP wrapper holds the gloo group) before the group
        # goes: one left for the interpreter's teardown can abort this rank after it succeeded
        train_module.build_run = build_run
        built.clear()
    torch.distributed.barrier()  # neither rank tears down while the other still talks to it
    _destroy()  # the library's exit hook: collect what still holds the group, then destroy it


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _assert_bit_equal(a, b, where: str = "state") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_bit_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


TOL = 0.08  # per-exit error; 128 test images, a few steps of per-rank BatchNorm apart


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-process run (mp.spawn) and the 1-process run of the same config and global batch."""
    flat = {**TINY, **STRATEGY}
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(2, _free_port(), flat, str(out)), nprocs=2, join=True)
    single = out / "single"
    train(RunConfig.from_flat(flat), out_dir=single, tensorboard=False,
          report=_snapshot_after_first_epoch(single, out / "single-after-epoch-1"))
    return flat, out


def test_two_processes_train_the_one_process_run(runs):
    flat, out = runs
    two, one = _summary(out / "run"), _summary(out / "single")
    assert (two["world_size"], two["backend"]) == (2, "gloo")
    assert (one["world_size"], one["backend"]) == (1, None)
    meta = json.loads((out / "run" / "config.json").read_text())
    assert (meta["world_size"], meta["backend"]) == (2, "gloo")
    assert two["steps"] == one["steps"]  # global batch: the same steps per epoch
    for split in ("val", "test"):
        assert _close(two["errors"][split], one["errors"][split], TOL), (two["errors"], one["errors"])
    # the strategies saw the same averaged losses: identical state, generator included
    a, b = (torch.load(out / f"strategy-rank{r}.pt", weights_only=True) for r in (0, 1))
    _assert_bit_equal(a, b)
    assert a["steps"] == two["steps"] and a["tensors"]["log_w"].ne(0).any()  # it did learn
    # rank 0 alone wrote: rank 1's own out_dir was never created, rank 0's has one row per epoch
    assert not (out / "rank1-run").exists()
    rows = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    # the checkpoint holds the unwrapped model
    state = torch.load(out / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])


def test_resume_two_process_checkpoint_in_one_process(runs):
    flat, out = runs
    resumed = train(RunConfig.from_flat(flat), out_dir=out / "after-epoch-1", resume=True, tensorboard=False)
    straight = _summary(out / "run")
    assert resumed["world_size"] == 1 and resumed["epochs"] == 2 and resumed["steps"] == straight["steps"]
    # each world size it trained with, from where (a resume recorded only the last one)
    segments = [{"from_epoch": 0, "from_batch": 0, "world_size": 2, "backend": "gloo"},
                {"from_epoch": 1, "from_batch": 0, "world_size": 1, "backend": None}]
    assert resumed["segments"] == segments
    assert json.loads((out / "after-epoch-1" / "config.json").read_text())["segments"] == segments
    assert straight["segments"] == segments[:1]
    assert _close(resumed["errors"]["test"], straight["errors"]["test"], TOL)
    rows = (out / "after-epoch-1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_resume_one_process_checkpoint_with_torchrun(runs):
    """The CLI under torchrun: ``-m adaptive_weights.cli train --resume`` on two gloo processes."""
    flat, out = runs
    run_dir = out / "single-after-epoch-1"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "adaptive_weights.cli", "train", "--resume", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, straight = _summary(run_dir), _summary(out / "single")
    assert (resumed["world_size"], resumed["backend"]) == (2, "gloo")
    assert resumed["segments"] == [{"from_epoch": 0, "from_batch": 0, "world_size": 1, "backend": None},
                                   {"from_epoch": 1, "from_batch": 0, "world_size": 2, "backend": "gloo"}]
    assert resumed["epochs"] == 2 and resumed["steps"] == straight["steps"]
    assert _close(resumed["errors"]["test"], straight["errors"]["test"], TOL)


def test_loader_shards_every_global_batch():
    """The ranks' slices of each batch are, together, the one-process batch (images and
    augmentation); an evaluation loader splits its last, partial batch too."""
    images = torch.randint(0, 256, (26, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(26)
    kw = dict(batch_size=8, shuffle=True, pad=2, flip=True, seed=5, drop_last=True)
    whole = list(DeviceLoader(images, labels, **kw))
    parts = [list(DeviceLoader(images, labels, rank=r, world_size=2, **kw)) for r in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3
    for batch, a, b in zip(whole, *parts, strict=True):
        assert torch.equal(torch.cat([a[0], b[0]]), batch[0]) and torch.equal(torch.cat([a[1], b[1]]), batch[1])
    evals = [torch.cat([y for _, y in DeviceLoader(images, labels, batch_size=8, rank=r, world_size=4)])
             for r in range(4)]
    assert sorted(torch.cat(evals).tolist()) == list(range(26))


def test_image_folder_sampler_shards_every_global_batch():
    """The ImageNet loader's sampler applies the same rule; a train epoch's incomplete last batch
    is no rank's (else one rank would take a step more than the other and DDP would hang)."""
    from adaptive_weights.data._imagenet import _EpochSampler

    def positions(rank, world_size, skip=0, drop_last=True):
        sampler = _EpochSampler(11, True, 3, skip=skip, batch_size=4, drop_last=drop_last, rank=rank,
                                world_size=world_size)
        return [pos for _, _, pos in sampler]

    assert positions(0, 2) == [0, 1, 4, 5] and positions(1, 2) == [2, 3, 6, 7]
    assert positions(1, 2, skip=4) == [6, 7] and len(_EpochSampler(11, True, 3, batch_size=4, drop_last=True)) == 8
    assert positions(0, 2, drop_last=False) + positions(1, 2, drop_last=False) == [0, 1, 4, 5, 8, 2, 3, 6, 7, 9, 10]


def test_batch_that_does_not_divide_is_refused():
    with pytest.raises(RefusedError, match=r"train.batch_size=30 .* 4 processes"):
        DeviceLoader(torch.zeros(40, 1, 2, 2, dtype=torch.uint8), torch.zeros(40), batch_size=30, world_size=4,
                     rank=1)


def test_segments_keep_what_trained_and_drop_what_a_resume_replays(tmp_path):
    """A resume keeps the earlier segments that began before its checkpoint, adds one only when the
    processes change, and reads a config.json written before segments as one segment."""
    from adaptive_weights.training import _segments

    one, two = {"world_size": 1, "backend": None}, {"world_size": 2, "backend": "gloo"}
    assert _segments(tmp_path, None, one) == [{"from_epoch": 0, "from_batch": 0, **one}]
    (tmp_path / "config.json").write_text(json.dumps({"world_size": 2, "backend": "gloo"}))  # an older record
    assert _segments(tmp_path, (3, 0), one) == [{"from_epoch": 0, "from_batch": 0, **two},
                                                 {"from_epoch": 3, "from_batch": 0, **one}]
    segments = [{"from_epoch": 0, "from_batch": 0, **one}, {"from_epoch": 3, "from_batch": 0, **two}]
    (tmp_path / "config.json").write_text(json.dumps({"segments": segments, **two}))
    assert _segments(tmp_path, (3, 5), two) == segments  # the same processes go on
    assert _segments(tmp_path, (3, 0), one) == segments[:1]  # the 2-process segment never checkpointed
    assert _segments(tmp_path, (4, 0), one) == [*segments, {"from_epoch": 4, "from_batch": 0, **one}]
