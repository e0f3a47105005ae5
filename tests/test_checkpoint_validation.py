"""A checkpoint whose position or states are out of range or of the wrong shape or type is refused
before the run directory is touched (issue 19 item 3): one line ``error: checkpoint PATH: ...``,
exit status 2, every file of the run byte for byte as it was."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_after_epoch

from adaptive_weights.cli import main
from adaptive_weights.config import RunConfig


@pytest.fixture
def interrupted(tmp_path, tiny_flat):
    """A tiny run stopped after epoch 1 of 2: a resume would train epoch 2."""
    run = tmp_path / "r"
    interrupt_after_epoch(RunConfig.from_flat(tiny_flat), run, 1)
    return run


def _files(run):
    """Every file under the run directory and its bytes (the lock file holds only the holder's pid)."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _set(*keys, value):
    def tamper(ckpt):
        target = ckpt
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return tamper


CASES = [
    ("epoch -3", _set("epoch", value=-3), "epoch -3"),
    ("epoch past the run", _set("epoch", value=99), "epoch 99"),
    ("epoch a bool", _set("epoch", value=True), "epoch True"),
    ("batch -5", _set("batch", value=-5), "batch -5"),
    ("batch 10**6", _set("batch", value=10**6), "batch 1000000"),
    ("step NaN", _set("step", value=float("nan")), "step nan"),
    ("config a list", _set("config", value=[1, 2]), "config"),
    ("accumulator shape", _set("accumulators", "loss", value=torch.zeros(7)), "accumulators['loss']"),
    ("accumulator dtype", _set("accumulators", "wrong", value=lambda t: t.float()), "accumulators['wrong']"),
    ("accumulator missing", lambda c: c["accumulators"].pop("steps"), "accumulators"),
    ("momentum buffer shape", lambda c: c["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(3)),
     "optimizer"),
    ("momentum buffer type", lambda c: c["optimizer"]["state"][0].update(momentum_buffer="x"), "optimizer"),
    ("optimizer state a list", _set("optimizer", "state", value=[]), "optimizer"),
    ("rng state size", _set("rng", "torch", value=torch.zeros(10, dtype=torch.uint8)), "rng"),
    ("rng state a string", _set("rng", "torch", value="abc"), "rng"),
    ("rng not a mapping", _set("rng", value=[1]), "rng"),
    ("model tensor shape", lambda c: c["model"].update({next(iter(c["model"])): torch.zeros(1)}), "size mismatch"),
    ("model tensor a list", lambda c: c["model"].update({next(iter(c["model"])): [1.0]}), "model"),
    ("strategy tensor a string", lambda c: c["strategy"]["tensors"].update(skipped="x"), "strategy"),
    ("strategy steps inf", _set("strategy", "steps", value=float("inf")), "strategy"),
]


@pytest.mark.parametrize("what,tamper,named", CASES, ids=[c[0] for c in CASES])
def test_a_checkpoint_out_of_range_is_refused_and_the_run_stays_as_it_was(interrupted, what, tamper, named, capsys):
    ckpt_path = interrupted / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    tamper(ckpt)
    torch.save(ckpt, ckpt_path)
    before = _files(interrupted)
    assert main(["train", "--resume", str(interrupted)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {ckpt_path}: ") and named in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert _files(interrupted) == before


def test_validate_checkpoint_takes_a_good_one_and_is_callable_alone(interrupted, tiny_flat):
    """What another resumer (a packed trainer) calls on each member's checkpoint before loading it."""
    from adaptive_weights.checkpoint import CheckpointError, load_checkpoint, validate_checkpoint
    from adaptive_weights.training import build_run, new_accumulators

    path = interrupted / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    cfg = RunConfig.from_flat(tiny_flat).resolve()
    data, model, base_weights, strategy = build_run(cfg, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameter_groups(cfg.train.weight_decay, base_weights.tolist()),
                                lr=0.1, momentum=cfg.train.momentum)
    acc = new_accumulators(model.num_exits, torch.device("cpu"))
    fits = dict(model=model, optimizer=optimizer, accumulators=acc, steps_per_epoch=len(data.train))
    validate_checkpoint(ckpt, path, **fits)
    ckpt["batch"] = len(data.train) + 1
    with pytest.raises(CheckpointError, match=f"batch {len(data.train) + 1}"):
        validate_checkpoint(ckpt, path, **fits)
