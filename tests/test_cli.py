"""The command line: train / evaluate (+ budgeted) / strategies / plot, and its error messages."""

from __future__ import annotations

import json

import pytest

from adaptive_weights.cli import main, parse_overrides


def _flags(flat: dict) -> list[str]:
    return [a for k, v in flat.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def test_parse_overrides():
    assert parse_overrides(["--model.n", "9", "--train.amp", "--data.val-split=0", "--name", "x"]) == {
        "model.n": "9", "train.amp": "true", "data.val_split": "0", "name": "x"}
    with pytest.raises(ValueError, match="unexpected argument 'nine'"):
        parse_overrides(["nine"])


def test_train_evaluate_plot_round_trip(tmp_path, tiny_flat, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *_flags({**tiny_flat, "strategy.name": "eg", "strategy.gamma": 0.2})]) == 0
    printed = capsys.readouterr().out
    assert "exit  unit" in printed and "MACs" in printed
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["strategy"]["gamma"] == 0.2 and cfg["model"]["c"] == 4
    summary = json.loads((out / "summary.json").read_text())

    assert main(["evaluate", str(out), "--budgets", "0.5,1.0"]) == 0
    printed = capsys.readouterr().out
    # evaluating the checkpoint reproduces the test errors recorded at the end of training
    for k, err in enumerate(summary["errors"]["test"]):
        assert f"{100 * err:.2f}" in printed.splitlines()[3 + k]
    assert "budgeted-batch inference" in printed and "0.500" in printed
    # a budget no early exit can serve is refused naming the flag, before the evaluation table is printed
    assert main(["evaluate", str(out), "--budgets", "0.5,0"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "--budgets 0.5,0: 0 is outside [" in printed.err

    (out / "probability_stack.png").unlink()
    assert main(["plot", "probabilities", str(out)]) == 0
    assert (out / "probability_stack.png").read_bytes()[:4] == b"\x89PNG"


def test_config_file_and_overrides(tmp_path, tiny_flat, capsys):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("\n".join(f"{k}: {v}" for k, v in {**tiny_flat, "train.epochs": 1}.items()) + "\n")
    assert main(["train", "--config", str(yaml_file), "--out", str(tmp_path / "r"), "--model.c", "6"]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert cfg["model"]["c"] == 6 and cfg["train"]["epochs"] == 1


@pytest.mark.parametrize("flags,message", [
    (["--model.n", "0"], "model.n: expected a positive integer, got 0"),
    (["--strategy.name", "eg", "--strategy.gamma", "2"], "gamma"),
    (["--strategy.name", "nope"], "nope"),
    (["--model.width", "3"], "unknown config key 'model.width'"),
])
def test_bad_values_fail_before_any_work(tmp_path, flags, message, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started


def test_train_help_describes_every_key_once_aligned(capsys):
    """`train --help` gives every config key its type, default and the one-line description its
    field declares (config.key_docs), in aligned columns."""
    from adaptive_weights.config import key_docs

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    lines = lines[next(i for i, ln in enumerate(lines) if ln.startswith("config keys")):]
    docs = key_docs()
    described = [ln for ln in lines if ln.startswith("  --")]
    assert len(described) == len(docs)
    for key, doc in docs.items():
        line = next(ln for ln in described if ln.split()[0] == f"--{key}")
        assert line.endswith(doc) or line.endswith(f"{doc} (see below)") or f"{doc} (adaptive-weights" in line, line
    column = {ln.index(docs[ln.split()[0][2:]]) for ln in described}
    assert len(column) == 1  # one description column


def test_an_undescribed_config_key_is_refused():
    from dataclasses import dataclass, field

    from adaptive_weights.config import check_docs

    @dataclass
    class Section:
        x: int = field(default=1, metadata={"roles": frozenset({"experiment"})})

    with pytest.raises(TypeError, match=r"config key new\.x: give it a one-line description"):
        check_docs("new", Section)


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "3"], "unexpected argument '--epochs'; did you mean --train.epochs?"),
    (["--train.epoch", "3"], "unknown config key 'train.epoch'; did you mean 'train.epochs'?"),
    (["--train.batchsize", "3"], "did you mean 'train.batch_size'?"),
    (["--strategy.name", "eg", "--strategy.gama", "0.3"], "unknown hyper-parameter(s) gama (did you mean gamma?)"),
])
def test_a_mistyped_key_gets_did_you_mean(tmp_path, flags, message, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "train.lr_schedule" not in err  # the hint, not every key
    assert not (tmp_path / "r").exists()


def test_strategies_listing_and_help(capsys):
    assert main(["strategies"]) == 0
    listing = capsys.readouterr().out
    for name in ["static", "aann", "eg", "rwm", "avgl", "adaloss", "uniform", "quartile"]:
        assert name in listing
    assert "gamma" in listing and "0.3" in listing
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--strategy.name" in capsys.readouterr().out
    from adaptive_weights import __version__

    with pytest.raises(SystemExit, match="0"):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"adaptive-weights {__version__}"
