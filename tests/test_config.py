"""The one configuration: flat keys, type conversion, validation with clear errors."""

import pytest

from adaptive_weights.config import PRESETS, RunConfig, coerce_value, load_config_file
from adaptive_weights.errors import RefusedError
from adaptive_weights.schedules import lr_at_epoch


def test_flat_round_trip_and_types():
    cfg = RunConfig.from_flat({"model.n": "9", "train.lr-milestones": "10,20", "train.amp": "true",
                               "data.val_split": "none", "strategy.name": "eg", "strategy.gamma": 0.2})
    assert cfg.model.n == 9 and cfg.train.lr_milestones == (10, 20) and cfg.train.amp is True
    assert cfg.data.val_split is None
    flat = cfg.to_flat()
    assert flat["strategy.gamma"] == 0.2 and flat["train.lr_milestones"] == [10, 20]
    assert RunConfig.from_flat(flat) == cfg


def test_resolve_fills_strategy_defaults_and_preset():
    cfg = RunConfig.from_flat({"strategy.name": "eg", "strategy.gamma": 0.1, "train.preset": "cifar"}).resolve()
    assert cfg.strategy.params["gamma"] == 0.1
    assert cfg.strategy.params["rho"] == 0.8 and cfg.strategy.params["ratio"] == 2.0
    assert cfg.train.epochs == 300 and cfg.train.lr_milestones == (140, 210, 250)
    assert cfg.name == "digits-resnet3c16-sieve-eg-gamma0.1-s0"
    # a shorter run stretches the preset's schedule proportionally
    short = RunConfig.from_flat({"train.preset": "cifar", "train.epochs": 30}).resolve()
    assert short.train.lr_milestones == (14, 21, 25)
    assert [lr_at_epoch(e, (14, 21, 25), PRESETS["cifar"][2]) for e in (0, 13, 14, 21, 29)] == \
        [0.1, 0.1, 0.01, 0.001, 0.0002]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 7])
def test_a_short_run_of_any_preset_gives_every_rate_an_epoch(preset, epochs):
    """cifar at 2 epochs puts all three milestones in epoch 1: once refused as a schedule the user
    never typed, then merged into 0.1 followed by the preset's last rate. Now every rate kept holds
    for one epoch at least, and the rates are the preset's first ones, in order."""
    t = RunConfig.from_flat({"train.preset": preset, "train.epochs": epochs}).resolve().train
    assert list(t.lr_milestones) == sorted(set(t.lr_milestones)) and all(1 <= m < epochs for m in t.lr_milestones)
    assert len(t.lr_values) == len(t.lr_milestones) + 1
    spans = [b - a for a, b in zip((0, *t.lr_milestones), (*t.lr_milestones, epochs), strict=True)]
    assert min(spans) >= 1, (t.lr_milestones, epochs)
    rates = PRESETS[preset][2]
    if preset != "imagenet":  # imagenet's rates scale with the batch
        assert t.lr_values == rates[: len(t.lr_values)]


def test_a_short_run_keeps_the_presets_first_rates():
    """The issue's 2-epoch sweep: cifar at 2 epochs was 0.1, then 0.0002 after epoch 1 (eg and aann
    ended with identical errors); now 0.1, then 0.01, and the schedule line says how it was fitted."""
    from adaptive_weights.schedules import describe_schedule

    t = RunConfig.from_flat({"train.preset": "cifar", "train.epochs": 2}).resolve().train
    assert (t.lr_milestones, t.lr_values) == ((1,), (0.1, 0.01))
    assert ("step lr 0.1, 0.01 after epoch 1 (the cifar preset's 300-epoch steps scaled to 2 epochs, each rate kept "
            "for one epoch at least; its last 2 rates dropped: no epoch left for them)") in describe_schedule(t)
    t = RunConfig.from_flat({"train.preset": "cifar", "train.epochs": 4}).resolve().train
    assert (t.lr_milestones, t.lr_values) == ((1, 2, 3), PRESETS["cifar"][2])  # the CPU reference campaign's
    t = RunConfig.from_flat({"train.preset": "digits", "train.epochs": 4}).resolve().train
    assert (t.lr_milestones, t.lr_values) == ((2, 3), (0.1, 0.01, 0.001))  # 20, 26 of 30 -> 2, 3 of 4
    own = RunConfig.from_flat({"train.preset": "cifar", "train.epochs": 2, "train.lr_milestones": "1",
                               "train.lr_values": "0.1,0.05"}).resolve().train
    assert "preset's" not in describe_schedule(own)  # milestones of the user's own: nothing was fitted
    assert "preset's" not in describe_schedule(RunConfig.from_flat({"train.preset": "cifar"}).resolve().train)


