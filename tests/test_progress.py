"""Progress of the long phases (evaluation, budgeted inference, OPT baselines, sweeps): a bar with
an ETA on a terminal's stderr, nothing drawn in a log or with -q; -q on every command; the old flag
spellings as deprecated aliases of the config-key flags."""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from adaptive_weights.cli import COMMANDS, command_parser, main


class FakeTerminal(io.StringIO):
    """stderr as a terminal: where bars are drawn."""

    def isatty(self) -> bool:
        return True


def _flags(flat: dict) -> list[str]:
    return [a for k, v in flat.items() for a in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from conftest import TINY

    out = tmp_path_factory.mktemp("progress") / "run"
    assert main(["train", "--out", str(out), *_flags({**TINY, "train.epochs": 1, "train.batch_size": 16})]) == 0
    return out


def _terminal(monkeypatch) -> FakeTerminal:
    """sys.stderr as a terminal; in the test's body, since capture puts its own back before the call."""
    stream = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_evaluate_and_budgets_draw_bars_on_a_terminal_only(tiny_run, monkeypatch, capsys):
    terminal = _terminal(monkeypatch)
    assert main(["evaluate", str(tiny_run), "--budgets", "0.6,1"]) == 0
    drawn = terminal.getvalue()
    assert "evaluate test" in drawn and "batch" in drawn and "\r" in drawn
    assert "budgeted inference, 2 budget(s)" in drawn
    assert "budgeted-batch inference" in capsys.readouterr().out  # the results are unchanged, on stdout
    monkeypatch.undo()  # stderr is capture's again: a log, not a terminal
    assert main(["evaluate", str(tiny_run), "--budgets", "0.6,1"]) == 0
    assert capsys.readouterr().err == ""


def test_evaluate_draws_nothing_with_quiet(tiny_run, monkeypatch, capsys):
    terminal = _terminal(monkeypatch)
    assert main(["evaluate", str(tiny_run), "--budgets", "0.6,1", "-q"]) == 0
    assert terminal.getvalue() == ""
    assert "budgeted-batch inference" in capsys.readouterr().out


def _fake_runs(delays: dict[int, float], fail: int | None = None):
    """Futures of fake OPT runs (unit -> seconds), on threads: each returns (summary, seconds)."""
    gate = threading.Event()

    def run(unit: int, delay: float):
        gate.wait()
        time.sleep(delay)
        if unit == fail:
            raise RuntimeError(f"unit {unit} broke")
        return {"status": "completed", "errors": {"val": [0.5], "test": [unit / 100]}}, delay

    pool = ThreadPoolExecutor(max_workers=len(delays))
    futures = {pool.submit(run, unit, delay): unit for unit, delay in delays.items()}
    gate.set()
    return pool, futures


def test_opt_runs_are_reported_in_the_order_they_finish_under_a_bar(monkeypatch):
    terminal = _terminal(monkeypatch)
    from adaptive_weights.opt import report_as_finished

    pool, futures = _fake_runs({26: 0.3, 6: 0.0, 13: 0.15})  # submitted deepest first, finish shallowest first
    lines: list[str] = []
    with pool:
        report_as_finished(futures, log=lines.append)
    assert [ln.split(":")[0] for ln in lines] == ["[1/3 done] OPT at unit 6", "[2/3 done] OPT at unit 13",
                                                  "[3/3 done] OPT at unit 26"]
    assert "test err 6.00%" in lines[0] and all("eta " in ln for ln in lines)
    assert "OPT runs" in terminal.getvalue()


def test_opt_progress_is_lines_only_in_a_log_and_nothing_with_quiet(monkeypatch):
    terminal = _terminal(monkeypatch)
    from adaptive_weights.opt import report_as_finished

    lines: list[str] = []
    pool, futures = _fake_runs({6: 0.0, 13: 0.1}, fail=13)
    with pool, pytest.raises(RuntimeError, match="unit 13 broke"):  # raised after every run is reported
        report_as_finished(futures, log=lines.append, progress=False)
    assert terminal.getvalue() == "" and lines[1].startswith("[2/2 failed] OPT at unit 13: RuntimeError")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    pool, futures = _fake_runs({6: 0.0})
    with pool:
        report_as_finished(futures, log=lines.append)
    assert log.getvalue() == "" and lines[-1].startswith("[1/1 done] OPT at unit 6")


def test_opt_cli_reports_each_finished_run_and_is_silent_with_quiet(tiny_run, tmp_path, capsys):
    assert main(["opt", "--like", str(tiny_run), "--out", str(tmp_path / "a"), "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "[1/3 done] OPT at unit" in out and "[3/3 done]" in out and "err " in out and "eta " in out
    assert main(["opt", "--like", str(tiny_run), "--out", str(tmp_path / "b"), "--no-tensorboard", "-q"]) == 0
    printed = capsys.readouterr()
    assert "done]" not in printed.out and "training" not in printed.out and printed.err == ""
    assert "OPT runs:" in printed.out  # the result still prints


def _commands() -> list[str]:
    sub = next(a for a in command_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_the_subparsers_are_the_commands():
    assert _commands() == list(COMMANDS)


@pytest.mark.parametrize("command", _commands())
def test_every_command_takes_quiet(command, capsys):
    """A new command without the shared -q fails here."""
    with pytest.raises(SystemExit) as done:
        main([command, "-q", "--help"])
    assert done.value.code == 0
    assert "-q, --quiet" in capsys.readouterr().out


@pytest.mark.parametrize("old, key, value, parsed", [
    ("--device", "train.device", "cpu", "cpu"),
    ("--threads", "train.num_threads", "2", 2),
])
def test_an_old_flag_sets_the_config_key_and_warns_once(old, key, value, parsed, capsys):
    from adaptive_weights._flags import add_config_flag

    parser = argparse.ArgumentParser()
    add_config_flag(parser, key, dest="x", help="h", type=type(parsed))
    assert parser.parse_args([f"--{key}", value]).x == parsed
    assert parser.parse_args([f"--{key.replace('_', '-')}", value]).x == parsed
    assert capsys.readouterr().err == ""  # the canonical spellings do not warn
    parser = argparse.ArgumentParser()
    add_config_flag(parser, key, dest="x", help="h", type=type(parsed))
    assert parser.parse_args([old, value, old, value]).x == parsed
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and f"use --{key}" in err and old in err
    assert old not in parser.format_help()  # hidden: --help shows the canonical flag only


def test_old_flags_of_opt_and_evaluate_still_work(tiny_run, tmp_path, capsys):
    assert main(["opt", "--like", str(tiny_run), "--out", str(tmp_path), "--dry-run", "--device", "cpu",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "--device is deprecated" in err and "use --train.device" in err
    assert "--threads is deprecated" in err and "use --train.num_threads" in err
    assert main(["evaluate", str(tiny_run), "--device", "cpu", "-q"]) == 0
    assert capsys.readouterr().err.count("use --train.device") == 1
    assert main(["opt", "--like", str(tiny_run), "--out", str(tmp_path), "--dry-run", "--train.device", "cpu",
                 "--train.num-threads", "1", "--train.compile", "none"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["opt", "--like", str(tiny_run), "--dry-run", "--train.epochs", "3"]) == 2
    assert "would change what OPT computes" in capsys.readouterr().err


def _trial(name: str, result: dict) -> SimpleNamespace:
    return SimpleNamespace(custom_trial_name=name, config={"train.epochs": 4}, last_result=result,
                           path=f"/sweeps/{name}")


def test_the_sweep_callback_counts_on_from_the_finished_trials_with_an_eta(monkeypatch, capsys):
    terminal = _terminal(monkeypatch)
    from adaptive_weights.tuning.launcher import _progress_callback

    callback = _progress_callback(5, 2)  # a resumed sweep: 2 of its 5 trials finished before
    running = _trial("r-a", {})
    callback.on_trial_result(0, [], running, {"epoch": 1})
    callback.on_trial_result(0, [], running, {"epoch": 3})
    assert "r-a epoch 3/4" in terminal.getvalue() and "eta" in terminal.getvalue()
    result = {"epoch": 4, "val/err/final": 0.25, "val/err/mean": 0.5, "time_total_s": 7.0}
    callback.on_trial_complete(0, [], _trial("r-a", result))
    callback.on_trial_error(0, [], _trial("r-b", {}))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[3/5] r-a: val err final 25.00% mean 50.00% after 4 epochs (7 s); eta ")
    assert lines[1] == "[failed] r-b: see /sweeps/r-b/error.txt"
    callback.on_experiment_end([])


def test_the_sweep_callback_draws_no_bar_in_a_log(capsys):
    from adaptive_weights.tuning.launcher import _progress_callback

    callback = _progress_callback(1)
    callback.on_trial_result(0, [], _trial("r-a", {}), {"epoch": 1})
    callback.on_trial_complete(0, [], _trial("r-a", {"epoch": 4, "val/err/final": 0.25, "val/err/mean": 0.5}))
    printed = capsys.readouterr()
    assert printed.err == "" and printed.out.startswith("[1/1] r-a: ") and "; eta " in printed.out
