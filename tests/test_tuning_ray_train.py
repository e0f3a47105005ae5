"""A sweep whose trials are data-parallel runs: Ray Train's TorchTrainer (2 gloo workers) inside each
of 2 Tune trials, on the in-process loopback Ray; every port Ray and the workers' process group
listen on is on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from test_tuning_ray import ray_tmp  # noqa: F401  (the private RAY_TMPDIR fixture)
from test_tuning_search import _descendants, _listening

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

pytestmark = [pytest.mark.ray, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="as test_tuning_ray")]

SWEEP_YAML = """\
data.name: synthetic
data.synthetic_size: 128
data.synthetic_image_size: 8
data.synthetic_classes: 4
model.n: 1
model.c: 4
train.preset: smoke
train.epochs: 2
train.batch_size: 32
train.progress: false
strategy.name: eg
strategy.warmup_epochs: 0
train.seed: [0, 1]
sweep.paper_grid: false
sweep.name: ddp
"""


@contextlib.contextmanager
def _sockets_listened_on() -> Iterator[set[tuple[int, str]]]:
    """Every (pid, address) this process and its descendants (Ray, the trials, their workers)
    listen on while the body runs, read from /proc every 0.2 s."""
    seen: set[tuple[int, str]] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            seen.update(_listening(_descendants(os.getpid())))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def test_each_trial_trains_on_two_ray_train_workers(tmp_path, ray_tmp) -> None:  # noqa: F811
    from adaptive_weights.config import RunConfig
    from adaptive_weights.training import train
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    (tmp_path / "ddp.yaml").write_text(SWEEP_YAML)
    spec = load_sweep(tmp_path / "ddp.yaml")
    with _sockets_listened_on() as sockets:
        outcome = run_sweep(spec, out=tmp_path / "out", cpus_per_trial=0.5, workers_per_trial=2, tensorboard=False,
                            verbose=0)
    assert outcome.errored == [] and outcome.unfinished == []
    # every port Ray and the workers' process group (its store, gloo) listened on was on loopback
    assert sockets and [s for s in sockets if not s[1].startswith("127.0.0.1:")] == [], sockets
    assert sorted(p.name for p in outcome.run_dirs) == sorted(t["name"] for t in spec.trials)
    for run_dir in outcome.run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["completed"] and (summary["world_size"], summary["backend"]) == (2, "gloo")
        rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]
        # Tune saw rank 0's metrics of every epoch
        trial_dir = tmp_path / "out" / "ddp" / run_dir.name
        results = [json.loads(r) for r in (trial_dir / "result.json").read_text().splitlines()]
        assert [r["epoch"] for r in results] == [1, 2] and results[-1]["val/err/mean"] == rows[-1]["val/err/mean"]
    # the same run on one process: the same steps, errors close (BatchNorm sees each worker's slice)
    trial = next(t for t in spec.trials if t["train.seed"] == 0)
    one = train(RunConfig.from_flat({k: v for k, v in trial.items() if k != "train.num_threads"}),
                out_dir=tmp_path / "single", tensorboard=False)
    two = json.loads((outcome.runs_dir / trial["name"] / "summary.json").read_text())
    assert two["steps"] == one["steps"]
    assert all(abs(a - b) <= 0.08 for a, b in zip(two["errors"]["test"], one["errors"]["test"], strict=True))


@pytest.mark.parametrize("options, match", [
    ({"workers_per_trial": 0}, "--workers-per-trial must be >= 1"),
    ({"workers_per_trial": 2, "gpus_per_trial": 0.5}, "every worker needs a whole GPU"),
    ({"workers_per_trial": 2, "scheduler": "pbt"}, "sweep.scheduler: 'pbt' with --workers-per-trial 2"),
])
def test_bad_worker_options_are_refused_before_ray_starts(tmp_path, options, match) -> None:
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    (tmp_path / "ddp.yaml").write_text(SWEEP_YAML)
    with pytest.raises(RefusedError, match=match):
        run_sweep(load_sweep(tmp_path / "ddp.yaml"), out=tmp_path / "out", verbose=0, **options)
    assert not (tmp_path / "out").exists()
