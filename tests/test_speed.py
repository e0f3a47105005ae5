"""`train.speed`: the default-selection logic (fast on a GPU, exact elsewhere, explicit keys win),
what a run records, and a resume that changes the execution settings."""

from __future__ import annotations

import json

import pytest
import torch

from adaptive_weights.checkpoint import load_optimizer_state
from adaptive_weights.config import RunConfig
from adaptive_weights.errors import RefusedError
from adaptive_weights.speed import SPEED_KEYS, resolve_speed, speed_settings
from adaptive_weights.training import train

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_is_fast_on_cuda_and_exact_on_the_cpu():
    assert speed_settings("auto", CUDA) == {"compile": "reduce-overhead", "channels_last": True,
                                            "cudnn_benchmark": True, "fused_sgd": True}
    assert speed_settings("auto", CPU) == speed_settings("exact", CUDA) == {
        "compile": "none", "channels_last": False, "cudnn_benchmark": False, "fused_sgd": False}
    assert speed_settings("auto", torch.device("mps")) == speed_settings("exact", CPU)
    fast_cpu = speed_settings("fast", CPU)  # what the CPU supports: no CUDA graphs, cuDNN or channels_last
    assert fast_cpu["compile"] == "default" and not fast_cpu["cudnn_benchmark"] and not fast_cpu["channels_last"]


def test_a_rule_that_cannot_be_compiled_stays_eager_when_fast():
    assert speed_settings("fast", CUDA, compilable=False)["compile"] == "none"
    assert speed_settings("fast", CUDA, compilable=False)["fused_sgd"] is True


def test_explicit_keys_win_over_the_speed(tiny_flat):
    cfg = RunConfig.from_flat({**tiny_flat, "train.compile": "none", "train.channels_last": False}).resolve()
    fast = resolve_speed(cfg, CUDA)
    assert (fast.train.compile, fast.train.channels_last) == ("none", False)  # given: kept
    assert (fast.train.cudnn_benchmark, fast.train.fused_sgd) == (True, True)  # left at None: filled
    exact = resolve_speed(RunConfig.from_flat({**tiny_flat, "train.speed": "exact"}).resolve(), CUDA)
    assert [getattr(exact.train, k) for k in SPEED_KEYS] == ["none", False, False, False]


def test_a_bad_speed_is_refused_naming_the_choices(tiny_flat):
    with pytest.raises(RefusedError, match=r"train\.speed: got 'quick'; allowed: auto, fast, exact"):
        RunConfig.from_flat({**tiny_flat, "train.speed": "quick"}).resolve()
    with pytest.raises(RefusedError, match=r"train\.compile: got 'fastest'"):
        RunConfig.from_flat({**tiny_flat, "train.compile": "fastest"}).resolve()


def test_a_cpu_run_records_the_settings_it_used(tiny_flat, tmp_path):
    train(RunConfig.from_flat(tiny_flat), out_dir=tmp_path / "run", tensorboard=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["train"]
    assert recorded["speed"] == "auto"
    assert {k: recorded[k] for k in SPEED_KEYS} == speed_settings("exact", CPU)  # the CPU default is unchanged
    assert torch.backends.cudnn.benchmark is False


def test_a_resume_may_change_the_execution_settings(tiny_flat, tmp_path):
    """Execution keys are free on resume: a run trained with the default SGD kernel continues with
    the fused one (as a GPU resume of a CPU run would), and steps with the new kernel."""
    flat = {**tiny_flat, "train.epochs": 2}

    class Stop(Exception):
        pass

    def stop(row, ckpt):
        raise Stop

    with pytest.raises(Stop):
        train(RunConfig.from_flat(flat), out_dir=tmp_path / "run", report=stop, tensorboard=False)
    summary = train(RunConfig.from_flat({**flat, "train.fused_sgd": True}), out_dir=tmp_path / "run",
                    resume=True, tensorboard=False)
    assert summary["epochs"] == 2 and summary["status"] == "completed"
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["train"]
    assert recorded["fused_sgd"] is True


def test_loading_an_optimizer_state_keeps_this_runs_kernel(tmp_path):
    params = [torch.nn.Parameter(torch.ones(3))]
    fused = torch.optim.SGD(params, lr=0.1, momentum=0.9, fused=True)
    params[0].grad = torch.ones(3)
    fused.step()
    plain = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    load_optimizer_state(plain, fused.state_dict(), tmp_path / "last.pt")
    assert plain.param_groups[0]["fused"] in (None, False)  # the checkpoint's kernel is not taken over
    assert torch.equal(plain.state[params[0]]["momentum_buffer"], fused.state[params[0]]["momentum_buffer"])
