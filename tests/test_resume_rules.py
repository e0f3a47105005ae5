"""Resume: nothing is written until the resume is known valid; only execution keys and a longer
``train.epochs`` may change; every other change is refused naming it (issue 13 items 3 and 4)."""

from __future__ import annotations

import json

import pytest
import torch

from adaptive_weights.cli import main
from adaptive_weights.config import RESUMABLE_KEYS, RunConfig
from adaptive_weights.errors import RefusedError
from adaptive_weights.training import train


def _flags(flat: dict) -> list[str]:
    return [a for k, v in flat.items() for a in (f"--{k}", str(v))]


@pytest.fixture
def finished(tmp_path, tiny_flat):
    """A finished 2-epoch tiny run and the bytes of its files."""
    run = tmp_path / "r"
    train(RunConfig.from_flat(tiny_flat), out_dir=run, tensorboard=False)
    return run, _files(run)


def _files(run):
    """The run directory's files and their bytes (the lock file holds only the holder's pid)."""
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("flag,value,named", [
    ("data.synthetic_classes", "5", "data.synthetic_classes: 4 -> 5"),
    ("data.val_split", "7", "data.val_split: None -> 7"),
    ("train.seed", "3", "train.seed: 0 -> 3"),
    ("data.synthetic_image_size", "16", "data.synthetic_image_size: 8 -> 16"),
    ("data.name", "digits", "data.name: 'synthetic' -> 'digits'"),
    ("train.batch_size", "16", "train.batch_size: 32 -> 16"),
])
def test_a_refused_resume_names_the_key_and_writes_nothing(finished, flag, value, named, capsys):
    run, before = finished
    assert main(["train", "--resume", str(run), f"--{flag}", value]) == 2
    err = capsys.readouterr().err
    assert named in err and "may change on resume" in err
    # config.json (and every other file) is exactly as before: evaluate and resume still work
    assert _files(run) == before
    assert main(["evaluate", str(run)]) == 0


def _model_state_of_another_run(run):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model"].popitem()
    torch.save(ckpt, run / "checkpoints" / "last.pt")


def _checkpoint_without_accumulators(run):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    del ckpt["accumulators"]
    torch.save(ckpt, run / "checkpoints" / "last.pt")


def _strategy_state_of_another_run(run):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["strategy"]["hparams"]["ratio"] = 0.5
    torch.save(ckpt, run / "checkpoints" / "last.pt")


def _corrupt_metrics_row(run):
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{not json\n")


@pytest.mark.parametrize("tamper,refusal", [(_model_state_of_another_run, "does not fit the model"),
                                            (_checkpoint_without_accumulators, "lacks accumulators"),
                                            (_strategy_state_of_another_run, r"last.pt: its strategy state"),
                                            (_corrupt_metrics_row, "corrupt metrics row")])
def test_a_resume_refused_on_reading_the_run_writes_nothing(finished, tiny_flat, tamper, refusal):
    """The same config (a longer run) but a checkpoint or record that cannot be used: refused
    before config.json is rewritten with the new train.epochs."""
    run, _ = finished
    tamper(run)
    before = _files(run)
    with pytest.raises(RefusedError, match=refusal):
        train(RunConfig.from_flat({**tiny_flat, "train.epochs": 3}), out_dir=run, resume=True,
              tensorboard=False)
    assert _files(run) == before


def test_a_shortened_schedule_is_refused_and_config_stays_consistent(finished, capsys):
    run, before = finished
    assert main(["train", "--resume", str(run), "--train.epochs", "1"]) == 2
    assert "shorter than the 2 epoch(s) already trained" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == before["config.json"]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["train"]["epochs"] == json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_execution_keys_and_a_longer_run_are_accepted(finished, capsys):
    run, _ = finished
    assert main(["train", "--resume", str(run), "--train.epochs", "3", "--train.progress", "false",
                 "--train.checkpoint-minutes", "5", "--train.device", "cpu", "--train.num-threads", "1"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["completed"]
    assert json.loads((run / "config.json").read_text())["config"]["train"]["epochs"] == 3


def test_a_length_dependent_schedule_cannot_be_extended(tmp_path, tiny_flat):
    flat = {**tiny_flat, "train.lr_schedule": "cosine"}
    train(RunConfig.from_flat(flat), out_dir=tmp_path / "r", tensorboard=False)
    with pytest.raises(RefusedError, match="cosine schedule"):
        train(RunConfig.from_flat({**flat, "train.epochs": 4}), out_dir=tmp_path / "r", resume=True,
              tensorboard=False)


def test_resumable_keys_come_from_the_roles():
    assert "train.epochs" in RESUMABLE_KEYS and "train.device" in RESUMABLE_KEYS
    assert "train.seed" not in RESUMABLE_KEYS and "data.val_split" not in RESUMABLE_KEYS
