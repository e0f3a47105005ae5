"""Objectives, gradient rules and the new strategies in the training loop: the default step is
unchanged bit for bit, every new plug-in resumes exactly, and CLI, YAML and sweeps reach them."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import interrupt_after_epoch

from adaptive_weights.config import RunConfig
from adaptive_weights.evaluate import per_exit_losses
from adaptive_weights.runs import load_run_config
from adaptive_weights.training import build_run, build_step_plugins, train, training_step


def _old_training_step(model, optimizer, strategy, x, y):
    """The training step before objectives and gradient rules existed (kept here as the reference)."""
    weights = strategy.step_weights()
    logits = model(x)
    losses = per_exit_losses(logits, y)
    loss = (weights * losses).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    strategy.observe(losses.detach())
    return loss, losses.detach()


@pytest.mark.parametrize("strategy", ["aann", "eg"])
def test_the_default_step_is_bit_identical_to_the_old_one(tiny_flat, strategy):
    cfg = RunConfig.from_flat({**tiny_flat, "strategy.name": strategy, "strategy.warmup_epochs": 0}
                              if strategy == "eg" else {**tiny_flat, "strategy.name": strategy}).resolve()
    assert (cfg.objective.name, cfg.gradient.name) == ("ce", "sum")
    device = torch.device("cpu")
    torch.manual_seed(0)
    data, model, base, strat = build_run(cfg, device)
    old_model, old_strat = copy.deepcopy(model), copy.deepcopy(strat)
    opt = torch.optim.SGD(model.parameter_groups(2e-4, base.tolist()), lr=0.05, momentum=0.9)
    old_opt = torch.optim.SGD(old_model.parameter_groups(2e-4, base.tolist()), lr=0.05, momentum=0.9)
    objective, gradient = build_step_plugins(cfg, model)
    forward = gradient.forward_fn()
    data.train.set_epoch(0)
    for x, y in data.train:
        loss, losses, _, _ = training_step(forward, opt, strat, x, y, objective=objective, gradient=gradient,
                                           amp=False, device=device)
        old_loss, old_losses = _old_training_step(old_model, old_opt, old_strat, x, y)
        assert torch.equal(loss, old_loss) and torch.equal(losses, old_losses)
    for (name, p), q in zip(model.state_dict().items(), old_model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


# every new objective, gradient rule and strategy at least once (combined, to keep the suite fast)
NEW_PLUGINS = {
    "ge+distill-final+round-robin": {"gradient.name": "ge", "objective.name": "distill",
                                     "strategy.name": "round-robin",
                                     "data.synthetic_size": 64},  # 2 steps an epoch: resumes mid-rotation
    "pcgrad+distill-ensemble+aann": {"gradient.name": "pcgrad", "objective.name": "distill",
                                     "objective.teacher": "ensemble-of-deeper", "strategy.name": "aann"},
    "upgrad-last-group+warmup": {"gradient.name": "upgrad", "gradient.scope": "last-group",
                                 "strategy.name": "warmup", "strategy.warmup_epochs": 2},
    "mgda+distill-next-deeper": {"gradient.name": "mgda", "objective.name": "distill",
                                 "objective.teacher": "next-deeper"},
    "cagrad": {"gradient.name": "cagrad"},
}


@pytest.mark.parametrize("case", list(NEW_PLUGINS))
def test_resume_is_exact_with_every_new_plugin(tmp_path, tiny_flat, case):
    cfg = RunConfig.from_flat({**tiny_flat, "data.synthetic_size": 96, **NEW_PLUGINS[case]})
    straight = train(cfg, out_dir=tmp_path / "a", tensorboard=False)
    stopped_at = interrupt_after_epoch(cfg, tmp_path / "b", 1)
    assert stopped_at == 1
    resumed = train(cfg, out_dir=tmp_path / "b", resume=True, tensorboard=False)
    assert resumed["errors"] == straight["errors"]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name


def test_resume_refuses_a_changed_objective_or_gradient_rule(tmp_path, tiny_flat):
    cfg = RunConfig.from_flat({**tiny_flat, "train.epochs": 1})
    train(cfg, out_dir=tmp_path / "r", tensorboard=False)
    for key, value in (("objective.name", "distill"), ("gradient.name", "ge")):
        changed = RunConfig.from_flat({**tiny_flat, "train.epochs": 2, key: value})
        with pytest.raises(ValueError, match=f"{key}: 'c?e?s?u?m?'?.*-> '{value}'"):
            train(changed, out_dir=tmp_path / "r", resume=True, tensorboard=False)


def test_cli_yaml_and_sweep_reach_the_new_sections(tmp_path, tiny_flat, capsys):
    import yaml

    from adaptive_weights.cli import main
    from adaptive_weights.tuning.sweepfile import load_sweep

    nested: dict = {}
    for key, value in {**tiny_flat, "train.epochs": 1}.items():
        section, sub = key.split(".", 1)
        nested.setdefault(section, {})[sub] = value
    nested["objective"] = {"name": "distill", "alpha": 0.3, "teacher": "next-deeper"}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(nested))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(out),
                 "--gradient.name", "ge"]) == 0
    recorded = load_run_config(out)
    assert recorded.objective.params == {"alpha": 0.3, "teacher": "next-deeper", "temperature": 3.0}
    assert (recorded.objective.name, recorded.gradient.name) == ("distill", "ge")
    capsys.readouterr()
    assert main(["train", "--gradient.name", "pcgrad", "--gradient.scope", "heads"]) == 2
    assert "scope='heads' is not allowed; choose one of trunk, last-group" in capsys.readouterr().err

    sweep = {**{k: v for k, v in tiny_flat.items()}, "objective.name": ["ce", "distill"],
             "objective.alpha": [0.3, 0.7], "gradient.name": ["sum", "ge"], "sweep": {"paper_grid": False}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    spec = load_sweep(tmp_path / "sweep.yaml")
    combos = sorted((t["objective.name"], t.get("objective.alpha", 0), t["gradient.name"]) for t in spec.trials)
    assert combos == [("ce", 0, "ge"), ("ce", 0, "sum"), ("distill", 0.3, "ge"), ("distill", 0.3, "sum"),
                      ("distill", 0.7, "ge"), ("distill", 0.7, "sum")]
    assert len({t["name"] for t in spec.trials}) == 6
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**tiny_flat, "objective.beta": [1, 2]}))
    with pytest.raises(ValueError, match=r"objective.beta: no objective of this sweep \(ce\) has a hyper-parameter 'beta'"):
        load_sweep(tmp_path / "bad.yaml")


def test_data_parallel_runs_refuse_a_rule_that_bypasses_ddp(tmp_path, tiny_flat, monkeypatch):
    import adaptive_weights.training as train_module
    from adaptive_weights.distributed import Distributed
    from adaptive_weights.errors import RefusedError

    two_ranks = Distributed(rank=0, world_size=2, local_rank=0, backend="gloo")
    monkeypatch.setattr(train_module, "setup_distributed", lambda device: (two_ranks, device))
    with pytest.raises(RefusedError, match="gradient.name: 'ge' does not run data-parallel"):
        train(RunConfig.from_flat({**tiny_flat, "gradient.name": "ge"}), out_dir=tmp_path / "r", tensorboard=False)
    assert not (tmp_path / "r" / "config.json").exists()  # refused before the run is written


def test_a_compiled_run_refuses_a_torchjd_rule(tmp_path, tiny_flat):
    from adaptive_weights.errors import RefusedError

    cfg = RunConfig.from_flat({**tiny_flat, "gradient.name": "upgrad", "train.compile": "default"})
    with pytest.raises(RefusedError, match="gradient.name: 'upgrad' cannot run with train.compile 'default'"):
        train(cfg, out_dir=tmp_path / "r", tensorboard=False)
    assert not (tmp_path / "r" / "config.json").exists()
