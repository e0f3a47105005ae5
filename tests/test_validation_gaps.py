"""Bad values are refused by resolve() before any directory is made, in train and in
``sweep --dry-run`` alike (issue 13 item 8, and non-finite rates of item 2)."""

from __future__ import annotations

import pytest

from adaptive_weights.cli import main
from adaptive_weights.config import RunConfig
from adaptive_weights.errors import RefusedError

CASES = [
    ({"train.lr_values": "0.1,0.01,0.001"}, "train.lr_values: need 2 values for 1 milestones"),
    ({"train.lr_values": "nan,0.01"}, "train.lr_values: expected positive finite"),
    ({"train.lr_values": "inf,0.01"}, "train.lr_values: expected positive finite"),
    ({"scheme.name": "optimal@99"}, "scheme.name: scheme 'optimal@99': exit index 99 is out of range for 3 exits"),
    ({"data.name": "digits", "data.val_split": 5000}, "data.val_split: 5000 leaves no training image"),
    ({"train.batch_size": 4096}, "train.batch_size: 4096 is more than the 128 training images"),
    ({"data.name": "digits", "data.val_split": 1400, "train.batch_size": 128},
     "train.batch_size: 128 is more than the 97 training images"),
    ({"train.weight_decay": "nan"}, "train.weight_decay: expected a finite number"),
    ({"train.seed": -1}, "train.seed: expected an integer in 0"),
    ({"train.num_threads": -3}, "train.num_threads: expected a positive integer"),
    ({"train.device": "cuda:x"}, "train.device: got 'cuda:x'"),
    ({"train.label_smoothing": 1.5}, "train.label_smoothing"),
    ({"train.lr_schedule": "cosine", "train.lr_values": "0.1,0.01"}, "takes one peak rate"),
]