def test_imagenet_preset_scales_the_rate_with_the_batch():
    cfg = RunConfig.from_flat({"train.preset": "imagenet", "train.batch_size": 128}).resolve()
    assert cfg.train.epochs == 128 and cfg.train.lr_milestones == (30, 60, 90, 105)
    assert cfg.train.lr_values[0] == pytest.approx(0.05) and cfg.train.lr_values[1] == pytest.approx(0.005)


def test_switching_strategy_drops_the_old_hyper_parameters():
    base = RunConfig.from_flat({"strategy.name": "eg", "strategy.gamma": 0.1})
    cfg = RunConfig.from_flat({"strategy.name": "static"}, base=base).resolve()
    assert cfg.strategy.name == "static" and "gamma" not in cfg.strategy.params


@pytest.mark.parametrize("flat,match", [
    ({"model.bogus": 1}, r"unknown config key 'model.bogus'; valid keys in model: model.arch, model.n"),
    ({"modle.n": 1}, r"unknown config key 'modle.n'; did you mean 'model.n'\?"),
    ({"train.epoch": 3}, r"unknown config key 'train.epoch'; did you mean 'train.epochs'\?"),
    ({"model.epochs": 3}, r"unknown config key 'model.epochs'; did you mean 'train.epochs'\?"),
    ({"zzz.q": 1}, r"unknown config key 'zzz.q'; the sections are name, model, data, scheme"),
    ({"model.n": "nine"}, r"model.n: expected int, got 'nine'"),
    ({"train.amp": "maybe"}, r"train.amp: expected bool, got 'maybe'"),
])
def test_bad_keys_and_types_fail_on_parse(flat, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_flat(flat)


@pytest.mark.parametrize("flat,match", [
    ({"model.n": 0}, r"model.n: expected a positive integer, got 0"),
    ({"model.arch": "vgg"}, r"model.arch: got 'vgg'; allowed: .*resnet"),
    ({"data.name": "mnist"}, r"data.name: got 'mnist'; allowed: digits, synthetic, cifar10"),
    ({"scheme.name": "nope"}, r"scheme.name: unknown weight scheme 'nope'"),
    ({"scheme.normalize": "max"}, r"scheme.normalize: got 'max'; allowed: last, sum, log, none"),
    ({"strategy.name": "nope"}, r"strategy: .*nope.*"),
    ({"strategy.name": "eg", "strategy.gamma": 7.0}, r"strategy: .*gamma.*7"),
    ({"strategy.name": "eg", "strategy.bogus": 1}, r"strategy: .*bogus"),
    ({"train.preset": "fast"}, r"train.preset: got 'fast'; allowed: auto, cifar"),
    ({"train.lr_milestones": "5,3"}, r"train.lr_milestones: expected increasing"),
    ({"train.lr_milestones": "5", "train.lr_values": "0.1"}, r"train.lr_values: need 2 values"),
    ({"scheme.name": "optimal@3", "strategy.name": "eg"}, r"OPT runs use strategy 'static'"),
    ({"train.device": "tpu"}, r"train.device: got 'tpu'"),
])
def test_resolve_names_key_value_and_allowed(flat, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_flat(flat).resolve()


def test_yaml_nested_and_flat(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("model:\n  n: 5\n  c: 8\nstrategy.name: rwm\ntrain:\n  lr-milestones: [3, 6]\n")
    flat = load_config_file(p)
    assert flat == {"model.n": 5, "model.c": 8, "strategy.name": "rwm", "train.lr_milestones": [3, 6]}
    cfg = RunConfig.from_flat(flat)
    assert cfg.model.n == 5 and cfg.train.lr_milestones == (3, 6)
    with pytest.raises(ValueError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_coerce_value_edge_cases():
    assert coerce_value("k", 3.0, int) == 3
    with pytest.raises(ValueError, match="k: expected int, got 3.5"):
        coerce_value("k", 3.5, int)
    with pytest.raises(ValueError, match="expected float, got True"):
        coerce_value("k", True, float)
    assert coerce_value("k", "[1, 2]", tuple[int, ...]) == (1, 2)


def test_unreadable_config_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ValueError, match=r"bad.yaml' is not valid YAML"):
        load_config_file(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(ValueError, match=r"bad.json' is not valid JSON"):
        load_config_file(bad_json)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping, got list"):
        load_config_file(listing)
    binary = tmp_path / "weights.yaml"  # e.g. a checkpoint passed as --config by mistake
    binary.write_bytes(b"\x80\x02}q\x00")
    with pytest.raises(RefusedError, match=r"weights.yaml' is not UTF-8 text"):
        load_config_file(binary)
