"""Plug-ins and failures under real Ray, on loopback only: strategies registered in the driver, in
``sweep.imports`` and by ``--plugin`` train in the trials' workers; a sweep whose trials fail raises
SweepFailedError with the first cause, without Ray's error block per trial. One in-process Ray for
the module (a private RAY_TMPDIR), started after the plug-ins' folder is on its workers' PYTHONPATH;
one-epoch trials on the tiny synthetic set."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

pytestmark = [pytest.mark.ray, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loopback Ray")]

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 32,
    "train.progress": False, "train.num_threads": 1, "sweep.paper_grid": False,
}
PLUGIN = '''\
from adaptive_weights.strategies import register_strategy
from adaptive_weights.strategies.builtin import StaticStrategy


@register_strategy("{name}")
class Plugin(StaticStrategy):
    """A plug-in strategy of the sweep tests."""
{body}'''
BOOM = '''
    def step_weights(self):
        raise RuntimeError("boom: this plug-in fails in every step")
'''


@pytest.fixture(scope="module")
def plugin_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plug-in modules' folder, on this process's path and its Ray workers' (PYTHONPATH set
    before Ray starts), and the sweep's own in-process Ray under a private RAY_TMPDIR."""
    from adaptive_weights.tuning.cluster import init_local_ray

    folder = tmp_path_factory.mktemp("plugins")
    for module, name, body in [("aw_ray_driver_plugin", "ray-driver-plugin", ""),
                               ("aw_ray_file_plugin", "ray-file-plugin", ""),
                               ("aw_ray_flag_plugin", "ray-flag-plugin", ""),
                               ("aw_ray_boom_plugin", "ray-boom-plugin", BOOM)]:
        (folder / f"{module}.py").write_text(PLUGIN.format(name=name, body=body))
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_TMPDIR")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), saved["PYTHONPATH"]) if p)
    os.environ["RAY_TMPDIR"] = tmp = tempfile.mkdtemp(prefix="awp", dir="/tmp")
    sys.path.insert(0, str(folder))
    import ray

    init_local_ray(verbose=0, num_cpus=2)
    try:
        yield folder
    finally:
        ray.shutdown()
        sys.path.remove(str(folder))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)


def test_plugins_from_the_driver_the_file_and_the_flag_train_in_every_trial(plugin_ray: Path,
                                                                             tmp_path: Path) -> None:
    """A strategy registered in code (``import my_strategy`` before the sweep) passed the driver's
    validation, then every trial failed in its worker with 'unknown strategy' and the sweep
    returned normally. The driver's plug-in module is carried to the workers, and so are
    ``sweep.imports`` and ``--plugin``: every trial finishes."""
    import aw_ray_driver_plugin  # noqa: F401  (registers ray-driver-plugin in this process only)

    from adaptive_weights.tuning.cli import cli_main

    path = tmp_path / "plugins.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in {
        **TINY, "strategy.name": ["ray-driver-plugin", "ray-file-plugin", "ray-flag-plugin"],
        "sweep.imports": ["aw_ray_file_plugin"], "sweep.name": "plugins"}.items()))
    assert cli_main([str(path), "--out", str(tmp_path), "--plugin", "aw_ray_flag_plugin", "-q",
                     "--no-tensorboard", "--max-failures", "0"]) == 0
    runs = sorted(p.name for p in (tmp_path / "plugins" / "runs").iterdir())
    assert runs == [f"synthetic-resnet1c4-sieve-{s}-s0" for s in ("ray-driver-plugin", "ray-file-plugin",
                                                                   "ray-flag-plugin")]
    for run in runs:
        assert json.loads((tmp_path / "plugins" / "runs" / run / "summary.json").read_text())["completed"]


def test_failed_trials_raise_with_the_first_cause_and_no_ray_error_blocks(plugin_ray: Path, tmp_path: Path,
                                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """Trials that fail in their workers: ``run_sweep`` raised nothing (a script's exit status was
    0) and Ray printed its error block for every trial. SweepFailedError names the failed trials and
    the first cause (read from the trial's error.txt), after the runs were exported."""
    from adaptive_weights.errors import SweepFailedError
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import parse_sweep

    spec = parse_sweep({**TINY, "strategy.name": "ray-boom-plugin", "train.seed": [0, 1], "sweep.name": "boom",
                        "sweep.imports": ["aw_ray_boom_plugin"]})
    with pytest.raises(SweepFailedError) as info:
        run_sweep(spec, out=tmp_path, max_failures=0, tensorboard=False, verbose=1)
    err = info.value
    assert sorted(err.failed) == sorted(t["name"] for t in spec.trials)
    assert err.cause == "RuntimeError: boom: this plug-in fails in every step"
    assert "2 of 2 trial(s) failed" in str(err) and str(err).count("boom: this plug-in") == 1
    printed = capfd.readouterr()
    assert "Trial task failed" not in printed.out + printed.err
    assert err.outcome.errored == sorted(err.failed)  # the outcome of what ran, as run_sweep returns it
