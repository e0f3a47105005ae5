"""``load_model(run_dir)``: a trained run's network served raw [0, 1] images gives the errors the run
recorded (so its input normalisation is inside), its exits and MACs are the run's, and a directory
that cannot be served is refused by name."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from adaptive_weights.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from adaptive_weights.config import RunConfig
from adaptive_weights.data import build_data
from adaptive_weights.errors import RefusedError
from adaptive_weights.training import train
from tests.conftest import TINY, interrupt_after_epoch


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny finished run (synthetic 8x8, 3 exits, 2 epochs) and its summary."""
    out = tmp_path_factory.mktemp("load") / "run"
    summary = train(RunConfig.from_flat(TINY), out_dir=out, tensorboard=False)
    return out, summary


def _raw_test_split(cfg):
    """The run's test images as a user holds them: values in [0, 1] (uint8 / 255), and labels."""
    loader = build_data(cfg.data, batch_size=cfg.train.batch_size, device="cpu", seed=0).eval["test"]
    return loader.images.float() / 255, loader.labels


def test_raw_images_give_the_errors_the_run_recorded(run):
    from adaptive_weights import load_model

    run_dir, summary = run
    model = load_model(run_dir)
    assert not model.training and model.epoch == 2
    x, y = _raw_test_split(model.config)
    with torch.no_grad():
        logits = model(x)
    errors = (logits.argmax(-1) != y).float().mean(1).tolist()
    assert errors == pytest.approx(summary["errors"]["test"], abs=1e-9)
    # the bare network on raw pixels is what the normalisation prevents: other logits
    with torch.no_grad():
        assert not torch.allclose(model.net(x), logits)


def test_exits_macs_and_anytime_on_raw_images(run):
    from adaptive_weights import load_model

    run_dir, summary = run
    model = load_model(run_dir, device="cpu")
    assert model.exit_units == summary["exit_units"] and model.num_exits == 3
    assert model.exit_macs() == summary["exit_macs"]
    x, _ = _raw_test_split(model.config)
    with torch.no_grad():
        full = model(x[:5])
        steps = list(model.anytime(x[:5], budget_macs=model.exit_macs()[1]))
    assert [k for k, _, _ in steps] == [0, 1]
    for k, macs, logits in steps:
        assert macs == summary["exit_macs"][k]
        torch.testing.assert_close(logits, full[k])


def test_a_checkpoint_without_its_input_record_is_served_from_the_data_set(run, tmp_path):
    """A run written before checkpoints recorded their inputs (and summaries their status): the
    normalisation is recomputed from the data set."""
    from adaptive_weights import load_model

    run_dir, _ = run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    path = old / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["input"]
    save_checkpoint(path, state)
    summary = json.loads((old / "summary.json").read_text())
    del summary["status"]  # older summaries said only "completed": true
    (old / "summary.json").write_text(json.dumps(summary))
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(load_model(old)(x), load_model(run_dir)(x))


def test_what_cannot_be_served_is_refused_by_name(run, tmp_path):
    from adaptive_weights import load_model

    run_dir, _ = run
    with pytest.raises(RefusedError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(RefusedError, match="no config.json"):
        load_model(tmp_path)
    no_ckpt = tmp_path / "no-ckpt"
    shutil.copytree(run_dir, no_ckpt)
    (no_ckpt / "checkpoints" / "last.pt").unlink()
    with pytest.raises(RefusedError, match="no checkpoint yet"):
        load_model(no_ckpt)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir, corrupt)
    (corrupt / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"last.pt.*corrupt"):
        load_model(corrupt)
    with pytest.raises(RefusedError, match="'cpux' is not a device"):
        load_model(run_dir, device="cpux")


def test_an_unfinished_run_is_refused_unless_asked_for(tmp_path):
    from adaptive_weights import load_model

    cfg = RunConfig.from_flat(TINY)
    interrupt_after_epoch(cfg, tmp_path / "half", epoch=1)
    with pytest.raises(RefusedError, match=r"unfinished: it has not finished its 2 epochs.*allow_unfinished=True"):
        load_model(tmp_path / "half")
    assert load_model(tmp_path / "half", allow_unfinished=True).epoch == 1


def test_a_packed_member_is_served_like_a_run(tmp_path):
    """A pack's members write single-run checkpoints, the input record included."""
    from adaptive_weights import load_model
    from adaptive_weights.packing import train_packed

    cfgs = [RunConfig.from_flat({**TINY, "train.epochs": 1, "train.seed": s}) for s in (0, 1)]
    summaries = train_packed(cfgs, out_dirs=[tmp_path / "a", tmp_path / "b"], tensorboard=False)
    model = load_model(tmp_path / "b")
    x, y = _raw_test_split(model.config)
    with torch.no_grad():
        errors = (model(x).argmax(-1) != y).float().mean(1).tolist()
    assert errors == pytest.approx(summaries[1]["errors"]["test"], abs=1e-9)
