"""Training under failure: divergence, a kill between the epoch's record and its checkpoint, two
trainers into one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
import torch

import adaptive_weights.training as train_module
from adaptive_weights._lock import RunDirBusyError, RunDirLock
from adaptive_weights.cli import main
from adaptive_weights.config import RunConfig
from adaptive_weights.distributed import Distributed
from adaptive_weights.training import DivergedError, _divergence, train


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def _rows(run_dir) -> list[dict]:
    return [_strict_json(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def test_a_diverging_run_stops_with_an_error_and_keeps_the_last_good_checkpoint(tmp_path, tiny_flat, capsys):
    """Epoch 1 trains at lr 0.05, epoch 2 at 1e6: the weights turn NaN in epoch 2."""
    out = tmp_path / "r"
    flags = [a for k, v in {**tiny_flat, "train.lr_values": "0.05,1e6"}.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged in epoch 2") and "non-finite" in err
    assert "Traceback" not in err
    summary = _strict_json((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and not summary["completed"]
    assert summary["diverged"]["epoch"] == 2 and "non-finite" in summary["diverged"]["reason"]
    assert summary["epochs"] == 1 and all(0 <= e <= 1 for e in summary["errors"]["test"])  # epoch 1's errors
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    assert [r["epoch"] for r in _rows(out)] == [1]  # the record matches the checkpoint
    # training into it again is refused with what helps: --resume would only diverge again
    assert main(["train", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "another out_dir" in err and "--resume" not in err


def test_divergence_check_reads_state_and_whole_epoch_losses():
    model = torch.nn.Linear(2, 2)
    acc = {"nonfinite": torch.tensor(3), "steps": torch.tensor(3)}
    assert "all 3 steps" in _divergence(model, acc, epoch_end=True)
    assert _divergence(model, acc, epoch_end=False) is None  # mid-epoch: a few bad steps may pass
    assert _divergence(model, {"nonfinite": torch.tensor(2), "steps": torch.tensor(3)}, epoch_end=True) is None
    with torch.no_grad():
        model.bias[0] = float("inf")
    assert "bias" in _divergence(model, {"nonfinite": torch.tensor(0), "steps": torch.tensor(3)}, epoch_end=False)


class _RankZeroOfTwo(Distributed):
    """Rank 0 of a two-process run whose collectives are no-ops (the other rank is imagined);
    counts the per-step loss all-reduces, which every rank must join."""

    steps: ClassVar[list[int]] = []

    def wrap_model(self, model, device):
        return model

    def mean(self, tensor):
        self.steps.append(1)
        return tensor

    def sum(self, tensor):
        return tensor

    def sync_buffers(self, model):
        pass


def test_a_divergence_seen_at_rank_0s_mid_epoch_checkpoint_stops_every_rank_together(tmp_path, tiny_flat, monkeypatch):
    """Rank 0 alone decides when a mid-epoch checkpoint is due (by its own clock), so the other ranks
    cannot learn of a divergence found there: rank 0 stopping alone would leave them waiting in the
    next step's collective (under Ray Train rank 0 then waits in its report: a deadlock). Rank 0
    keeps the last good checkpoint and stops at the epoch's end, with every rank."""
    _RankZeroOfTwo.steps.clear()
    monkeypatch.setattr(train_module, "setup_distributed", lambda device: (_RankZeroOfTwo(world_size=2), device))
    out = tmp_path / "r"
    cfg = RunConfig.from_flat({**tiny_flat, "train.lr_values": "0.05,1e6", "train.checkpoint_minutes": 1e-9})
    with pytest.raises(DivergedError, match="epoch 2"):
        train(cfg, out_dir=out, tensorboard=False)
    assert len(_RankZeroOfTwo.steps) == 8  # both epochs' 4 steps: rank 0 left no collective unmatched
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the last mid-epoch checkpoint before the state turned non-finite
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    assert _strict_json((out / "summary.json").read_text())["diverged"]["epoch"] == 2


