"""Packed sweeps under real Ray, on loopback only: a packed grid writes the run directories, results
and report of the unpacked sweep; a packed random search samples up front; a packed sweep killed
mid-way resumes to the undisturbed results. One in-process Ray for the module; the killed sweep runs
in a child process with its own private RAY_TMPDIR."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import test_tuning_ray as tuning_ray
from test_tuning_ray import _cli, _descendants, _finish, _iterations, _kill, _results, _wait_for
from test_tuning_search import local_ray  # noqa: F401  (the module's in-process Ray)

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc"),
]

# the unpacked sweep tests' file (3 epochs, seeds x {static, eg}), on half their data
SWEEP_YAML = tuning_ray.SWEEP_YAML.replace("data.synthetic_size: 1024", "data.synthetic_size: 512")
EPOCHS = tuning_ray.EPOCHS
NAMES = [f"synthetic-resnet1c4-sieve-{s}-s{seed}" for s in ("eg", "static") for seed in (0, 1)]


@pytest.fixture(scope="module")
def packed(local_ray: None, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """An undisturbed packed sweep (--pack 2: two Ray trials of two runs) and its report."""
    from adaptive_weights.tuning.cli import cli_main
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    out = tmp_path_factory.mktemp("packed")
    sweep_file = out / "tiny.yaml"
    sweep_file.write_text(SWEEP_YAML)
    outcome = run_sweep(load_sweep(sweep_file), out=out, pack=2, tensorboard=False, verbose=0)
    assert outcome.errored == [] and outcome.unfinished == []
    assert cli_main([str(sweep_file), "--out", str(out), "--pack", "2", "--report", "-q"]) == 0  # no Ray: finished
    return outcome, out / "tiny", sweep_file


def test_a_packed_grid_writes_the_unpacked_sweeps_runs_and_report(local_ray: None, packed, tmp_path: Path) -> None:  # noqa: F811
    from adaptive_weights.tuning.cli import cli_main
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    outcome, exp, sweep_file = packed
    trials = sorted(p.name for p in Path(outcome.experiment).iterdir() if (p / "result.json").exists())
    assert len(trials) == 2 and all(t.startswith("pack-") for t in trials)  # one Ray trial per pack
    rows = [json.loads(line) for line in (Path(outcome.experiment) / trials[0] / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["pack/size"] == 2
    members = sorted(k.removesuffix("/val/err/final") for k in rows[-1] if k.endswith("/val/err/final") and k != "val/err/final")
    assert rows[-1]["val/err/final"] == pytest.approx(sum(rows[-1][f"{m}/val/err/final"] for m in members) / 2)
    assert sorted(outcome.dataframe["config/name"]) == trials

    unpacked = run_sweep(load_sweep(sweep_file), out=tmp_path, tensorboard=False, verbose=0)
    assert cli_main([str(sweep_file), "--out", str(tmp_path), "--report", "-q"]) == 0
    assert sorted(p.name for p in outcome.run_dirs) == sorted(p.name for p in unpacked.run_dirs) == NAMES
    a, b = _results(exp / "runs"), _results(tmp_path / "tiny" / "runs")
    for name in NAMES:  # the same runs, up to float32 rounding (grouped and plain convolutions round apart)
        assert a[name]["completed"] and b[name]["completed"], name
        for ra, rb in zip(a[name]["rows"], b[name]["rows"], strict=True):
            assert set(ra) == set(rb) and ra["epoch"] == rb["epoch"]
            assert {k: (ra[k], rb[k]) for k in ra if ra[k] != pytest.approx(rb[k], rel=1e-2, abs=0.02)} == {}, name
    # the same selection: every candidate setting, the chosen ones, their scores
    sel_a, sel_b = (_selection(d / "report" / "selection.csv") for d in (exp, tmp_path / "tiny"))
    assert [{k: v for k, v in r.items() if not k.startswith("val_err")} for r in sel_a] == \
        [{k: v for k, v in r.items() if not k.startswith("val_err")} for r in sel_b]
    for ra, rb in zip(sel_a, sel_b, strict=True):
        assert float(ra["val_err_mean"]) == pytest.approx(float(rb["val_err_mean"]), abs=0.02)
    runs_table = [line.split(" | ")[0] for line in (exp / "report" / "report.md").read_text().splitlines()
                  if line.startswith("| synthetic-")]
    assert sorted(runs_table) == [f"| {n}" for n in NAMES]


def _selection(path: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(path.read_text().splitlines()))


def test_a_packed_random_search_samples_up_front_then_packs(local_ray: None, tmp_path: Path) -> None:  # noqa: F811
    from adaptive_weights._io import read_json
    from adaptive_weights.tuning.cli import cli_main
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    path = tmp_path / "r.yaml"
    path.write_text(SWEEP_YAML.replace("strategy.name: [static, eg]", "strategy.name: eg\n"
                                       "strategy.gamma: {loguniform: [0.01, 0.5]}")
                    .replace("train.epochs: 3", "train.epochs: 1").replace("sweep.name: tiny", "sweep.name: rnd\n"
                    "sweep.search: random\nsweep.num_samples: 2\nsweep.pack: 4"))
    outcome = run_sweep(load_sweep(path), out=tmp_path, verbose=0, tensorboard=False)
    assert outcome.errored == [] and outcome.unfinished == []
    assert len(list(Path(outcome.experiment).glob("pack-*/result.json"))) == 1  # 4 runs, one graph: one pack
    configs = [read_json(p / "summary.json")["config"] for p in outcome.run_dirs]
    assert len(configs) == 4 and len({c["strategy.gamma"] for c in configs}) == 2
    assert sorted(c["train.seed"] for c in configs) == [0, 0, 1, 1]
    assert cli_main([str(path), "--out", str(tmp_path), "--report", "-q"]) == 0
    assert "| strategy.name=eg |" in (tmp_path / "rnd" / "report" / "report.md").read_text()


def test_a_killed_packed_sweep_resumes_to_the_undisturbed_results(packed, tmp_path: Path) -> None:
    sweep_file = packed[2]
    out = tmp_path / "sweeps"
    exp = out / "tiny"
    ray_tmp = tempfile.mkdtemp(prefix="awk", dir="/tmp")  # the child's own Ray (socket paths stay short)
    try:
        _kill_and_resume(sweep_file, out, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert _results(exp / "runs") == _results(packed[1] / "runs")  # bit-identical on the CPU
    assert (exp / "report" / "selection.csv").read_text() == (packed[1] / "report" / "selection.csv").read_text()


def _kill_and_resume(sweep_file: Path, out: Path, ray_tmp: str) -> None:
    """Kill a packed sweep when one pack finished and the other is mid-way, then resume it (with
    another --pack: what is left is packed again) and write its report."""
    exp = out / "tiny"
    proc = _cli(str(sweep_file), "--out", str(out), "--pack", "2", "--max-concurrent", "1",
                env_extra={"RAY_TMPDIR": ray_tmp})

    def finished() -> list[Path]:
        return [d for d in exp.glob("pack-*") if _iterations(d) == EPOCHS]

    def midway() -> bool:
        return len(finished()) == 1 and any(0 < _iterations(d) < EPOCHS for d in exp.glob("pack-*"))

    try:
        _wait_for(midway, 150, "one finished pack and one mid-way")
    finally:
        _kill(_descendants(proc.pid))  # the driver, its Ray and the trial workers
        proc.communicate()
    done_before = {d.name: (d / "result.json").read_text() for d in finished()}

    _finish(_cli(str(sweep_file), "--out", str(out), "--resume", "--pack", "3", "--report",
                 env_extra={"RAY_TMPDIR": ray_tmp}), 150)
    for name, text in done_before.items():  # the finished pack was not run again
        assert (exp / name / "result.json").read_text() == text, name
    resumed = list(exp.glob("pack-*.2"))  # the unfinished pack continued from its checkpoint, under NAME.2
    assert len(resumed) == 1 and json.loads((resumed[0] / "result.json").read_text().splitlines()[0])[
        "resumed_from_epoch"] >= 1
