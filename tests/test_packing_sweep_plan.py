"""A packed Ray sweep (``sweep --pack N`` / ``sweep.pack``) decided before Ray starts, without Ray: the
option and its refusals, how a sweep folder's pack checkpoints are read and repacked on a resume, a
random search sampled up front, and a pack trial's reports when members diverge."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest

from adaptive_weights.errors import RefusedError
from adaptive_weights.tuning.sweepfile import load_sweep, parse_sweep

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.epochs": 2, "train.batch_size": 32, "train.progress": False,
    "sweep.paper_grid": False,
}
GRID = {**TINY, "train.seed": [0, 1], "strategy.name": ["static", "aann"]}
SEARCH = """\
data.name: synthetic
model.n: 1
model.c: 4
strategy.name: eg
strategy.gamma: {{loguniform: [0.01, 0.5]}}
train.seed: [0, 1]
sweep:
  search: {search}
  scheduler: {scheduler}
  paper_grid: false
"""


def _cli_pack(*args: str) -> int:
    from adaptive_weights.tuning.packed import cli_main

    return cli_main(list(args))


def _cli(*args: str) -> int:
    from adaptive_weights.tuning.cli import cli_main

    return cli_main(list(args))


def test_sweep_pack_is_one_option_in_the_file_and_on_the_command_line(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_sweep(GRID).pack == 1
    assert parse_sweep({**GRID, "sweep.pack": 2}).pack == 2
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps({**{k: v for k, v in GRID.items() if not k.startswith("sweep.")},
                                "sweep": {"paper_grid": False, "pack": 4}}))
    assert load_sweep(path).pack == 4  # the nested form
    assert load_sweep(path, overrides={"sweep.pack": 3}).pack == 3  # --sweep.pack 3, as any dotted key
    assert _cli(str(path), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "4 trials in 1 pack(s) of at most 4 runs, one Ray trial each" in out
    assert _cli_pack(str(path), "--dry-run") == 0  # the Ray-free pack command reads the same key
    assert "4 trials in 1 pack(s) of at most 4" in capsys.readouterr().out
    assert _cli(str(path), "--pack", "2", "--dry-run") == 0  # the flag overrides the file
    out = capsys.readouterr().out
    assert "in 2 pack(s)" in out and out.count("synthetic-resnet1c4-sieve-") == 4
    # a pack holds the runs that differ in seed or strategy only
    assert "static-s0, synthetic-resnet1c4-sieve-static-s1" in out


@pytest.mark.parametrize("value", [0, -1, True, "two", 1.5])
def test_a_bad_pack_size_is_refused_naming_the_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(RefusedError, match=r"sweep\.pack: expected an integer >= 1"):
        parse_sweep({**GRID, "sweep.pack": value})
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(GRID))
    if isinstance(value, int) and not isinstance(value, bool):
        with pytest.raises(RefusedError, match=rf"--pack: expected an integer >= 1 .*got {value}"):
            _cli(str(path), "--pack", str(value), "--dry-run")


@pytest.mark.parametrize("search, scheduler, flags, words", [
    ("optuna", "fifo", [], ["sweep.search: 'optuna'", "Optuna proposes one configuration at a time"]),
    ("hyperopt", "fifo", [], ["sweep.search: 'hyperopt'", "HyperOpt proposes"]),
    ("random", "asha", [], ["sweep.scheduler: 'asha'", "ASHA stops a trial early"]),
    ("random", "pbt", [], ["sweep.scheduler: 'pbt'", "PBT continues a trial from another"]),
    ("random", "fifo", ["--workers-per-trial", "2"], ["--workers-per-trial 2", "one process on one device"]),
])
def test_what_cannot_act_on_one_member_of_a_pack_is_refused_before_anything_is_written(
        tmp_path: Path, search: str, scheduler: str, flags: list[str], words: list[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SEARCH.format(search=search, scheduler=scheduler))
    out = tmp_path / "out"
    for dry in (["--dry-run"], []):
        with pytest.raises(RefusedError) as err:
            _cli(str(path), "--pack", "2", "--out", str(out), *flags, *dry)
        assert "sweep.pack (--pack) 2" in str(err.value) and "--pack 1" in str(err.value), err.value
        for word in words:
            assert word in str(err.value)
    assert not out.exists()
    if not flags and search in ("optuna", "hyperopt"):  # --pack 1 is the unpacked sweep: no refusal of its own
        pytest.importorskip(search)
        assert _cli(str(path), "--pack", "1", "--dry-run") == 0


def test_a_trial_no_pack_can_train_refuses_the_packed_sweep_naming_it(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps({**TINY, "gradient.name": ["sum", "upgrad"]}))
    with pytest.raises(RefusedError, match=r"sweep\.pack \(--pack\) 2: .*gradient\.name: 'upgrad' cannot run in a pack"):
        _cli(str(path), "--pack", "2", "--dry-run")
    assert capsys.readouterr().out == ""  # refused before the dry run printed anything


# ----------------------------------------------------------------------------- a packed sweep's folder
def _run_dir(path: Path, trial: dict, *, epochs: int, completed: bool) -> None:
    """A run directory as a Ray checkpoint holds it: summary.json and a training checkpoint (a zip)."""
    (path / "checkpoints").mkdir(parents=True)
    with zipfile.ZipFile(path / "checkpoints" / "last.pt", "w") as z:
        z.writestr("archive/data.pkl", b"state")
    (path / "summary.json").write_text(json.dumps({
        "name": trial["name"], "completed": completed, "epochs": epochs, "config": trial,
        "errors": {"val": [0.5, 0.4], "test": [0.5, 0.4]}}))


def _pack_checkpoint(ckpt: Path, trials: list[dict], *, epochs: int, completed: bool) -> None:
    for trial in trials:
        _run_dir(ckpt / trial["name"], trial, epochs=epochs, completed=completed)
    (ckpt / "pack.json").write_text(json.dumps({"members": [t["name"] for t in trials]}))


def _packed_sweep(tmp_path: Path):
    """A grid of 4 packed in 2: pack A finished, pack B killed after epoch 1 of 2."""
    from adaptive_weights.tuning.plan import spec_record
    from adaptive_weights.tuning.sweepdir import SweepDir, pack_trial_name

    spec = parse_sweep({**GRID, "sweep.pack": 2}, name="packed")
    exp = tmp_path / "packed"
    SweepDir(str(exp)).write_spec(spec_record(spec))
    a, b = spec.trials[:2], spec.trials[2:]
    for k in (1, 2):
        _pack_checkpoint(exp / pack_trial_name([t["name"] for t in a]) / f"checkpoint_00000{k}", a, epochs=k,
                         completed=k == 2)
    _pack_checkpoint(exp / pack_trial_name([t["name"] for t in b]) / "checkpoint_000001", b, epochs=1, completed=False)
    return spec, exp, a, b


def test_a_resume_reads_every_member_of_a_pack_checkpoint_as_a_run(tmp_path: Path) -> None:
    from adaptive_weights.tuning.packsweep import plan_packs
    from adaptive_weights.tuning.plan import plan_sweep
    from adaptive_weights.tuning.sweepdir import SweepDir

    spec, exp, a, b = _packed_sweep(tmp_path)
    found = SweepDir(str(exp)).checkpoints()
    assert sorted(found) == sorted(t["name"] for t in spec.trials)
    assert all(found[t["name"]].completed and found[t["name"]].epochs == 2 for t in a)
    assert Path(found[b[0]["name"]].path).relative_to(exp).parts[1:] == ("checkpoint_000001", b[0]["name"])
    plan = plan_sweep(SweepDir(str(exp)), spec, resume=True)
    assert [t["name"] for t in plan.trials] == [t["name"] for t in b]
    assert plan.resume_epochs == {t["name"]: 1 for t in b}
    # another --pack on the resume: the unfinished runs are packed again, all from epoch 1
    packs = plan_packs(spec, plan)
    assert [[t["name"] for t in p] for p in packs.values()] == [[t["name"] for t in b]]
    # the export copies each member's folder to runs/<run name>, as an unpacked trial's checkpoint
    dest = SweepDir(str(exp)).download(found[a[0]["name"]], tmp_path / "runs")
    assert dest.name == a[0]["name"] and (dest / "summary.json").is_file()


def test_a_resume_packs_together_only_runs_that_continue_from_the_same_epoch(tmp_path: Path) -> None:
    from adaptive_weights.tuning.packsweep import plan_packs
    from adaptive_weights.tuning.plan import SweepPlan

    spec = parse_sweep({**GRID, "sweep.pack": 4}, name="mixed")
    names = [t["name"] for t in spec.trials]
    plan = SweepPlan(trials=list(spec.trials), resume_epochs={names[0]: 1, names[2]: 1})
    packs = plan_packs(spec, plan)
    assert sorted(sorted(t["name"] for t in p) for p in packs.values()) == [
        sorted([names[0], names[2]]), sorted([names[1], names[3]])]


@pytest.mark.parametrize("planted", ["../../elsewhere", "another-run"])
def test_a_planted_pack_member_is_refused_not_trusted(tmp_path: Path, planted: str) -> None:
    from adaptive_weights.tuning.sweepdir import SweepDir

    _, exp, _, b = _packed_sweep(tmp_path)
    ckpt = next(exp.glob("pack-*/checkpoint_000001"))
    if planted == "another-run":  # a member folder whose summary names another run
        summary = json.loads((ckpt / json.loads((ckpt / "pack.json").read_text())["members"][0] / "summary.json")
                             .read_text())
        member = summary["name"]
        summary["name"] = summary["config"]["name"] = planted
        (ckpt / member / "summary.json").write_text(json.dumps(summary))
    else:
        (ckpt / "pack.json").write_text(json.dumps({"members": [planted]}))
    with pytest.raises(RefusedError, match="this sweep did not write it"):
        SweepDir(str(exp)).checkpoints()


def test_a_packed_random_search_is_sampled_up_front_over_the_grid_of_its_lists(tmp_path: Path) -> None:
    from adaptive_weights.tuning.packsweep import plan_packs, sample_trials
    from adaptive_weights.tuning.plan import SweepPlan

    path = tmp_path / "r.yaml"
    path.write_text(SEARCH.format(search="random", scheduler="fifo").replace("paper_grid", "num_samples: 3\n  paper_grid"))
    spec = load_sweep(path)
    trials = sample_trials(spec, 3, rng=random.Random(0))
    assert len(trials) == 6 and len({t["name"] for t in trials}) == 6
    gammas = [t["strategy.gamma"] for t in trials]
    assert all(0.01 <= g <= 0.5 for g in gammas) and len(set(gammas)) == 3
    assert [t["train.seed"] for t in trials] == [0, 1] * 3 and gammas[0] == gammas[1]  # each sample over the seeds
    assert trials[0]["name"].startswith("synthetic-resnet1c4-sieve-eg-gamma") and trials[0]["name"].endswith("-00000")
    # numbered past the runs a resumed sweep already has
    again = sample_trials(spec, 1, taken={t["name"] for t in trials}, rng=random.Random(0))
    assert not {t["name"] for t in again} & {t["name"] for t in trials}
    packs = plan_packs(spec.__class__(**{**spec.__dict__, "pack": 4}), SweepPlan(trials=[], samples=3))
    assert sorted(len(p) for p in packs.values()) == [3, 3]  # 6 runs, one graph: two packs of 3


# ----------------------------------------------------------------------------- a pack trial's reports
def test_a_pack_trial_reports_every_epoch_and_how_it_ended(tiny_flat: dict, tmp_path: Path) -> None:
    """A member that diverges stops alone (its summary says so, its report counts it as the worst
    error); a pack whose every member diverged before an epoch ended still reports the end."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.tuning.pack_trial import train_pack_in_scratch

    good = RunConfig.from_flat({**tiny_flat, "name": "good", "train.progress": False}).resolve()
    # weights of 1e18^j: this member's state turns non-finite in its first epoch (as in test_packing)
    bad = RunConfig.from_flat({**good.to_flat(), "name": "bad", "scheme.name": "exp:1e18", "strategy.name": "static",
                               "scheme.normalize": "none"}).resolve()
    for cfgs, last_epoch in (([good, bad], 2.0), ([bad], 0.0)):
        reports: list[tuple[dict, dict]] = []

        def report(metrics: dict, pack_dir: Path, reports: list = reports) -> None:
            members = json.loads((pack_dir / "pack.json").read_text())["members"]
            reports.append((metrics, {m: json.loads((pack_dir / m / "summary.json").read_text()) for m in members}))

        train_pack_in_scratch(cfgs, f"pack-{tmp_path.name}", checkpoint=None, member_checkpoints={}, report=report,
                              tensorboard=False)
        metrics, summaries = reports[-1]
        assert summaries["bad"]["status"] == "diverged"
        assert metrics["pack/diverged"] == 1.0 and metrics["bad/val/err/mean"] == 1.0
        assert metrics["epoch"] == last_epoch and metrics["pack/size"] == len(cfgs)
        if len(cfgs) == 2:  # one report per epoch; the good member went on alone
            assert summaries["good"]["status"] == "completed" and len(reports) == 2
            val = summaries["good"]["errors"]["val"]
            assert metrics["good/val/err/final"] == val[-1]
            assert metrics["val/err/mean"] == pytest.approx((sum(val) / len(val) + 1.0) / 2)
        else:  # no epoch ended: the one report is the end's
            assert len(reports) == 1 and metrics["val/err/final"] == 1.0