class Killed(Exception):
    pass


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_kill_next_to_the_epochs_checkpoint_loses_no_record(tmp_path, tiny_flat, monkeypatch, when):
    """A crash injected right after (or right before) epoch 2's checkpoint is written; the resumed
    run's metrics.jsonl, TensorBoard scalars and summary.json equal an uninterrupted run's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = RunConfig.from_flat(tiny_flat)
    straight = train(cfg, out_dir=tmp_path / "a", tensorboard=False)
    real_save = train_module.save_checkpoint

    def crashing_save(path, state):
        if when == "before" and state["epoch"] == 2:
            raise Killed
        real_save(path, state)
        if when == "after" and state["epoch"] == 2:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(train_module, "save_checkpoint", crashing_save)
        with pytest.raises(Killed):
            train(cfg, out_dir=tmp_path / "b")
    resumed = train(cfg, out_dir=tmp_path / "b", resume=True)
    assert _without_timings(_rows(tmp_path / "b")) == _without_timings(_rows(tmp_path / "a"))
    on_disk = _strict_json((tmp_path / "b" / "summary.json").read_text())
    for summary in (resumed, on_disk):
        assert summary["completed"] and summary["epochs"] == 2 and summary["errors"] == straight["errors"]
    events = EventAccumulator(str(tmp_path / "b" / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("test/err/final")] == [1, 2]


@pytest.mark.parametrize("batch", [2, 4], ids=["mid-epoch", "after-the-epochs-last-step"])
def test_a_kill_after_a_mid_epoch_checkpoint_resumes_the_uninterrupted_record(tmp_path, tiny_flat, monkeypatch, batch):
    """A crash right after epoch 1's checkpoint at ``batch`` (of 4; at 4 the epoch's evaluation and
    its own checkpoint were still to come): the resumed run's rows (rate of the epoch's last step,
    the restored accumulators) equal an uninterrupted run's."""
    cfg = RunConfig.from_flat({**tiny_flat, "train.lr_schedule": "cosine", "train.checkpoint_minutes": 1e-9})
    train(cfg, out_dir=tmp_path / "a", tensorboard=False)
    real_save = train_module.save_checkpoint

    def crashing_save(path, state):
        real_save(path, state)
        if (state["epoch"], state["batch"]) == (0, batch):
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(train_module, "save_checkpoint", crashing_save)
        with pytest.raises(Killed):
            train(cfg, out_dir=tmp_path / "b", tensorboard=False)
    train(cfg, out_dir=tmp_path / "b", resume=True, tensorboard=False)
    assert _without_timings(_rows(tmp_path / "b")) == _without_timings(_rows(tmp_path / "a"))


HOLDER = textwrap.dedent("""
    import sys
    from adaptive_weights._lock import RunDirLock
    lock = RunDirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.read()
""")


def test_a_second_trainer_into_the_same_run_directory_is_refused(tmp_path, tiny_flat):
    out = tmp_path / "r"
    cfg = RunConfig.from_flat({**tiny_flat, "train.epochs": 1})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=rf"{out} is in use: another training process \(pid {holder.pid}\)"):
            train(cfg, out_dir=out, tensorboard=False)
        assert [p.name for p in out.iterdir()] == [".lock"]  # nothing read or written
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the holder is gone (however it ended): its lock went with it
    assert train(cfg, out_dir=out, tensorboard=False)["completed"]


def test_the_loser_of_a_race_for_a_new_run_directory_leaves_the_winners_lock(tmp_path, tiny_flat, monkeypatch):
    """Two trainers start into one new directory; the other one takes the lock first. The refused
    one must not clean up the directory as if it had made it (removing the winner's lock file
    would let a third trainer in beside the winner)."""
    out = tmp_path / "r"
    winner = []

    class LosingLock(RunDirLock):
        def acquire(self):
            winner.append(RunDirLock(self.run_dir).acquire())  # the other trainer got there first
            return super().acquire()

    monkeypatch.setattr(train_module, "RunDirLock", LosingLock)
    with pytest.raises(RunDirBusyError):
        train(RunConfig.from_flat(tiny_flat), out_dir=out, tensorboard=False)
    try:
        assert (out / ".lock").exists()
        with pytest.raises(RunDirBusyError):  # a third trainer is still refused
            RunDirLock(out).acquire()
    finally:
        winner[0].release()


def test_the_lock_is_held_while_training_and_released_after(tmp_path, tiny_flat):
    out = tmp_path / "r"
    cfg = RunConfig.from_flat({**tiny_flat, "train.epochs": 1})
    seen = []

    def try_second_trainer(row, ckpt):
        with pytest.raises(RunDirBusyError, match=f"pid {os.getpid()}"):
            train(cfg, out_dir=out, resume=True, tensorboard=False)
        seen.append(row["epoch"])

    train(cfg, out_dir=out, report=try_second_trainer, tensorboard=False)
    assert seen == [1]
    with RunDirLock(out):  # released: free to take
        pass


