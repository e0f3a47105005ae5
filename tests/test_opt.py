"""OPT baselines: which units, which configs, and single-exit runs that compute only their trunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adaptive_weights._io import read_json
from adaptive_weights.config import RunConfig
from adaptive_weights.opt import cli_main, num_units_of, opt_config, opt_units, plan_opt_runs, run_opt_plan
from adaptive_weights.schemes import scheme_weights
from adaptive_weights.training import train

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 32,
    "train.progress": False, "train.num_threads": 1,
}


def _cfg(**over) -> RunConfig:
    return RunConfig.from_flat({**TINY, **over})


@pytest.mark.parametrize("n, units", [(9, [6, 13, 19, 26]), (3, [1, 4, 6, 8]), (1, [0, 1, 2]), (7, [4, 10, 15, 20])])
def test_milestone_units_follow_the_spec(n, units):
    # spec §5.4: idx_q = round_half_up(q*L) - 1; n=1 gives 0, 1, 1, 2 and trains unit 1 once
    assert opt_units(_cfg(**{"model.n": n})) == units


def test_every_exit_and_the_period():
    cfg = _cfg(**{"model.n": 3, "model.period": 2})               # L=9, slots 0, 2, 4, 6, 8
    assert opt_units(cfg, every_exit=True) == [0, 2, 4, 6, 8]
    # eann-sieve gives the first floor(5/2) = 2 slots no weight, so they have no exit to match
    assert opt_units(_cfg(**{"model.n": 3, "model.period": 2, "scheme.name": "eann-sieve"}), every_exit=True) == [4, 6, 8]
    assert opt_config(cfg, 4).scheme.name == "optimal@2" and opt_config(cfg, 4).model.period == 2
    # unit 1 is not a slot of period 2: a single head needs no period, so it is trained with period 1
    one = opt_config(cfg, 1)
    assert (one.scheme.name, one.model.period) == ("optimal@1", 1)
    assert num_units_of(_cfg(**{"model.arch": "imagenet-resnet", "model.depth": 50})) == 16


def test_opt_config_changes_only_scheme_and_strategy():
    like = _cfg(**{"scheme.name": "sieve", "strategy.name": "eg", "strategy.gamma": 0.2, "train.seed": 3}).resolve()
    opt = opt_config(like, 2)
    a, b = like.to_flat(), opt.to_flat()
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert {k for k in changed if not k.startswith("strategy.")} == {"name", "scheme.name"}
    assert {k for k in b if k.startswith("strategy.")} == {"strategy.name"}  # static: no hyper-parameters
    assert (b["scheme.name"], b["strategy.name"], b["train.seed"]) == ("optimal@2", "static", 3)
    assert b["name"] == "synthetic-resnet1c4-optimalat2-static-s3"
    with pytest.raises(ValueError, match="out of range for a model of 3 units"):
        opt_config(like, 3)


@pytest.mark.parametrize("normalize", ["log", "last", "sum", "none"])
def test_opt_weighs_its_exit_one_whatever_the_normalisation(normalize):
    # spec §1.3 f=2: a one-hot, never rescaled. 'log' (sum = log2(K+1)) would weigh OPT's exit
    # log2(10) = 3.32 for n=3 (K = 9), a 3.3x loss scale and head decay the baseline does not have
    like = _cfg(**{"model.n": 3, "scheme.normalize": normalize}).resolve()
    opt = opt_config(like, 4)
    assert scheme_weights(opt.scheme.name, 9, opt.scheme.normalize).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def like_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("opt") / "runs" / "like"
    train(_cfg(**{"scheme.name": "sieve", "strategy.name": "aann"}), out_dir=out, tensorboard=False)
    return out


def test_plan_and_train_single_exit_runs(like_run, tmp_path):
    plan = plan_opt_runs(like_run, out_root=tmp_path)
    assert [p.unit for p in plan] == [0, 1, 2]
    assert [p.run_dir.name for p in plan] == [f"synthetic-resnet1c4-optimalat{u}-static-s0" for u in (0, 1, 2)]
    log: list[str] = []
    dirs = run_opt_plan(plan, tensorboard=False, log=log.append)
    like = read_json(like_run / "summary.json")
    for unit, d in zip((0, 1, 2), dirs, strict=True):
        s = read_json(d / "summary.json")
        assert s["completed"] and s["exit_units"] == [unit] and s["scheme"] == f"optimal@{unit}"
        # only the trunk up to the exit is computed: its MACs are the anytime net's up to that unit
        # minus the heads of the earlier exits (n=1: unit j has 4 * 2**j channels -> 10 classes)
        earlier_heads = sum(4 * 2**j * 10 for j in range(unit))
        assert s["exit_macs"] == [like["exit_macs"][unit] - earlier_heads]
        assert s["config"]["data.synthetic_size"] == 64 and s["config"]["train.epochs"] == 1
        state = torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert {int(k.split(".")[1]) for k in state if k.startswith("units.")} == set(range(unit + 1))
        assert {k.split(".")[1] for k in state if k.startswith("heads.")} == {"0"}
    # a second call skips the completed runs
    log.clear()
    run_opt_plan(plan, tensorboard=False, log=log.append)
    assert all("is complete, skipped" in line for line in log) and len(log) == 3


def test_jobs_train_in_parallel_processes_with_the_same_results(like_run, tmp_path, capsys):
    """--jobs 2 trains the OPT runs two at a time in spawned processes; each run is the same as when
    trained in turn (same seed, one thread), and --like repeats for several anytime runs."""
    one = run_opt_plan(plan_opt_runs(like_run, out_root=tmp_path / "one"), tensorboard=False, log=lambda m: None)
    assert cli_main(["--like", str(like_run), "--like", str(like_run), "--out", str(tmp_path / "two"),
                     "--jobs", "2", "--train.num_threads", "1", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert out.count("training") == 3  # the second --like plans the same runs: each once
    for d in one:
        first, second = read_json(d / "summary.json"), read_json(tmp_path / "two" / d.name / "summary.json")
        assert second["completed"] and second["errors"] == first["errors"]
    with pytest.raises(ValueError, match="jobs=0"):
        run_opt_plan(plan_opt_runs(like_run, out_root=tmp_path / "three"), jobs=0)


def test_cli(like_run, tmp_path, capsys):
    assert cli_main(["--like", str(like_run), "--out", str(tmp_path), "--every-exit", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines] == ["0", "1", "2"] and all(" new " in ln for ln in lines)
    with pytest.raises(ValueError, match="not a run directory"):
        cli_main(["--like", str(tmp_path / "nothing")])
    with pytest.raises(ValueError, match="would change what OPT computes"):
        plan_opt_runs(like_run, overrides={"train.epochs": 5})
    opt_dir = plan_opt_runs(like_run, out_root=tmp_path)[0]
    run_opt_plan([opt_dir], tensorboard=False, log=lambda m: None)
    with pytest.raises(ValueError, match="is itself an OPT run"):
        cli_main(["--like", str(opt_dir.run_dir)])
    # a finished run of another protocol under the planned name is refused, not silently reused
    meta = json.loads((opt_dir.run_dir / "config.json").read_text())
    meta["config"]["train"]["weight_decay"] = 0.01
    (opt_dir.run_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="train.weight_decay: 0.01 there, 0.0002 planned"):
        run_opt_plan([opt_dir], tensorboard=False, log=lambda m: None)
