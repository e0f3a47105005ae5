"""The strategy section is typed once: resolve() coerces and validates the hyper-parameters, and
train() and the strategy's construction take the resolved config as it is (issue 14 item 3)."""

from __future__ import annotations

import pytest

import adaptive_weights.strategies._base as strategy_base
from adaptive_weights.cli import main
from adaptive_weights.config import RunConfig


@pytest.fixture
def count_validations(monkeypatch):
    calls = []
    original = strategy_base.resolve_hparams

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(strategy_base, "resolve_hparams", counting)
    return calls


def test_the_train_path_validates_once(tmp_path, tiny_flat, count_validations):
    flags = [a for k, v in {**tiny_flat, "train.epochs": 1, "strategy.name": "eg", "strategy.gamma": "0.2"}.items()
             for a in (f"--{k}", str(v))]
    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 0
    assert count_validations == ["strategy 'eg'"]


def test_the_sweep_path_validates_once_per_trial_and_once_in_it(tmp_path, tiny_flat, count_validations):
    from adaptive_weights.training import train
    from adaptive_weights.tuning.sweepfile import expand_sweep

    spec = expand_sweep({**tiny_flat, "train.epochs": 1, "train.batch_size": [16, 32], "strategy.name": "eg",
                         "strategy.gamma": 0.2}, name="s", paper_grid=False)
    assert len(spec.trials) == 2 and len(count_validations) == 2   # expansion: once per trial
    count_validations.clear()
    # a trial, as the trainable runs it: the flat trial config, resolved once inside train()
    train(RunConfig.from_flat(spec.trials[0]), out_dir=tmp_path / "t", tensorboard=False)
    assert count_validations == ["strategy 'eg'"]


def test_a_resolved_config_is_not_resolved_again_but_a_changed_copy_is(tiny_flat, count_validations):
    from dataclasses import replace

    cfg = RunConfig.from_flat({**tiny_flat, "strategy.name": "eg"}).resolve()
    assert cfg.resolve() is cfg and len(count_validations) == 1
    changed = replace(cfg, train=replace(cfg.train, seed=-1))
    with pytest.raises(ValueError, match="train.seed"):
        changed.resolve()


def test_text_hyper_parameters_are_converted_by_the_strategys_hparams():
    cfg = RunConfig.from_flat({"strategy.name": "eg", "strategy.gamma": "0.25"}).resolve()
    assert cfg.strategy.params["gamma"] == 0.25
    with pytest.raises(ValueError, match="gamma='x' must be a float"):
        RunConfig.from_flat({"strategy.name": "eg", "strategy.gamma": "x"}).resolve()
