"""What a sweep checks in the driver before Ray starts, and what it says afterwards: plug-ins that
the trials' workers would lack, data that is not there, and failed trials. No Ray is started here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_weights.errors import RefusedError
from adaptive_weights.tuning.sweepfile import load_sweep, parse_sweep

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.epochs": 1, "train.batch_size": 32, "train.progress": False,
    "sweep.paper_grid": False,
}
# a plug-in module as a user writes it: importing it registers the strategy
PLUGIN = '''\
from adaptive_weights.strategies import register_strategy
from adaptive_weights.strategies.builtin import StaticStrategy


@register_strategy("{name}")
class Plugin(StaticStrategy):
    """A plug-in strategy of the sweep tests: the scheme's weights."""
'''


def _yaml(keys: dict) -> str:
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items())


def _no_ray(*args, **kwargs):
    raise AssertionError("Ray was started")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for plug-in modules, on this process's path and on a fresh process's (PYTHONPATH)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


# ----------------------------------------------------------------------------- item 2: plug-ins reach the workers
def test_sweep_imports_are_imported_before_the_trials_are_resolved(plugin_dir: Path) -> None:
    """``sweep.imports`` names modules that register plug-ins: the sweep imports them before it
    resolves its trials (here the only place the strategy is registered) and keeps them for the workers."""
    (plugin_dir / "aw_checks_file_plugin.py").write_text(PLUGIN.format(name="checks-file-plugin"))
    spec = parse_sweep({**TINY, "strategy.name": "checks-file-plugin", "sweep.imports": ["aw_checks_file_plugin"]})
    assert spec.imports == ("aw_checks_file_plugin",)
    assert [t["strategy.name"] for t in spec.trials] == ["checks-file-plugin"]


def test_the_plugin_flag_adds_to_sweep_imports(plugin_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--plugin MODULE`` (repeatable) is ``sweep.imports`` on the command line."""
    from adaptive_weights.tuning.cli import cli_main

    (plugin_dir / "aw_checks_flag_plugin.py").write_text(PLUGIN.format(name="checks-flag-plugin"))
    path = tmp_path / "s.yaml"
    path.write_text(_yaml({**TINY, "strategy.name": "checks-flag-plugin"}))
    assert cli_main([str(path), "--dry-run", "--plugin", "aw_checks_flag_plugin"]) == 0
    assert "synthetic-resnet1c4-sieve-checks-flag-plugin-s0" in capsys.readouterr().out


@pytest.mark.parametrize("value, message", [
    (["no_such_module_aw"], r"sweep\.imports: cannot import 'no_such_module_aw'"),
    (["not a module"], r"sweep\.imports: 'not a module' is not a module name"),
    ([3], r"sweep\.imports: 3 is not a module name"),
    (5, r"sweep\.imports: expected a list of module names"),
])
def test_bad_sweep_imports_are_refused_naming_the_value(value, message: str) -> None:
    with pytest.raises(RefusedError, match=message):
        parse_sweep({**TINY, "sweep.imports": value})


def test_a_plugin_registered_in_main_is_refused_before_ray_starts(tmp_path: Path) -> None:
    """A strategy registered by the script itself (``__main__``) passes the driver's validation, but
    no Ray worker can import ``__main__``: every trial failed there with 'unknown strategy' and the
    sweep ended with exit status 0. It is refused before Ray starts, naming the plug-in and the fix."""
    path = tmp_path / "s.yaml"
    path.write_text(_yaml({**TINY, "strategy.name": "checks-main-plugin"}))
    script = PLUGIN.format(name="checks-main-plugin") + (
        "import sys\nfrom adaptive_weights.cli import main\n"
        "rc = main(['sweep', sys.argv[1], '--out', sys.argv[2], '-q'])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: strategy 'checks-main-plugin' is registered in __main__") and \
        "--plugin MODULE" in line and "sweep.imports" in line, line
    assert not (tmp_path / "out").exists()


def test_a_plugin_that_a_fresh_process_lacks_is_caught_in_the_driver(plugin_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that registers its plug-in only when a function of it is called looks importable,
    yet a worker importing it would still lack the plug-in: one trial is resolved in a fresh Python
    process before Ray starts, and its failure is one clear error, not a traceback per trial."""
    import importlib

    from adaptive_weights.tuning import launcher

    lazy = PLUGIN.format(name="checks-lazy-plugin").replace('@register_strategy("checks-lazy-plugin")\n', "")
    (plugin_dir / "aw_checks_lazy_plugin.py").write_text(
        lazy + '\n\ndef install():\n    register_strategy("checks-lazy-plugin")(Plugin)\n')
    importlib.import_module("aw_checks_lazy_plugin").install()
    monkeypatch.setattr(launcher, "ray_session", _no_ray)
    spec = parse_sweep({**TINY, "strategy.name": "checks-lazy-plugin"})
    with pytest.raises(RefusedError, match=r"a fresh Python process \(as a Ray worker\) cannot resolve the trial "
                                           r"synthetic-resnet1c4-sieve-checks-lazy-plugin-s0: strategy: unknown strategy "
                                           r"'checks-lazy-plugin'.*--plugin MODULE"):
        launcher.run_sweep(spec, out=tmp_path / "out", verbose=0)
    assert not (tmp_path / "out").exists()


def test_a_plugin_module_the_driver_imported_is_carried_to_the_workers(plugin_dir: Path) -> None:
    """``import my_strategy`` before ``run_sweep``, as the docs promise: its module goes to the workers."""
    import importlib

    from adaptive_weights.tuning.plugins import sweep_imports

    (plugin_dir / "aw_checks_driver_plugin.py").write_text(PLUGIN.format(name="checks-driver-plugin"))
    importlib.import_module("aw_checks_driver_plugin")
    spec = parse_sweep({**TINY, "strategy.name": ["static", "checks-driver-plugin"]})
    assert sweep_imports(spec) == ("aw_checks_driver_plugin",)


# ----------------------------------------------------------------------------- item 4: data before Ray, failures
def test_a_data_root_pointing_nowhere_is_refused_by_the_dry_run_and_before_ray(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--data.root`` pointing nowhere passed ``--dry-run``; the sweep then started Ray and every
    trial failed. The data of every distinct data config is checked in the driver first."""
    from adaptive_weights.cli import main
    from adaptive_weights.tuning import launcher

    nowhere = tmp_path / "nowhere"
    path = tmp_path / "s.yaml"
    path.write_text(_yaml({"data.name": "cifar10", "model.n": 1, "model.c": 4, "train.epochs": 1,
                           "strategy.name": "static", "train.seed": [0, 1], "sweep.paper_grid": False}))
    assert main(["sweep", str(path), "--dry-run", "--data.root", str(nowhere)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: data.root: cifar10 not found") and str(nowhere) in line, line
    monkeypatch.setattr(launcher, "ray_session", _no_ray)
    with pytest.raises(RefusedError, match=r"data\.root: cifar10 not found"):
        launcher.run_sweep(load_sweep(path, overrides={"data.root": str(nowhere)}), out=tmp_path / "out", verbose=0)
    assert not (tmp_path / "out").exists()


def test_check_data_reads_the_files_cheaply_and_names_a_broken_one(tmp_path: Path) -> None:
    from adaptive_weights.config import DataConfig
    from adaptive_weights.data import check_data

    check_data(DataConfig(name="synthetic"))
    check_data(DataConfig(name="cifar10", root=str(tmp_path / "none"), download=True))  # a trial fetches it
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for f in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        (folder / f).write_bytes(b"")
    with pytest.raises(RefusedError, match=r"data\.root: .*test_batch\.bin: size 0 bytes"):
        check_data(DataConfig(name="cifar10", root=str(tmp_path)))


def test_failed_trials_are_one_clear_error_and_a_non_zero_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``run_sweep`` raises SweepFailedError when a trial failed; the command prints the first
    failure's cause once with the count, and exits 1 as it does for any failed trial."""
    from adaptive_weights.errors import SweepFailedError
    from adaptive_weights.tuning import cli

    def failed(spec, **kwargs):
        raise SweepFailedError(["a-s0", "a-s1"], "ValueError: boom", total=2, experiment=str(tmp_path / "exp"))

    monkeypatch.setattr(cli, "run_sweep", failed)
    path = tmp_path / "s.yaml"
    path.write_text(_yaml({**TINY, "strategy.name": "static", "sweep.name": "f"}))
    assert cli.cli_main([str(path), "--out", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("ValueError: boom") == 1 and "2 of 2 trial(s) failed: a-s0, a-s1" in err
    assert "--resume" in err
