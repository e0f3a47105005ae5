"""Sweep reliability (issue 19): a sweep folder's contents never steer deletions outside it, and
refusals come before Ray starts. No Ray is started here."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from adaptive_weights.errors import RefusedError
from adaptive_weights.tuning.launcher import run_sweep
from adaptive_weights.tuning.plan import spec_record
from adaptive_weights.tuning.sweepdir import SweepDir
from adaptive_weights.tuning.sweepfile import parse_sweep

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.epochs": 2, "train.batch_size": 32, "train.progress": False,
}


def _checkpoint(ckpt: Path, name: str, config: dict, *, completed: bool = True) -> Path:
    """A Ray checkpoint of a run directory as a trial leaves it: summary.json and a last.pt zip."""
    (ckpt / "checkpoints").mkdir(parents=True)
    with zipfile.ZipFile(ckpt / "checkpoints" / "last.pt", "w") as z:
        z.writestr("archive/data.pkl", b"state")
    (ckpt / "summary.json").write_text(json.dumps({
        "name": name, "completed": completed, "epochs": 2, "config": {**config, "name": name},
        "errors": {"val": [0.5, 0.4], "test": [0.5, 0.4]}}))
    return ckpt


def _random_search(tmp_path: Path):
    """A finished one-sample random search and its one trial's config."""
    from adaptive_weights.config import RunConfig

    spec = parse_sweep({**TINY, "strategy.name": "eg", "strategy.gamma": {"loguniform": [0.01, 0.5]},
                        "sweep.search": "random", "sweep.num_samples": 1, "sweep.paper_grid": False}, name="rnd")
    exp = tmp_path / "sweeps" / "rnd"
    SweepDir(str(exp)).write_spec(spec_record(spec))
    fixed = {k: v for k, v in spec.space.items() if k not in spec.searched}
    trial = RunConfig.from_flat({**fixed, "strategy.gamma": 0.05, "name": "eg-s0-00001"}).resolve().to_flat()
    _checkpoint(exp / trial["name"] / "checkpoint_000001", trial["name"], trial)
    return spec, exp, trial


@pytest.mark.parametrize("planted", ["../../../victim", "/victim", ".."])
def test_a_searcher_resume_never_deletes_what_a_planted_summary_names(tmp_path: Path, planted: str) -> None:
    """A summary.json planted in a searcher sweep's folder named ``../../../victim`` (from runs/):
    the resume's export removed that directory and copied the checkpoint there. The run name must be the trial
    directory's (the sweep's own record) and one path component; such a sweep is refused."""
    spec, exp, trial = _random_search(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("keep me")
    target = str(victim) if planted == "/victim" else planted
    _checkpoint(exp / "planted" / "checkpoint_000001", target, trial)
    (exp / "runs").mkdir()  # as the sweep's first export left it
    with pytest.raises(RefusedError, match="planted"):
        run_sweep(spec, out=tmp_path / "sweeps", resume=True, verbose=0)
    assert sorted(p.name for p in victim.iterdir()) == ["data.txt"]
    assert (exp / "sweep.json").is_file()


def test_a_trial_directorys_own_name_and_a_continued_one_are_accepted(tmp_path: Path) -> None:
    """The trial directories the sweep makes: the run name, and ``NAME.2`` for a run continued by a
    later attempt; both export to runs/NAME."""
    spec, exp, trial = _random_search(tmp_path)
    _checkpoint(exp / f"{trial['name']}.2" / "checkpoint_000002", trial["name"], trial)
    outcome = run_sweep(spec, out=tmp_path / "sweeps", resume=True, verbose=0)
    assert [p.name for p in outcome.run_dirs] == [trial["name"]]


def test_the_export_never_follows_a_planted_runs_link(tmp_path: Path) -> None:
    """``runs`` replaced by a link to another directory: the export would remove that directory's
    ``<run name>``; it is refused instead."""
    spec, exp, trial = _random_search(tmp_path)
    victim = tmp_path / "victim"
    (victim / trial["name"]).mkdir(parents=True)
    (victim / trial["name"] / "data.txt").write_text("keep me")
    (exp / "runs").symlink_to(victim, target_is_directory=True)
    with pytest.raises(RefusedError, match="symbolic link"):
        run_sweep(spec, out=tmp_path / "sweeps", resume=True, verbose=0)
    assert (victim / trial["name"] / "data.txt").read_text() == "keep me"


@pytest.mark.parametrize("mode", ["tokn", " token", "token ", "1", "true", "off"])
def test_a_mistyped_ray_auth_mode_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     mode: str) -> None:
    """Ray enforces authentication only for RAY_AUTH_MODE=token and reads every other value as
    off: a typo turned it off without a word. Only token and disabled are taken, for --address and
    for the in-process Ray alike, before Ray starts."""
    import adaptive_weights.tuning.cluster as cluster

    with pytest.raises(RefusedError, match=f"RAY_AUTH_MODE={mode!r}.*'token' or 'disabled'"):
        cluster.ensure_cluster_auth({"HOME": str(tmp_path), "RAY_AUTH_MODE": mode, "RAY_AUTH_TOKEN": "x" * 32})

    def no_ray(**kwargs: object) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(cluster, "init_local_ray", no_ray)
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    with pytest.raises(RefusedError, match=f"RAY_AUTH_MODE={mode!r}"):
        with cluster.ray_session(None, verbose=0):
            pass


