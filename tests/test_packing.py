"""Packed runs: a member of a pack computes what its config trained alone computes."""

from __future__ import annotations

import json

import pytest
import torch

from adaptive_weights import train
from adaptive_weights.checkpoint import load_checkpoint
from adaptive_weights.config import RunConfig
from adaptive_weights.models import create_model
from adaptive_weights.packing import PackRefusedError, pack_network, train_packed
from adaptive_weights.packing import _checkpoints as pack_checkpoints
from tests.conftest import TINY

# three members that differ in everything a member may: seed, scheme, strategy (a no-regret
# learner, a sampler, an OPT run with one exit and a shorter trunk) and objective
MEMBERS = [
    {"name": "eg-sieve", "train.seed": 0, "scheme.name": "sieve", "strategy.name": "eg"},
    {"name": "aann-const", "train.seed": 1, "scheme.name": "const", "strategy.name": "aann",
     "objective.name": "distill"},
    {"name": "opt-1", "train.seed": 2, "scheme.name": "optimal@1", "strategy.name": "static"},
]


def _configs(**extra):
    return [RunConfig.from_flat({**TINY, "train.device": "cpu", **extra, **m}) for m in MEMBERS]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(alone, packed, *, atol=2e-5, rtol=1e-4):
    """Per-exit losses/errors of every epoch, final weights, momentum and strategy state agree."""
    rows_a, rows_p = _rows(alone), _rows(packed)
    assert len(rows_a) == len(rows_p)
    for ra, rp in zip(rows_a, rows_p, strict=True):
        keys = [k for k in ra if k.split("/")[0] in ("train", "val", "test", "strategy")]
        assert set(ra) == set(rp)
        for k in keys:
            assert rp[k] == pytest.approx(ra[k], abs=atol, rel=rtol), k
    ca = load_checkpoint(alone / "checkpoints" / "last.pt")
    cp = load_checkpoint(packed / "checkpoints" / "last.pt")
    assert ca["model"].keys() == cp["model"].keys()
    for k, v in ca["model"].items():
        torch.testing.assert_close(cp["model"][k], v, atol=atol, rtol=rtol, msg=k)
    sa, sp = ca["optimizer"], cp["optimizer"]
    assert [{k: v for k, v in g.items() if k != "params"} for g in sa["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "params"} for g in sp["param_groups"]]
    for i, state in sa["state"].items():
        torch.testing.assert_close(sp["state"][i]["momentum_buffer"], state["momentum_buffer"], atol=1e-3, rtol=1e-3)
    for k, v in ca["strategy"]["tensors"].items():
        got = cp["strategy"]["tensors"][k]
        if v.is_floating_point():
            torch.testing.assert_close(got, v, atol=atol, rtol=rtol, msg=k)
        else:
            assert torch.equal(got, v), k
    assert (ca["epoch"], ca["batch"], ca["step"]) == (cp["epoch"], cp["batch"], cp["step"])


@pytest.fixture(scope="module")
def alone_and_packed(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack")
    cfgs = _configs()
    for cfg in cfgs:
        train(cfg, out_dir=out / "alone" / cfg.name, tensorboard=False)
    summaries = train_packed(cfgs, out_dirs=[out / "packed" / c.name for c in cfgs], tensorboard=False)
    return out, cfgs, summaries


def test_each_member_matches_its_run_trained_alone(alone_and_packed):
    out, cfgs, summaries = alone_and_packed
    for cfg, summary in zip(cfgs, summaries, strict=True):
        _assert_same_run(out / "alone" / cfg.name, out / "packed" / cfg.name)
        assert summary["status"] == "completed" and summary["pack"]["size"] == 3


def test_the_comparison_tells_members_apart(alone_and_packed):
    """The check above fails when a member's init or data order is another member's."""
    out, cfgs, _ = alone_and_packed
    swapped = RunConfig.from_flat({**cfgs[0].to_flat(), "train.seed": 1, "name": "swapped"})
    train(swapped, out_dir=out / "alone" / "swapped", tensorboard=False)
    with pytest.raises(AssertionError):
        _assert_same_run(out / "alone" / "swapped", out / "packed" / cfgs[0].name)


def test_member_directories_are_ordinary_runs(alone_and_packed):
    out, cfgs, _ = alone_and_packed
    for cfg in cfgs:
        run = out / "packed" / cfg.name
        record = json.loads((run / "config.json").read_text())
        alone = json.loads((out / "alone" / cfg.name / "config.json").read_text())
        assert record["config"] == alone["config"]  # the pack is execution information only
        assert record["pack"]["member"] == cfgs.index(cfg)
        assert not (run / "checkpoints" / pack_checkpoints.NEXT_NAME).exists()
    # a member resumes alone, as any run does (here: train one epoch longer)
    longer = RunConfig.from_flat({**cfgs[0].to_flat(), "train.epochs": 3})
    summary = train(longer, out_dir=out / "packed" / cfgs[0].name, resume=True, tensorboard=False)
    assert summary["epochs"] == 3


@pytest.mark.parametrize("arch", ["resnet", "imagenet-resnet"])
def test_packed_network_keeps_members_apart(arch):
    """Outputs equal each member's own network, and a member's input reaches only its outputs."""
    kw = dict(n=2, c=4) if arch == "resnet" else dict(depth=14, period=1)
    size = 16 if arch == "resnet" else 64
    full = create_model(arch, num_classes=5, input_size=size, **kw)
    last = len(full.units) - 1
    nets = []
    for seed, exits in enumerate([None, [last], [1]]):
        torch.manual_seed(seed)
        nets.append(create_model(arch, num_classes=5, input_size=size, exits=exits, **kw))
    packed, layout = pack_network(full, nets)
    for m, net in enumerate(nets):  # packing then unpacking gives every member's tensors back
        for k, v in layout.unpack(packed.state_dict(), m).items():
            assert torch.equal(v, net.state_dict()[k]), k
    xs = [torch.randn(2, 3, size, size) for _ in nets]
    for training in (True, False):
        packed.train(training)
        for net in nets:
            net.train(training)
        out = packed(torch.cat(xs, 1))
        for m, net in enumerate(nets):
            torch.testing.assert_close(out[layout.slots[m], :, m], net(xs[m]), atol=1e-5, rtol=1e-4)
    packed.eval()
    x = torch.cat(xs, 1).requires_grad_(True)
    packed(x)[:, :, 1].sum().backward()  # member 1's outputs only
    grad = x.grad.view(2, 3, 3, size, size)
    assert grad[:, 1].abs().sum() > 0
    assert grad[:, 0].abs().sum() == 0 and grad[:, 2].abs().sum() == 0


def test_a_pack_resumes_exactly_after_a_kill_inside_its_commit(tmp_path, monkeypatch):
    cfgs = _configs()
    straight = train_packed(cfgs, out_dirs=[tmp_path / "straight" / c.name for c in cfgs], tensorboard=False)
    dirs = [tmp_path / "killed" / c.name for c in cfgs]
    real_save = pack_checkpoints.save_checkpoint
    calls = []

    def save_then_die(path, state):  # epoch 2's commit dies after the first member's file
        calls.append(path)
        if state["epoch"] == 2 and len([p for p in calls if p.name == pack_checkpoints.NEXT_NAME]) > 4:
            raise KeyboardInterrupt
        return real_save(path, state)

    monkeypatch.setattr(pack_checkpoints, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_packed(cfgs, out_dirs=dirs, tensorboard=False)
    monkeypatch.setattr(pack_checkpoints, "save_checkpoint", real_save)
    positions = {load_checkpoint(d / "checkpoints" / "last.pt")["epoch"] for d in dirs}
    assert positions == {1}  # the commit did not happen: every member is still at epoch 1
    resumed = train_packed(cfgs, out_dirs=dirs, resume=True, tensorboard=False)
    for d, cfg, a, b in zip(dirs, cfgs, straight, resumed, strict=True):
        assert a["errors"] == b["errors"]
        ca = load_checkpoint(tmp_path / "straight" / cfg.name / "checkpoints" / "last.pt")
        cb = load_checkpoint(d / "checkpoints" / "last.pt")
        for k, v in ca["model"].items():
            assert torch.equal(cb["model"][k], v), k  # bit-identical on the CPU
        assert not (d / "checkpoints" / pack_checkpoints.NEXT_NAME).exists()


def test_an_interrupted_commit_is_finished_once_every_member_file_is_written(tmp_path):
    paths = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        paths.append(tmp_path / str(i) / "last.pt")
    base = {"model": {}, "optimizer": {}, "strategy": {}, "rng": {}, "batch": 0, "step": 0, "accumulators": {},
            "config": {}}
    for p in paths:
        torch.save({**base, "epoch": 1}, p)
    for p in paths:  # every next file written, one of them already renamed: the commit happened
        torch.save({**base, "epoch": 2}, p.with_name(pack_checkpoints.NEXT_NAME))
    pack_checkpoints.os.replace(paths[0].with_name(pack_checkpoints.NEXT_NAME), paths[0])
    assert pack_checkpoints.settle_checkpoints(paths) == "finished"
    assert {torch.load(p, weights_only=True)["epoch"] for p in paths} == {2}


def test_a_diverging_member_stops_alone(tmp_path):
    cfgs = _configs()
    # weights of 1e18^j: this member's step is so large that its state turns non-finite at once
    bad = RunConfig.from_flat({**cfgs[0].to_flat(), "name": "diverges", "scheme.name": "exp:1e18", "strategy.name": "static",
                               "scheme.normalize": "none"})
    summaries = train_packed([*cfgs, bad], out_dirs=[tmp_path / c.name for c in [*cfgs, bad]], tensorboard=False)
    assert summaries[-1]["status"] == "diverged"
    assert json.loads((tmp_path / "diverges" / "summary.json").read_text())["status"] == "diverged"
    for cfg, summary in zip(cfgs, summaries, strict=False):
        assert summary["status"] == "completed"
        alone = tmp_path / "alone" / cfg.name
        train(cfg, out_dir=alone, tensorboard=False)
        _assert_same_run(alone, tmp_path / cfg.name)


def test_refusals_name_the_key_and_write_nothing(tmp_path):
    cfgs = _configs()
    wider = RunConfig.from_flat({**cfgs[1].to_flat(), "model.c": 8})
    with pytest.raises(PackRefusedError, match=r"model\.c differs \(4 vs 8\)"):
        train_packed([cfgs[0], wider], out_dirs=[tmp_path / "a", tmp_path / "b"])
    pcgrad = [RunConfig.from_flat({**c.to_flat(), "gradient.name": "pcgrad"}) for c in cfgs[:2]]
    with pytest.raises(PackRefusedError, match="gradient.name: 'pcgrad' cannot run in a pack"):
        train_packed(pcgrad, out_dirs=[tmp_path / "a", tmp_path / "b"])
    with pytest.raises(PackRefusedError, match="would train into"):
        train_packed(cfgs[:2], out_dirs=[tmp_path / "a", tmp_path / "a"])
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_member_checkpoint_refuses_the_resume_and_leaves_every_run_as_it_was(tmp_path):
    cfgs = _configs(**{"train.epochs": 1})
    dirs = [tmp_path / c.name for c in cfgs]
    train_packed(cfgs, out_dirs=dirs, tensorboard=False)
    bad = dirs[1] / "checkpoints" / "last.pt"
    state = torch.load(bad, weights_only=True)
    state["accumulators"]["loss"] = torch.zeros(7)  # a wrongly shaped epoch statistic
    torch.save(state, bad)
    before = {p: p.read_bytes() for d in dirs for p in d.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(ValueError, match=r"checkpoint .*last\.pt.*accumulator"):
        train_packed(cfgs, out_dirs=dirs, resume=True, tensorboard=False)
    assert {p: p.read_bytes() for p in before} == before


def test_a_pack_that_fails_to_start_leaves_no_directory(tmp_path):
    cfgs = [RunConfig.from_flat({**c.to_flat(), "data.name": "cifar10", "data.root": str(tmp_path / "nowhere")})
            for c in _configs()]
    dirs = [tmp_path / "runs" / c.name for c in cfgs]
    with pytest.raises((ValueError, FileNotFoundError)):
        train_packed(cfgs, out_dirs=dirs, tensorboard=False)
    assert not any(d.exists() for d in dirs)
