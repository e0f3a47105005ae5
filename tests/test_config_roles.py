"""Config-key roles: declared once on the config fields; every key list is derived from them."""

import dataclasses

import pytest

from adaptive_weights import config as C
from adaptive_weights.config import RunConfig, default_run_name


def test_every_field_has_exactly_one_of_experiment_or_execution():
    for section, tp in C._SECTIONS.items():
        for f in dataclasses.fields(tp):
            roles = f.metadata.get("roles")
            assert roles and len(roles & {C.EXPERIMENT, C.EXECUTION}) == 1, f"{section}.{f.name}"
            assert roles <= set(C.ROLES)


def test_a_field_without_a_role_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        fine: int = C._f(1, C.EXPERIMENT)
        forgotten: int = 2

    with pytest.raises(TypeError, match=r"bad\.forgotten"):
        C.check_roles("bad", Bad)

    @dataclasses.dataclass(frozen=True)
    class Both:
        both: int = C._f(1, C.EXPERIMENT, C.EXECUTION)

    with pytest.raises(TypeError, match=r"both\.both"):
        C.check_roles("both", Both)


def test_derived_lists():
    assert set(C.EXECUTION_KEYS) == {
        "name", "data.root", "data.download", "data.num_workers", "train.device", "train.num_threads",
        "train.progress", "train.compile", "train.channels_last", "train.checkpoint_minutes", "train.eval_splits",
        "train.speed", "train.cudnn_benchmark", "train.fused_sgd", "train.compile_cache"}
    assert set(C.RESUMABLE_KEYS) == set(C.EXECUTION_KEYS) | {"train.epochs"}
    assert C.MODEL_KEYS == ("data.name", "model.arch", "model.n", "model.c", "model.period", "model.depth",
                            "model.unit_style")
    assert C.OPT_MODEL_KEYS == tuple(k for k in C.MODEL_KEYS if k != "model.period")
    assert set(C.ARCHITECTURE_KEYS) == {"model.arch", "model.n", "model.c", "model.period", "model.depth",
                                        "model.unit_style", "data.name", "scheme.name", "scheme.normalize",
                                        "strategy.name", "objective.name", "gradient.name"}
    assert C.roles_of("strategy.gamma") == C.roles_of("strategy.")
    assert C.EXPERIMENT in C.roles_of("strategy.gamma") and not C.roles_of("train.nonsense")
    assert C.roles_of("objective.alpha") == C.roles_of("objective.") and C.EXPERIMENT in C.roles_of("gradient.scope")


def test_the_users_of_the_lists_take_the_derived_ones():
    from adaptive_weights import grouping, opt, runs
    from adaptive_weights.tuning import plan, selection, sweepfile

    assert grouping.EXECUTION_KEYS is C.EXECUTION_KEYS and runs.MODEL_KEYS is C.MODEL_KEYS
    assert plan.EXECUTION_KEYS is C.EXECUTION_KEYS
    assert runs.OPT_MODEL_KEYS is C.OPT_MODEL_KEYS and opt.EXECUTION_KEYS is C.EXECUTION_KEYS
    assert selection._IGNORED_KEYS == {*C.EXECUTION_KEYS, "train.seed"}
    assert sweepfile.NAMING_PREFIXES is C.NAMING_PREFIXES


_OTHER_VALUE = {"model.arch": "imagenet-resnet", "model.n": 4, "model.c": 8, "model.period": 2, "model.depth": 18,
                "data.name": "synthetic", "scheme.name": "const", "strategy.name": "eg", "train.seed": 3}


@pytest.mark.parametrize("key", sorted(_OTHER_VALUE))
def test_naming_role_matches_the_default_run_name(key):
    """A NAMING key changes the default run name; no other key does."""
    base = {"model.arch": "imagenet-resnet"} if key == "model.depth" else {}
    a = RunConfig.from_flat(base)
    b = RunConfig.from_flat({**base, key: _OTHER_VALUE[key]})
    assert (default_run_name(a) != default_run_name(b)) == (C.NAMING in C.roles_of(key))


def test_keys_outside_the_naming_role_leave_the_name_alone():
    a = RunConfig()
    for key, value in {"model.unit_style": "2017", "data.val_split": 10, "train.batch_size": 7,
                       "train.device": "cpu", "scheme.normalize": "sum"}.items():
        assert C.NAMING not in C.roles_of(key)
        assert default_run_name(RunConfig.from_flat({key: value})) == default_run_name(a), key


@pytest.mark.parametrize(("key", "value"), [("strategy.gamma", 0.2), ("strategy.warmup_epochs", 0)])
def test_every_strategy_hparam_off_its_default_is_in_the_name(key, value):
    """strategy.* keys have the NAMING role: strategy.warmup_epochs was left out of the name, so a
    sweep over it was refused ('two trials would both be the run ...')."""
    a = RunConfig.from_flat({"strategy.name": "eg"}).resolve()
    b = RunConfig.from_flat({"strategy.name": "eg", key: value}).resolve()
    assert a.name != b.name and b.name.endswith(f"-eg-{key.split('.')[1]}{value}-s0")