@pytest.mark.parametrize("flat,message", CASES)
def test_resolve_refuses(tiny_flat, flat, message):
    with pytest.raises(RefusedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_flat({**tiny_flat, **flat}).resolve()


@pytest.mark.parametrize("flat,message", CASES[:6] + CASES[7:11])
def test_train_refuses_before_any_directory(tmp_path, tiny_flat, flat, message, capsys):
    out = tmp_path / "run"
    flags = [a for k, v in {**tiny_flat, **flat}.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flat,message", CASES[:1] + CASES[3:6] + CASES[8:11])
def test_sweep_dry_run_refuses_the_same(tmp_path, tiny_flat, flat, message, capsys):
    import yaml

    sweep = tmp_path / "s.yaml"
    keys = {**tiny_flat, **flat, "strategy.name": "static"}
    sweep.write_text(yaml.safe_dump({k: (v if not isinstance(v, str) or "," not in v else
                                         [[float(x) for x in v.split(",")]]) for k, v in keys.items()}))
    assert main(["sweep", str(sweep), "--dry-run", "--out", str(tmp_path / "sweeps")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("flags,message", [
    (["--data.val-split", "40", "--train.batch-size", "8"], "val_split=40; allowed 0..39 for 40 training images"),
    (["--data.val-split", "8", "--train.batch-size", "64"], "train.batch_size: 64 is more than the 32 training images"),
])
def test_file_data_sets_are_checked_once_read_before_the_run_dir(tmp_path, flags, message, capsys):
    """CIFAR files hold what they hold: sizes are checked right after reading, before the run dir."""
    from conftest_data import write_fake_cifar

    write_fake_cifar(tmp_path / "data", "cifar10", "python", per_batch=8)  # 40 training images
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data.name", "cifar10", "--data.root", str(tmp_path / "data"),
                 "--model.n", "1", "--model.c", "4", "--train.preset", "smoke", "--train.epochs", "1",
                 "--train.progress", "false", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------ issue 19 item 8
@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "x\n"])
def test_a_run_name_that_is_no_directory_name_is_refused(tmp_path, tiny_flat, monkeypatch, capsys, name):
    """``--name ../../x`` without ``--out`` wrote results/runs/../../x, outside results/runs. A run
    name is checked as a sweep's name is: letters, digits, '.', '_' and '-'."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    flags = [a for k, v in tiny_flat.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--name", name, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: name: {name!r}") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not any(work.iterdir())


def test_default_run_names_are_run_names(tiny_flat):
    from adaptive_weights.config import is_run_name

    cfg = RunConfig.from_flat({**tiny_flat, "strategy.name": "eg", "strategy.gamma": 0.25}).resolve()
    assert is_run_name(cfg.name) and cfg.name == "synthetic-resnet1c4-sieve-eg-gamma0.25-s0"


def test_resuming_with_another_strategy_names_the_change(tmp_path, tiny_flat, capsys):
    """The stored eg run's gamma and rho were carried onto aann, which refused them as unknown
    hyper-parameters instead of naming the change of strategy."""
    from adaptive_weights.training import train

    run = tmp_path / "r"
    train(RunConfig.from_flat({**tiny_flat, "strategy.name": "eg", "train.epochs": 1}), out_dir=run,
          tensorboard=False)
    assert main(["train", "--resume", str(run), "--strategy.name", "aann"]) == 2
    err = capsys.readouterr().err
    assert "strategy.name: 'eg' -> 'aann'" in err and "unknown hyper-parameter" not in err, err


@pytest.mark.parametrize("text,key,lines", [
    ("train.seed: [0, 1]\nmodel.n: 1\ntrain.seed: 2\n", "train.seed", (1, 3)),
    ("train:\n  seed: 1\n  epochs: 2\n  seed: 3\n", "seed", (2, 4)),
])
def test_a_yaml_key_written_twice_is_refused_naming_both_lines(tmp_path, text, key, lines):
    """YAML kept the last of two equal keys: a grid axis written twice was silently dropped."""
    from adaptive_weights.config import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(RefusedError, match=rf"{path}.*'{key}' is written twice \(lines {lines[0]} and {lines[1]}\)"):
        load_config_file(path)


def test_a_json_key_written_twice_is_refused(tmp_path):
    from adaptive_weights.config import load_config_file

    path = tmp_path / "c.json"
    path.write_text('{"train.seed": [0, 1], "train.seed": 2}')
    with pytest.raises(RefusedError, match=rf"{path}.*'train.seed' is written twice"):
        load_config_file(path)


def test_a_run_refused_for_missing_data_leaves_no_directory(tmp_path, capsys):
    """CIFAR not found (a FileNotFoundError, read after the lock is taken) left a run directory
    holding only .lock."""
    out = tmp_path / "r"
    assert main(["train", "--data.name", "cifar10", "--data.root", str(tmp_path / "none"), "--out", str(out),
                 "--train.progress", "false"]) == 2
    assert "cifar10 not found" in capsys.readouterr().err
    assert not out.exists()


# accepted before, then a traceback after the run directory existed (issue 19 item 7): SGD's float32
# conversion of the rate or decay, CAGrad's solver, the allocator (c) or hours of building (n)
ABSURD = [
    ({"train.lr_values": "[1e308]"}, "train.lr_values: expected positive finite learning rates of at most 1e+06"),
    ({"train.weight_decay": "1e308"}, "train.weight_decay: expected a finite number in [0, 1], got 1e+308"),
    ({"gradient.name": "cagrad", "gradient.c": "1e308"}, "hyper-parameter c=1e+308 is out of range; allowed: [0, 10]"),
    ({"model.c": 100000}, "model.c: expected at most 1024"),
    ({"model.n": 100000}, "model.n: expected at most 200"),
]


@pytest.mark.parametrize("flat,message", ABSURD)
def test_absurd_values_are_refused_before_any_directory(tmp_path, tiny_flat, flat, message, capsys):
    out = tmp_path / "run"
    flags = [a for k, v in {**tiny_flat, "train.epochs": 1, **flat}.items() for a in (f"--{k}", str(v))]
    assert main(["train", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_final_newline_does_not_pass_a_name_or_device_check():
    """`re.match` with `$` accepts a string ending in a newline: 'cuda\\n' and a plug-in named 'eg\\n'."""
    import pytest as _pytest

    from adaptive_weights.config import RunConfig
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.strategies import Strategy, register_strategy

    with _pytest.raises(RefusedError, match="train.device"):
        RunConfig.from_flat({"data.name": "synthetic", "train.device": "cuda\n"}).resolve()
    with _pytest.raises((ValueError, RefusedError), match="newline-name"):
        register_strategy("newline-name\n")(type("NewlineName", (Strategy,), {}))
