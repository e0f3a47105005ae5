"""Every command prints a refusal as ``error: ...`` and exits 2: no traceback, no torch advice to
load a checkpoint with ``weights_only=False``."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch
from conftest_data import write_fake_cifar

from adaptive_weights.cli import main
from adaptive_weights.errors import RefusedError


def _flags(flat: dict) -> list[str]:
    return [a for k, v in flat.items() for a in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import TINY

    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--out", str(out), *_flags({**TINY, "train.epochs": 1})]) == 0
    return out


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def _refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "Traceback" not in captured.err
    return captured.err


def test_run_exists(run, capsys, tiny_flat):
    err = _refused(capsys, ["train", "--out", str(run), *_flags(tiny_flat)])
    assert "already holds a run" in err


def test_corrupt_checkpoint_in_train_and_evaluate(run, capsys):
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    for argv in (["train", "--resume", str(run)], ["evaluate", str(run)]):
        err = _refused(capsys, argv)
        assert f"checkpoint {ckpt} is corrupt or truncated and was not used" in err


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_without_torchs_weights_only_advice(run, capsys, tmp_path):
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    state["model"] = _Evil(tmp_path / "pwned")
    torch.save(state, ckpt)
    for argv in (["evaluate", str(run)], ["train", "--resume", str(run)]):
        err = _refused(capsys, argv)
        assert f"checkpoint {ckpt} was refused" in err and "references the Python global" in err and "system" in err
        assert "weights_only" not in err
    torch.save(state, ckpt, pickle_protocol=5)  # refused for its opcode before any global is looked at
    with pytest.warns(UserWarning, match="pickle protocol 5"):
        err = _refused(capsys, ["evaluate", str(run)])
    assert "weights_only" not in err, err
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_that_does_not_fit_the_model(run, capsys):
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["data"]["synthetic_classes"] = 5
    (run / "config.json").write_text(json.dumps(meta))
    err = _refused(capsys, ["evaluate", str(run)])
    assert "does not fit the model" in err and "size mismatch" in err


def test_bad_label_and_unsafe_pickle_in_a_data_set(tmp_path, capsys, tiny_flat):
    write_fake_cifar(tmp_path / "data", "cifar10", "binary")
    path = tmp_path / "data" / "cifar-10-batches-bin" / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[0] = 12
    path.write_bytes(bytes(raw))
    flags = _flags({**tiny_flat, "data.name": "cifar10", "data.root": tmp_path / "data", "data.val_split": 0})
    err = _refused(capsys, ["train", "--out", str(tmp_path / "r1"), *flags])
    assert f"{path}: label 12 at position 0 is outside the allowed range 0..9" in err
    write_fake_cifar(tmp_path / "data", "cifar10", "python")
    batch = tmp_path / "data" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": _Evil(tmp_path / "pwned"), b"labels": [0]}, protocol=2))
    err = _refused(capsys, ["train", "--out", str(tmp_path / "r2"), *flags])
    assert f"{batch}: refusing to unpickle global" in err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("argv", [
    ["report", "{tmp}/nothing-here"],
    ["eann", "{tmp}/nothing-here"],
    ["opt", "--like", "{tmp}/nothing-here", "--dry-run"],
    ["sweep", "{tmp}/missing.yaml", "--dry-run"],
    ["plot", "probabilities", "{tmp}/nothing-here"],
    ["evaluate", "{tmp}/nothing-here"],
], ids=lambda a: a[0])
def test_every_command_prints_refusals_and_exits_2(tmp_path, capsys, argv):
    _refused(capsys, [a.format(tmp=tmp_path) for a in argv])


def test_library_refusals_are_refused_errors():
    from adaptive_weights._lock import RunDirBusyError
    from adaptive_weights.checkpoint import CheckpointError
    from adaptive_weights.data import UnsafePickleError
    from adaptive_weights.training import DivergedError, RunExistsError

    for cls in (RunDirBusyError, CheckpointError, UnsafePickleError, DivergedError, RunExistsError):
        assert issubclass(cls, RefusedError), cls
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)  # still what pickle users catch