def test_resuming_a_missing_run_directory_creates_nothing(tmp_path, tiny_flat):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(RunConfig.from_flat(tiny_flat), out_dir=tmp_path / "missing", resume=True, tensorboard=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("planted", ["symlink", "hardlink", "directory"])
def test_a_planted_lock_is_refused_and_its_target_left_alone(tmp_path, tiny_flat, capsys, planted):
    """A ``.lock`` planted in a run directory as a link to another file: ``train --resume`` opened
    it following the link and truncated the target to write its pid. A lock that is a link or not a
    regular file is refused, naming it."""
    out = tmp_path / "r"
    train(RunConfig.from_flat({**tiny_flat, "train.epochs": 1}), out_dir=out, tensorboard=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / ".lock").unlink()
    if planted == "symlink":
        (out / ".lock").symlink_to(victim)
    elif planted == "hardlink":
        os.link(victim, out / ".lock")
    else:
        (out / ".lock").mkdir()
    assert main(["train", "--resume", str(out), "--train.progress", "false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / '.lock'}") and "Traceback" not in err, err
    assert victim.read_text() == "precious\n"


def _refused_run(capsys, out, flat) -> str:
    flags = [a for k, v in flat.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def _failing_solver(monkeypatch) -> None:
    """CAGrad's aggregator fails as cvxpy does on an absurd problem (Solver 'CLARABEL' failed)."""
    cvxpy_error = pytest.importorskip("cvxpy.error")
    pytest.importorskip("torchjd")
    from adaptive_weights.gradients._torchjd import CAGradRule

    class Failing(torch.nn.Module):
        def forward(self, matrix):
            raise cvxpy_error.SolverError("Solver 'CLARABEL' failed. Try another solver")

    monkeypatch.setattr(CAGradRule, "make_aggregator", lambda self: Failing())


def test_a_solver_failure_is_an_error_line_and_a_fresh_run_leaves_no_directory(tmp_path, tiny_flat, monkeypatch,
                                                                                 capsys):
    _failing_solver(monkeypatch)
    out = tmp_path / "r"
    err = _refused_run(capsys, out, {**tiny_flat, "gradient.name": "cagrad"})
    assert "gradient.name 'cagrad' (gradient.scope 'trunk', gradient.c 0.5): its aggregator's solver failed" in err
    assert "SolverError: Solver 'CLARABEL' failed" in err and "before the run's first checkpoint" in err
    assert not out.exists()


def test_a_solver_failure_after_a_checkpoint_keeps_the_run_as_it_was(tmp_path, tiny_flat, monkeypatch, capsys):
    pytest.importorskip("torchjd")
    flat = {**tiny_flat, "gradient.name": "cagrad", "train.lr_milestones": "[]", "train.lr_values": "[0.05]"}
    out = tmp_path / "r"
    train(RunConfig.from_flat({**flat, "train.epochs": 1}), out_dir=out, tensorboard=False)
    saved = (out / "checkpoints" / "last.pt").read_bytes()
    _failing_solver(monkeypatch)
    flags = [a for k, v in {**flat, "train.epochs": 2}.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--resume", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gradient.name 'cagrad'") and "solver failed" in err and "Traceback" not in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == saved and [r["epoch"] for r in _rows(out)] == [1]


def test_cagrad_on_non_finite_losses_diverges_instead_of_crashing(tmp_path, tiny_flat, monkeypatch, capsys):
    """The solvers fail on a NaN Jacobian (CAGrad's SVD raised LinAlgError): a TorchJD rule gives NaN
    gradients instead, as `sum` does, and the run stops as diverged."""
    pytest.importorskip("torchjd")
    real = train_module.create_objective

    def nan_losses(*args, **kwargs):
        objective = real(*args, **kwargs)
        return lambda logits, y: objective(logits, y) * float("nan")

    monkeypatch.setattr(train_module, "create_objective", nan_losses)
    err = _refused_run(capsys, tmp_path / "r", {**tiny_flat, "gradient.name": "cagrad"})
    assert err.startswith("error: training diverged in epoch 1")


@pytest.mark.parametrize("where", ["build", "step"])
def test_out_of_memory_is_an_error_line_and_leaves_no_directory(tmp_path, tiny_flat, monkeypatch, capsys, where):
    import adaptive_weights.models as models
    from adaptive_weights.gradients._sum import SumRule

    def cpu_allocator(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 360000000000 bytes. Error code 12")

    def cuda_allocator(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    if where == "build":
        monkeypatch.setattr(models, "create_model", cpu_allocator)
    else:
        monkeypatch.setattr(SumRule, "backward", cuda_allocator)
    out = tmp_path / "r"
    err = _refused_run(capsys, out, tiny_flat)
    assert ("building the run on cpu: out of memory" if where == "build" else "training step 1 on cpu: out of memory") in err
    assert "model.n 1, model.c 4" in err and "train.batch_size 32" in err
    assert not out.exists()