def test_the_two_ray_auth_modes_are_taken(tmp_path: Path) -> None:
    from adaptive_weights.tuning.cluster import ensure_cluster_auth

    token = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "x" * 32}
    assert ensure_cluster_auth({**token, "RAY_AUTH_MODE": "token"}) == "token"
    assert ensure_cluster_auth({**token, "RAY_AUTH_MODE": "TOKEN"}) == "token"  # Ray reads it in any case
    assert ensure_cluster_auth({**token, "RAY_AUTH_MODE": "disabled"}) == "disabled"
    assert ensure_cluster_auth({**token, "RAY_AUTH_MODE": ""}) == "token"  # empty: unset


def _finished_grid(tmp_path: Path):
    """A finished one-trial grid sweep (resuming it only exports its run: Ray is not needed)."""
    spec = parse_sweep({**TINY, "strategy.name": "static", "sweep.paper_grid": False}, name="grid")
    exp = tmp_path / "sweeps" / "grid"
    SweepDir(str(exp)).write_spec(spec_record(spec))
    (trial,) = spec.trials
    _checkpoint(exp / trial["name"] / "checkpoint_000001", trial["name"], trial)
    return spec, exp


def test_a_second_driver_on_a_live_sweep_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """``sweep --resume`` while the first driver ran planned every unfinished trial again on a second
    Ray. The driver holds the sweep directory's lock for its whole life; a second one is refused,
    naming the holder's pid, before it reads the sweep or starts Ray."""
    import os

    from adaptive_weights._lock import RunDirLock

    spec, exp = _finished_grid(tmp_path)
    with RunDirLock(exp):  # the first driver, mid-sweep
        with pytest.raises(RefusedError, match=rf"{exp} is in use: another sweep driver \(pid {os.getpid()}\)"):
            run_sweep(spec, out=tmp_path / "sweeps", resume=True, verbose=0)
        assert not (exp / "runs").exists()
    outcome = run_sweep(spec, out=tmp_path / "sweeps", resume=True, verbose=0)  # the first one is gone
    assert [p.name for p in outcome.run_dirs] == [spec.trials[0]["name"]]


def test_the_cli_holds_the_sweep_lock_for_its_whole_life(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The command's report after the sweep is written under the same lock (run_sweep inside it
    does not trip over its own driver's lock), and a refused fresh sweep leaves no directory that
    only the lock made."""
    import yaml

    from adaptive_weights._lock import RunDirLock
    from adaptive_weights.cli import main

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**TINY, "strategy.name": "static", "sweep": {"paper_grid": False}}))
    spec, exp = _finished_grid(tmp_path)
    seen = []

    def report(run_dirs, out_dir, **kwargs):
        with pytest.raises(RefusedError, match=f"{exp} is in use"):
            RunDirLock(exp).acquire()
        seen.append(len(run_dirs))
        return Path(out_dir) / "report.md"

    monkeypatch.setattr("tuning.cli.write_sweep_report", report)
    assert main(["sweep", str(path), "--out", str(tmp_path / "sweeps"), "--resume", "--report", "-q"]) == 0
    assert seen == [1]
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(tmp_path / "other"), "--resume", "-q"]) == 2
    assert "no sweep to resume" in capsys.readouterr().err
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").rglob("*"))


@pytest.mark.parametrize("search", ["optuna", "hyperopt"])
def test_dry_run_refuses_pbt_with_a_searcher_as_the_run_does(tmp_path: Path, search: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--dry-run`` listed a PBT sweep with Optuna or HyperOpt that the real run refuses."""
    import yaml

    from adaptive_weights.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "strategy.name": "eg", "strategy.gamma": {"uniform": [0.1, 0.3]},
                                    "sweep": {"search": search, "paper_grid": False, "scheduler": "pbt"}}))
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    assert f"sweep.scheduler: pbt with sweep.search: {search!r}" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--scheduler", "fifo", "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out").exists()


def test_a_sweep_file_that_writes_a_grid_axis_twice_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from adaptive_weights.cli import main

    path = tmp_path / "s.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in TINY.items())
                    + "strategy.name: [static, aann]\ntrain.seed: [0, 1]\nstrategy.name: eg\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'strategy.name' is written twice (lines 9 and 11)" in err, err


def test_a_huge_grid_is_refused_at_once_naming_its_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``sweep --dry-run`` of a 100,000-trial grid printed nothing for minutes (every trial is
    resolved, and duplicates were searched pairwise). Its size is known before any trial is: above
    --max-trials (default 10,000) the sweep is refused at once, naming the size."""
    import yaml

    from adaptive_weights.cli import main

    with pytest.raises(RefusedError, match=r"sweep big: the grid has 3,000,000 trials, more than the 10,000 of "
                                           r"--max-trials"):
        parse_sweep({**TINY, "strategy.name": "eg", "strategy.gamma": [0.1, 0.2], "strategy.rho": [0.7, 0.9],
                     "train.seed": list(range(250_000))}, name="big")  # x eg's 3 ratios
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "strategy.name": ["static", "aann"], "train.seed": [0, 1],
                                    "sweep": {"paper_grid": False}}))
    assert main(["sweep", str(path), "--dry-run", "--max-trials", "3"]) == 2
    assert "the grid has 4 trials, more than the 3 of --max-trials" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--max-trials", "4"]) == 0
    assert "4 trials" in capsys.readouterr().out
    case = {"sweep": {"paper_grid": False, "cases": [{"train.seed": [0, 1]}, {"train.seed": [2, 3]}]}}
    path.write_text(yaml.safe_dump({**TINY, "strategy.name": "static", **case}))
    assert main(["sweep", str(path), "--dry-run", "--max-trials", "3"]) == 2  # the cases together
