"""End-to-end training: run directory, exact resume (also after SIGKILL), TensorBoard, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import train_interrupted_then_resumed

from adaptive_weights.checkpoint import CheckpointError
from adaptive_weights.config import RunConfig
from adaptive_weights.training import RunExistsError, train


def _cfg(flat, **over):
    return RunConfig.from_flat({**flat, **over})


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_directory_contents(tmp_path, tiny_flat):
    out = tmp_path / "run"
    summary = train(_cfg(tiny_flat, **{"strategy.name": "aann"}), out_dir=out, tensorboard=False)
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json", "checkpoints",
                                              "probability_stack.png"}
    meta = json.loads((out / "config.json").read_text())
    assert meta["adaptive_weights_version"] and meta["config"]["strategy"]["ratio"] == 2.0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    k = len(summary["exit_units"])
    assert k == 3 and summary["completed"] and summary["exit_units"] == [0, 1, 2]
    assert len(summary["errors"]["test"]) == k and len(summary["errors"]["val"]) == k
    assert summary["exit_macs"] == sorted(summary["exit_macs"])
    # the last row's per-exit errors are the summary's
    assert [rows[-1][f"test/err/exit_{i:02d}"] for i in range(k)] == summary["errors"]["test"]
    probs = [rows[-1][f"train/prob/exit_{i:02d}"] for i in range(k)]
    assert sum(probs) == pytest.approx(1.0)
    # aann with sieve over 3 exits: raw sieve [2, 1, 3], so p = w / sum(w) = [1/3, 1/6, 1/2]
    assert probs == pytest.approx([1 / 3, 1 / 6, 0.5], abs=1e-6)
    assert rows[0]["lr"] == 0.05 and rows[1]["lr"] == 0.005
    with pytest.raises(RunExistsError, match="already holds a run"):
        train(_cfg(tiny_flat), out_dir=out, tensorboard=False)


def test_learning_happens(tmp_path, tiny_flat):
    """Not just plumbing: the final exit beats chance (25% on 4 classes) clearly."""
    summary = train(_cfg(tiny_flat, **{"train.epochs": 4, "train.lr_milestones": "3"}),
                    out_dir=tmp_path / "r", tensorboard=False)
    assert summary["errors"]["test"][-1] < 0.5


def test_resume_after_interruption_is_bit_identical(tmp_path, tiny_flat):
    cfg = _cfg(tiny_flat, **{"strategy.name": "eg", "strategy.warmup_epochs": 0, "train.epochs": 3})
    straight = train(cfg, out_dir=tmp_path / "a", tensorboard=False)
    resumed = train_interrupted_then_resumed(cfg, tmp_path / "b")
    assert resumed["errors"] == straight["errors"]
    _assert_same_state(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    sa = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    sb = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    assert repr(sa) == repr(sb)
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    def strip(rows):
        return [{k: v for k, v in json.loads(r).items() if not k.startswith(("time/", "throughput/"))}
                              for r in rows]
    assert strip(rows_a) == strip(rows_b)


KILLER = textwrap.dedent("""
    import os, signal, sys
    import adaptive_weights.objectives.builtin as T  # the default objective computes the losses
    kill_at = int(os.environ["KILL_AT_STEP"])
    calls = 0
    original = T.per_exit_losses
    def counting(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    T.per_exit_losses = counting
    from adaptive_weights.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("every_step", [False, True], ids=["epoch-checkpoints", "mid-epoch-checkpoints"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, tiny_flat, every_step):
    """Kill the training process with SIGKILL in the middle of epoch 2, resume from the CLI, and
    compare with an uninterrupted run of the same seed: identical errors and weights."""
    flat = {**tiny_flat, "strategy.name": "rwm", "strategy.warmup_epochs": 0, "train.epochs": 3}
    if every_step:
        flat["train.checkpoint_minutes"] = 1e-9  # a checkpoint after every step
    args = [a for k, v in flat.items() for a in (f"--{k}", str(v))]
    env = {**os.environ, "KILL_AT_STEP": "6", "OMP_NUM_THREADS": "1"}  # 4 steps/epoch: step 6 is mid-epoch 2
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = subprocess.run([sys.executable, str(script), "train", "--out", str(tmp_path / "k"), *args],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    ckpt = torch.load(tmp_path / "k" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"]) == ((1, 1) if every_step else (1, 0))
    resumed = subprocess.run([sys.executable, "-m", "adaptive_weights.cli", "train", "--resume",
                              str(tmp_path / "k")], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = train(RunConfig.from_flat(flat), out_dir=tmp_path / "s", tensorboard=False)
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert summary["errors"] == straight["errors"]
    _assert_same_state(_weights(tmp_path / "k"), _weights(tmp_path / "s"))


def test_corrupt_checkpoint_is_reported_not_replaced(tmp_path, tiny_flat):
    cfg = _cfg(tiny_flat, **{"train.epochs": 1})
    train(cfg, out_dir=tmp_path / "r", tensorboard=False)
    ckpt = tmp_path / "r" / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last.pt is corrupt or truncated"):
        train(cfg, out_dir=tmp_path / "r", resume=True, tensorboard=False)
    assert ckpt.read_bytes() == data[: len(data) // 2]  # left for the user to inspect


def test_resume_refuses_an_architecture_change(tmp_path, tiny_flat):
    train(_cfg(tiny_flat, **{"train.epochs": 1}), out_dir=tmp_path / "r", tensorboard=False)
    with pytest.raises(ValueError, match=r"config changes model.c: 4 -> 8"):
        train(_cfg(tiny_flat, **{"model.c": 8}), out_dir=tmp_path / "r", resume=True, tensorboard=False)


def test_tensorboard_scalars_and_images(tmp_path, tiny_flat):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_cfg(tiny_flat, **{"strategy.name": "aann"}), out_dir=tmp_path / "r")
    acc = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for key in ["train/loss/exit_00", "train/prob/exit_02", "val/err/exit_01", "test/err/final", "lr",
                "throughput/img_s"]:
        assert key in tags["scalars"], key
    assert [e.step for e in acc.Scalars("train/loss/exit_00")] == [1, 2]
    assert {"figures/probability_stack", "figures/error_vs_macs"} <= set(tags["images"])
    img = acc.Images("figures/probability_stack")[-1]
    assert img.width > 100 and img.height > 100 and img.encoded_image_string[:4] == b"\x89PNG"


def test_single_exit_run_truncates_the_trunk(tmp_path, tiny_flat):
    flat = {**tiny_flat, "model.n": 2, "scheme.name": "optimal@2", "train.epochs": 1}
    summary = train(RunConfig.from_flat(flat), out_dir=tmp_path / "r", tensorboard=False)
    assert summary["exit_units"] == [2] and summary["num_units"] == 6
    assert summary["strategy"] == "static"
    state = _weights(tmp_path / "r")
    assert any(k.startswith("units.2.") for k in state)
    assert not any(k.startswith(("units.3.", "units.4.", "units.5.")) for k in state)  # never built


def test_a_user_registered_strategy_trains(tmp_path, tiny_flat):
    from adaptive_weights.strategies import Strategy, register_strategy

    try:
        @register_strategy("test-final-only")
        class FinalOnly(Strategy):
            """Puts all the weight on the final exit (a test strategy)."""

            feedback = "none"

            def step_weights(self):
                w = torch.zeros_like(self.base)
                w[-1] = 1.0
                return w

            def probabilities(self):
                return self.step_weights()
    except ValueError:  # registered by an earlier run of this test in the same process
        pass
    summary = train(_cfg(tiny_flat, **{"strategy.name": "test-final-only", "train.epochs": 1}),
                    out_dir=tmp_path / "r", tensorboard=False)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/weight/exit_02"] == 1.0 and rows[0]["train/weight/exit_00"] == 0.0
    assert summary["strategy"] == "test-final-only"
