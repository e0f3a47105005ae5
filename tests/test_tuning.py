"""Sweep files, grid expansion and the selection rule: no Ray, a few milliseconds each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from adaptive_weights.tuning.selection import rank_first_common, score_settings, select_settings
from adaptive_weights.tuning.sweepfile import load_sweep, parse_sweep

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.epochs": 2, "train.batch_size": 32, "train.progress": False,
}


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- grid expansion
def test_paper_grid_of_each_strategy_times_seeds() -> None:
    spec = parse_sweep({**TINY, "strategy.name": ["static", "aann", "eg"], "train.seed": [0, 1]})
    # static: no hyper-parameters; aann: ratio {0.5, 1, 2}; eg: gamma(4) x rho(3) x ratio(3) = 36
    assert len(spec.trials) == 2 * (1 + 3 + 36)
    eg = [t for t in spec.trials if t["strategy.name"] == "eg"]
    assert sorted({t["strategy.gamma"] for t in eg}) == [0.1, 0.2, 0.3, 0.4]
    assert {t["train.seed"] for t in spec.trials} == {0, 1}
    assert len({t["name"] for t in spec.trials}) == len(spec.trials)


def test_overrides_replace_axes_only_where_the_hyper_parameter_exists() -> None:
    spec = parse_sweep({**TINY, "strategy.name": ["static", "aann", "eg"], "strategy.gamma": [0.1, 0.2],
                        "strategy.rho": 0.8, "sweep.per_strategy.eg.ratio": 1.0,
                        "sweep.per_strategy.aann.ratio": [1.0, 2.0]})
    by = {}
    for t in spec.trials:
        by.setdefault(t["strategy.name"], []).append(t)
    assert len(by["static"]) == 1
    assert sorted(t["strategy.ratio"] for t in by["aann"]) == [1.0, 2.0]
    assert sorted((t["strategy.gamma"], t["strategy.rho"], t["strategy.ratio"]) for t in by["eg"]) == [
        (0.1, 0.8, 1.0), (0.2, 0.8, 1.0)]


def test_per_strategy_keeps_a_dashed_strategy_name(tmp_path: Path) -> None:
    """``sweep.per_strategy.<name>``: the name is kept as registered (``round-robin``), in a dotted
    key, the nested YAML form and a command-line flag; dashes elsewhere in a key still read as ``_``."""
    base = {**TINY, "strategy.name": ["round-robin", "eg"], "sweep.paper_grid": False}
    for keys in ({"sweep.per_strategy.round-robin.train_final": [0, 1]},
                 {"sweep.per-strategy.round-robin.train-final": [0, 1]},
                 {"sweep": {"per_strategy": {"round-robin": {"train_final": [0, 1]}}}}):
        spec = parse_sweep({**base, **keys})
        assert sorted(t["strategy.train_final"] for t in spec.trials if t["strategy.name"] == "round-robin") == [0, 1]
    path = _write(tmp_path, "strategy: {name: [round-robin]}\nsweep: {paper_grid: false, per_strategy: "
                            "{round-robin: {train_final: [0, 1]}}}\n" + "".join(f"{k}: {v}\n" for k, v in TINY.items()))
    assert len(load_sweep(path).trials) == 2
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.sweepfile import parse_overrides

    flags = parse_overrides(["--sweep.per_strategy.round-robin.train_final", "[0, 1]", "--train.batch-size", "16"])
    spec = load_sweep(path, overrides=flags)
    assert sorted(t["strategy.train_final"] for t in spec.trials) == [0, 1] and spec.trials[0]["train.batch_size"] == 16
    with pytest.raises(RefusedError, match=r"sweep.per_strategy.round_robin: unknown strategy 'round_robin'; registered: .*round-robin"):
        parse_sweep({**base, "sweep.per_strategy.round_robin.train_final": 0})


def test_paper_grid_off_uses_defaults_and_yaml_nested_form(tmp_path: Path) -> None:
    path = _write(tmp_path, "data: {name: synthetic, synthetic_size: 64, synthetic_image_size: 8}\n"
                            "model: {n: 1, c: 4}\nstrategy: {name: [eg, rwm], ratio: [1.0, 2.0]}\n"
                            "train: {seed: [0, 1, 2], batch_size: 32}\nsweep: {paper_grid: false, name: mine}\n")
    spec = load_sweep(path)
    assert spec.name == "mine"
    assert len(spec.trials) == 2 * 2 * 3
    assert {t["strategy.gamma"] for t in spec.trials} == {0.3}  # the default, not the grid
    assert spec.axes == {"train.seed": [0, 1, 2], "strategy.name": ["eg", "rwm"]}


def test_tuple_keys_are_values_and_lists_of_lists_are_axes() -> None:
    one = parse_sweep({**TINY, "train.eval_splits": ["val", "test"]})
    assert [t["train.eval_splits"] for t in one.trials] == [["val", "test"]]
    two = parse_sweep({**TINY, "train.lr_values": [[0.1, 0.01], [0.05, 0.005]], "train.lr_milestones": [1]})
    assert sorted(t["train.lr_values"][0] for t in two.trials) == [0.05, 0.1]


def test_cases_are_a_union_of_grids_over_the_shared_keys(tmp_path: Path) -> None:
    """Each case is its own grid over the file's keys; a trial two cases share runs once."""
    path = _write(tmp_path, "data: {name: synthetic, synthetic_size: 64, synthetic_image_size: 8}\n"
                            "model: {n: 1, c: 4}\ntrain: {seed: [0, 1], batch_size: 32}\nscheme.name: sieve\n"
                            "sweep:\n  paper_grid: false\n  cases:\n"
                            "    - {scheme.name: [const, linear], train.seed: [0, 1, 2]}\n"
                            "    - {strategy.name: [static, aann]}\n"
                            "    - {scheme: {name: const}, train.seed: 0}\n")
    spec = load_sweep(path)
    got = [(t["scheme.name"], t["strategy.name"], t["train.seed"]) for t in spec.trials]
    first = sorted((s, "static", i) for s in ("const", "linear") for i in (0, 1, 2))
    assert sorted(got[:6]) == first and len(got) == 10  # case order; (const, static, 0) runs once
    assert sorted(got[6:]) == sorted(("sieve", st, i) for st in ("static", "aann") for i in (0, 1))
    assert len({t["name"] for t in spec.trials}) == len(spec.trials)
    assert spec.axes["scheme.name"] == ["const", "linear"] and spec.axes["train.seed"] == [0, 1, 2]
    assert spec.axes["strategy.name"] == ["static", "aann"]


def test_a_trial_two_cases_share_runs_once_even_under_two_names() -> None:
    """A key that one case varies gets a name suffix there (batch_size32), the other case's same
    trial has none: it is still one trial, run once under the first case's name."""
    spec = parse_sweep({**TINY, "strategy.name": "static", "sweep.paper_grid": False,
                        "sweep.cases": [{"train.batch_size": [32, 16]}, {"train.batch_size": 32}]})
    assert [t["train.batch_size"] for t in spec.trials] == [32, 16]
    assert spec.trials[0]["name"].endswith("-batch_size32")


@pytest.mark.parametrize("cases, message", [
    ("[]", "non-empty list"),
    ("[{model.n: 2}, 3]", "non-empty list"),
    ("[{sweep.name: x}]", r"sweep.cases\[0\]: 'sweep.name' is a sweep option"),
    ("[{model.nn: 2}]", "model.nn"),
    ("[{train.momentum: 0.9}, {train.momentum: 0.5}]", "two different trials would both be the run"),
])
def test_bad_cases_are_refused_naming_the_case(tmp_path: Path, cases: str, message: str) -> None:
    path = _write(tmp_path, "data.name: synthetic\nsweep:\n  cases: " + cases + "\n")
    with pytest.raises(ValueError, match=message):
        load_sweep(path)
    with pytest.raises(ValueError, match="sweep.cases: a union of grids needs sweep.search: grid"):
        parse_sweep({**TINY, "strategy.name": "eg", "strategy.gamma": {"uniform": [0.1, 0.3]},
                     "sweep.search": "random", "sweep.cases": [{"train.seed": 0}]})


def test_a_missing_ray_is_refused_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Ray Tune is the ``tune`` extra: without it a sweep stops before anything starts, naming the
    extra; validating a sweep file (``--dry-run``) and the library's other commands need no Ray."""
    from adaptive_weights.cli import main
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning import run_sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it fails
    path = _write(tmp_path, "".join(f"{k}: {v}\n" for k, v in {**TINY, "strategy.name": "eg"}.items()))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--dry-run", "--out", str(out)]) == 0
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.err == ("error: running a sweep needs Ray Tune, which is not installed: "
                           "pip install 'adaptive-weights[tune]'\n")
    assert "in-process Ray" not in printed.out and not out.exists()
    with pytest.raises(RefusedError, match=r"needs Ray Tune.*adaptive-weights\[tune\]"):
        run_sweep(load_sweep(path), out=out)


def test_dotted_flags_replace_the_file_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``adaptive-weights sweep FILE --data.root DIR --train.seed '[0, 1, 2]'``: each value read as YAML
    replaces the file's (a list is a grid axis); anything else is refused by name before Ray starts."""
    from adaptive_weights.tuning.cli import cli_main
    from adaptive_weights.tuning.sweepfile import parse_overrides

    assert parse_overrides(["--data.root", "/data", "--train.seed=[0, 1, 2]", "--model.n", "2"]) == {
        "data.root": "/data", "train.seed": [0, 1, 2], "model.n": 2}
    path = _write(tmp_path, "data: {name: synthetic, synthetic_size: 64}\nmodel.n: 1\ntrain.seed: [0, 1]\n"
                            "train.batch_size: 16\nsweep.name: s\n")
    spec = load_sweep(path, overrides={"train.seed": [3, 4, 5], "data.synthetic_size": 32, "train.batch_size": 16,
                                      "data.root": str(tmp_path)})
    assert [t["train.seed"] for t in spec.trials] == [3, 4, 5]
    assert {t["data.synthetic_size"] for t in spec.trials} == {32} and spec.trials[0]["data.root"] == str(tmp_path)
    assert cli_main([str(path), "--dry-run", "--model.n", "2", "--train.seed", "7"]) == 0
    assert "synthetic-resnet2c16-sieve-static-s7" in capsys.readouterr().out
    for argv, message in ((["--colour", "red"], "unexpected argument '--colour'"),
                          (["--model.n"], "model.n: expected int, got True"),  # a bare flag is true
                          (["--model.n", "0"], "model.n"),
                          (["--train.seed", "[0, 1"], "--train.seed: '\\[0, 1' is not a YAML value")):
        with pytest.raises(ValueError, match=message):
            cli_main([str(path), "--dry-run", *argv])


# ----------------------------------------------------------------------------- rejection, naming the key
@pytest.mark.parametrize("text, key", [
    ("model.nn: 3\n", "model.nn"),
    ("optimiser.lr: 0.1\n", "optimiser.lr"),
    ("strategy.name: [eg]\nstrategy.gama: [0.1]\n", "strategy.gama"),
    ("train.seed: []\n", "train.seed"),
    ("strategy.name: [eg]\nstrategy.gamma: []\n", "strategy.gamma"),
    ("model.n: [1, two]\n", "model.n"),
    ("train.batch_size: 3.5\n", "train.batch_size"),
    ("strategy.name: [eg]\nstrategy.gamma: [0.1, fast]\n", "gamma"),
    ("strategy.name: [eg]\nstrategy.gamma: [0.1, 7.0]\n", "gamma"),
    ("strategy.name: [eg, nope]\n", "nope"),
    ("sweep.per_strategy.eg.gamma: [0.1]\n", "sweep.per_strategy.eg"),
    ("strategy.name: [eg]\nsweep.per_strategy.eg.momentum: [0.9]\n", "sweep.per_strategy.eg.momentum"),
    ("sweep.colour: red\n", "sweep.colour"),
    ("data.name: mnist\n", "data.name"),
    ("train.eval_splits: [test]\n", "train.eval_splits"),
])
def test_bad_sweep_files_are_rejected_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_sweep(_write(tmp_path, text))


def test_cli_rejects_before_ray_starts(tmp_path: Path) -> None:
    """The CLI fails with status 2 and the key's name, and never imports Ray."""
    path = _write(tmp_path, "train.seed: []\n")
    code = ("import sys; from adaptive_weights.cli import main; rc = main(['sweep', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "train.seed: empty grid" in proc.stderr


def test_nothing_imports_ray_at_import_time() -> None:
    code = ("import sys, adaptive_weights, adaptive_weights.training, adaptive_weights.cli, adaptive_weights.tuning, "
            "adaptive_weights.tuning.launcher, adaptive_weights.tuning.cli, adaptive_weights.tuning.cluster, "
            "adaptive_weights.tuning.plan, adaptive_weights.tuning.trainable, adaptive_weights.tuning.demo, "
            "adaptive_weights.tuning.selection; "
            "assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- the selection rule
def test_rank_first_common_hand_computed() -> None:
    # by mean: A(.10) B(.11) C(.12) D(.13); by final: C(.20) D(.21) B(.22) A(.30)
    scores = {"A": (0.10, 0.30), "B": (0.11, 0.22), "C": (0.12, 0.20), "D": (0.13, 0.21)}
    # k=1: {A} & {C} empty; k=2: {A,B} & {C,D} empty; k=3: {A,B,C} & {C,D,B} = {B, C}:
    # rank sums B: 1+2 = 3, C: 2+0 = 2 -> C
    assert rank_first_common(scores) == ("C", 3)
    assert rank_first_common({"x": (0.5, 0.5)}) == ("x", 1)
    # the best on both at once is chosen at k = 1
    assert rank_first_common({"p": (0.1, 0.1), "q": (0.2, 0.05), "r": (0.05, 0.3)}) == ("p", 2)
    with pytest.raises(ValueError):
        rank_first_common({})


def _run(name: str, strategy: str, seed: int, val: list[float], **params: float) -> SimpleNamespace:
    cfg = {"name": name, "strategy.name": strategy, "train.seed": seed, "data.name": "digits",
           **{f"strategy.{k}": v for k, v in params.items()}}
    return SimpleNamespace(path=Path(name), config=cfg, errors={"val": val, "test": val})


def test_select_settings_averages_seeds_and_groups_by_strategy() -> None:
    runs = [
        # eg gamma 0.1: mean over exits (.3+.1)/2=.2 and (.5+.1)/2=.3 -> .25; final (.1+.1)/2 = .1
        _run("a0", "eg", 0, [0.3, 0.1], gamma=0.1), _run("a1", "eg", 1, [0.5, 0.1], gamma=0.1),
        # eg gamma 0.2: mean (.2+.2)/2 -> .2 (better); final .2 (worse)
        _run("b0", "eg", 0, [0.2, 0.2], gamma=0.2), _run("b1", "eg", 1, [0.2, 0.2], gamma=0.2),
        # eg gamma 0.3: mean .3, final .15: second on both -> chosen at k = 2
        _run("c0", "eg", 0, [0.45, 0.15], gamma=0.3), _run("c1", "eg", 1, [0.45, 0.15], gamma=0.3),
        _run("s0", "static", 0, [0.4, 0.3]),
    ]
    scores = {s.params: s for s in score_settings(runs)}
    assert scores[(("strategy.gamma", 0.1),)].mean_error == pytest.approx(0.25)
    assert scores[(("strategy.gamma", 0.1),)].final_error == pytest.approx(0.1)
    choices = {c.chosen.group: c for c in select_settings(runs)}
    eg = choices[(("strategy.name", "eg"),)]
    # by mean: .2 (0.2), .25 (0.1), .3 (0.3); by final: .1 (0.1), .15 (0.3), .2 (0.2)
    # k=1: {0.2} & {0.1} empty; k=2: {0.2, 0.1} & {0.1, 0.3} = {0.1}
    assert eg.chosen.params == (("strategy.gamma", 0.1),) and eg.k == 2
    assert eg.chosen.runs == (Path("a0"), Path("a1"))
    assert choices[(("strategy.name", "static"),)].k == 1


def test_shipped_sweep_files_are_valid_and_the_demo_file_is_the_demo() -> None:
    from adaptive_weights.tuning.demo import demo_spec

    sweeps = Path(__file__).resolve().parent.parent / "tuning" / "sweeps"
    paper = load_sweep(sweeps / "cifar100-paper.yaml")
    assert len(paper.trials) == 2 * (3 + 36 + 36 + 36)
    demo = load_sweep(sweeps / "digits-demo.yaml")
    assert demo.trials == demo_spec().trials and demo.name == demo_spec().name
    assert len(demo.trials) == 18
    searcher = load_sweep(sweeps / "digits-eg-random.yaml")
    assert (searcher.search, searcher.num_samples, searcher.scheduler) == ("random", 8, "asha")


def test_the_cifar10_campaign_files_hold_what_its_report_reads() -> None:
    """The reference campaign (results/reports/reference/cifar10-cpu): 3 seeds of the central methods,
    2 of the others, and every run directory reproduce.sh names is a trial of its sweeps. No data is read."""
    import re

    root = Path(__file__).resolve().parent.parent
    campaign = load_sweep(root / "tuning" / "sweeps" / "cifar10-cpu.yaml", overrides={"data.root": "/nonexistent"})
    eann = load_sweep(root / "tuning" / "sweeps" / "cifar10-cpu-eann.yaml", overrides={"data.root": "/nonexistent"})
    seeds: dict[str, set[int]] = {}
    for t in campaign.trials:
        method = "+".join(str(t[k]) for k in ("scheme.name", "strategy.name", "objective.name", "gradient.name"))
        seeds.setdefault(method, set()).add(t["train.seed"])
    central = {"const+static+ce+sum", "sieve+static+ce+sum", "sieve+aann+ce+sum", "sieve+eg+ce+sum"}
    assert {m for m, s in seeds.items() if s == {0, 1, 2}} == central
    assert all(s == {0, 1} for m, s in seeds.items() if m not in central) and len(seeds) == 14
    assert [t["model.n"] for t in eann.trials] == [1, 2, 4]
    script = (root / "results" / "reports" / "reference" / "cifar10-cpu" / "reproduce.sh").read_text()
    named = {"RUNS": {t["name"] for t in campaign.trials}, "EANN": {t["name"] for t in eann.trials}}
    used = re.findall(r'\$(RUNS|EANN)/([A-Za-z0-9._-]+)', script)
    assert used and all(name in named[where] for where, name in used), used


def test_dry_run_of_a_searcher_describes_the_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adaptive_weights.tuning.cli import cli_main

    path = _write(tmp_path, "data.name: synthetic\nstrategy.name: eg\nstrategy.gamma: {loguniform: [0.01, 0.5]}\n"
                            "sweep: {search: random, num_samples: 3, paper_grid: false}\n")
    assert cli_main([str(path), "--dry-run"]) == 0
    assert "random search, 3 samples over strategy.gamma ~ loguniform(0.01, 0.5)" in capsys.readouterr().out


def test_a_registered_plugin_strategy_gets_its_grid_for_free() -> None:
    from adaptive_weights.strategies import STRATEGIES, HParam, register_strategy
    from adaptive_weights.strategies.builtin import AANNStrategy

    @register_strategy("tuning_test_plugin")
    class Plugin(AANNStrategy):
        """A plugin: aann with its own grid."""

        hparams = {"ratio": HParam(2.0, float, low=0.0, low_open=True, grid=(0.25, 4.0, 8.0))}

    try:
        spec = parse_sweep({**TINY, "strategy.name": ["tuning_test_plugin"], "train.seed": [0, 1]})
        assert sorted(t["strategy.ratio"] for t in spec.trials) == [0.25, 0.25, 4.0, 4.0, 8.0, 8.0]
    finally:
        STRATEGIES.unregister("tuning_test_plugin")


# ----------------------------------------------------------------------------- searchers and schedulers
def test_searcher_sweep_holds_the_space_and_validates_both_ends(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.name: synthetic\nmodel.n: 1\nstrategy.name: eg\n"
                            "strategy.gamma: {loguniform: [0.01, 0.5]}\ntrain.seed: [0, 1]\n"
                            "sweep: {search: random, num_samples: 3, scheduler: asha, paper_grid: false}\n")
    spec = load_sweep(path)
    assert (spec.search, spec.num_samples, spec.scheduler, spec.trials) == ("random", 3, "asha", [])
    assert spec.space["strategy.gamma"] == {"loguniform": [0.01, 0.5]}
    assert spec.space["train.seed"] == [0, 1] and spec.space["model.n"] == 1
    assert "strategy.gamma ~ loguniform(0.01, 0.5)" in spec.describe()
    assert "3 samples x the grid of its lists over" in spec.describe() and spec.sample_grid == {"train.seed": [0, 1]}
    from dataclasses import replace

    optuna = replace(spec, search="optuna")  # picks one seed per sample: no grid
    assert optuna.sample_grid == {} and "x the grid" not in optuna.describe()


def test_a_searchers_fixed_tuple_value_is_not_searched(tmp_path: Path) -> None:
    """``train.lr_milestones: [1, 2]`` is one value of a tuple-typed key: a random search once took
    it for a grid axis over 1 and 2 (two trials per sample, each with one milestone)."""
    from adaptive_weights.tuning.plan import _grid_size
    from adaptive_weights.tuning.space import search_param_space

    path = _write(tmp_path, "data.name: synthetic\nstrategy.name: eg\nstrategy.gamma: {loguniform: [0.01, 0.5]}\n"
                            "train.epochs: 3\ntrain.lr_values: [0.1, 0.01, 0.001]\ntrain.lr_milestones: [1, 2]\n"
                            "train.seed: [0, 1]\n"
                            "sweep: {search: random, num_samples: 2, paper_grid: false}\n")
    spec = load_sweep(path)
    assert spec.searched == ["train.seed", "strategy.gamma"]
    assert spec.space["train.lr_milestones"] == [1, 2] and "lr_milestones" not in spec.describe()
    assert _grid_size(spec) == 2  # the seeds only
    space = search_param_space(spec)
    assert space["train.lr_milestones"] == [1, 2] and space["train.seed"] == {"grid_search": [0, 1]}
    two_rates = path.read_text().replace("[0.1, 0.01, 0.001]", "[[0.1, 0.01, 0.001], [0.2, 0.02, 0.002]]")
    assert load_sweep(_write(tmp_path, two_rates)).searched == ["train.lr_values", "train.seed", "strategy.gamma"]


@pytest.mark.parametrize("text, key", [
    ("sweep.search: bayes\n", "sweep.search"),
    ("sweep.scheduler: hyperband\n", "sweep.scheduler"),
    ("sweep.num_samples: 0\n", "sweep.num_samples"),
    ("sweep.num_samples: 3\n", "sweep.num_samples"),  # a grid runs each trial once
    ("strategy.name: eg\nstrategy.gamma: {loguniform: [0.01, 0.5]}\n", "strategy.gamma"),  # a range needs a searcher
    ("sweep.search: random\nstrategy.name: eg\nstrategy.gamma: {loguniform: [0.01, 2.0]}\n", "strategy.gamma"),
    ("sweep.search: random\nstrategy.name: eg\nstrategy.gamma: {loguniform: [0.0, 0.5]}\n", "strategy.gamma"),
    ("sweep.search: random\nstrategy.name: eg\nstrategy.gamma: {logunif: [0.01, 0.5]}\n", "strategy.gamma"),
    ("sweep.search: random\nstrategy.name: eg\nstrategy.gamma: {uniform: [0.5, 0.1]}\n", "strategy.gamma"),
    ("sweep.search: random\nmodel.n: {uniform: [1, 3]}\n", "model.n"),  # an int key takes randint
    ("sweep.search: random\ndata.name: {uniform: [1, 3]}\n", "data.name"),
    ("sweep.search: random\ntrain.seed: [0, 1]\n", "sweep.search"),  # random search needs a range
    ("sweep.search: optuna\nstrategy.name: [eg, rwm]\nstrategy.gamma: {uniform: [0.1, 0.3]}\n", "strategy.name"),
    ("sweep.search: random\nmodel.n: {randint: [0, 3]}\n", "model.n"),  # model.n 0 is refused by a run
])
def test_bad_searcher_options_are_rejected_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_sweep(_write(tmp_path, "data.name: synthetic\nsweep.paper_grid: false\n" + text))


def test_a_searcher_sweep_names_a_bad_fixed_key_not_the_searched_one(tmp_path: Path) -> None:
    """A fixed key the run refuses is reported as itself: it once read 'strategy.gamma: ... reaches
    0.01, which a run refuses: train.lr_milestones ...', blaming the searched key."""
    path = _write(tmp_path, "data.name: synthetic\nsweep.paper_grid: false\nsweep.search: random\n"
                            "strategy.name: eg\nstrategy.gamma: {loguniform: [0.01, 0.5]}\n"
                            "train.lr_milestones: [2, 1]\n")
    with pytest.raises(ValueError, match=r"^train\.lr_milestones") as err:
        load_sweep(path)
    assert "strategy.gamma" not in str(err.value)


def test_a_missing_searcher_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.space import check_search_available

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hyperopt" else real(name, *a))
    with pytest.raises(RefusedError, match=r"pip install 'adaptive-weights\[hyperopt\]'"):
        check_search_available("hyperopt")


def test_grid_param_space_gives_every_trial_its_real_keys() -> None:
    """Ray's variant generator, fed the grid's param_space, yields exactly the sweep's trials (each
    strategy with its own hyper-parameters) and reports the varying keys as evaluated parameters."""
    from ray.tune.search.variant_generator import generate_variants

    from adaptive_weights.tuning.space import grid_param_space
    from adaptive_weights.tuning.trainable import run_config

    spec = parse_sweep({**TINY, "strategy.name": ["static", "eg"], "strategy.gamma": [0.1, 0.2], "train.seed": [0, 1],
                        "sweep.paper_grid": False,
                        "sweep.cases": [{}, {"objective.name": "distill", "objective.alpha": 0.3},
                                        {"gradient.name": "pcgrad", "train.seed": 0}]})
    variants = list(generate_variants({"config": grid_param_space(spec.trials)}))
    # the trainable reads each trial back: a plug-in key its plug-in lacks (None in the space) is dropped
    configs = [run_config(c["config"]).to_flat() for _, c in variants]
    assert sorted(configs, key=lambda c: c["name"]) == sorted(spec.trials, key=lambda t: t["name"])
    assert {(c["objective.name"], c["gradient.name"]) for c in configs} == {("ce", "sum"), ("distill", "sum"),
                                                                            ("ce", "pcgrad")}
    evaluated = {path[-1] for path in variants[0][0]}
    assert {"name", "strategy.name", "strategy.gamma", "train.seed", "objective.alpha"} <= evaluated


def test_a_relative_data_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = parse_sweep({**TINY, "data.root": "some/data"})
    assert {t["data.root"] for t in spec.trials} == {str(tmp_path / "some" / "data")}


# ----------------------------------------------------------------------------- resuming from plain JSON
def _fake_sweep(out: Path, spec, done: dict[str, bool], threads: int = 1) -> Path:
    """A sweep folder as a sweep leaves it: sweep.json and, per started trial, a Ray checkpoint
    holding the run's summary.json (completed or not)."""
    from adaptive_weights.tuning.plan import spec_record, with_threads
    from adaptive_weights.tuning.sweepdir import SweepDir

    exp = out / spec.name
    SweepDir(str(exp)).write_spec(spec_record(with_threads(spec, threads)))
    for trial in with_threads(spec, threads).trials:
        if trial["name"] in done:
            _fake_checkpoint(exp / trial["name"] / "checkpoint_000001", trial, epochs=2 if done[trial["name"]] else 1,
                             completed=done[trial["name"]])
    return exp


def _fake_checkpoint(ckpt: Path, trial: dict, *, epochs: int, completed: bool) -> Path:
    """A Ray checkpoint of a run directory: its summary.json and a training checkpoint (a zip, as torch.save writes)."""
    import zipfile

    (ckpt / "checkpoints").mkdir(parents=True)
    with zipfile.ZipFile(ckpt / "checkpoints" / "last.pt", "w") as z:
        z.writestr("archive/data.pkl", b"state")
    (ckpt / "summary.json").write_text(json.dumps({
        "name": trial["name"], "completed": completed, "epochs": epochs,
        "config": trial, "errors": {"val": [0.5, 0.4], "test": [0.5, 0.4]}}))
    return ckpt


def test_resume_skips_a_checkpoint_ray_was_copying_when_killed(tmp_path: Path) -> None:
    """Ray copies a checkpoint into its folder file by file: a kill mid-copy leaves a summary.json
    cut short (which made every --resume refuse the sweep) or a run without its whole last.pt (which
    every retry would fail on). The trial continues from its last complete checkpoint instead."""
    from adaptive_weights.tuning.plan import plan_sweep
    from adaptive_weights.tuning.sweepdir import SweepDir

    spec = parse_sweep({**TINY, "strategy.name": ["static", "aann"], "sweep.paper_grid": False}, name="cut")
    static, aann = (t["name"] for t in spec.trials)
    exp = _fake_sweep(tmp_path, spec, {static: False, aann: False})
    trials = {t["name"]: t for t in spec.trials}
    cut_summary = _fake_checkpoint(exp / static / "checkpoint_000002", trials[static], epochs=2, completed=True)
    (cut_summary / "summary.json").write_text('{"name": "' + static + '", "compl')
    cut_pt = _fake_checkpoint(exp / aann / "checkpoint_000002", trials[aann], epochs=2, completed=True)
    data = (cut_pt / "checkpoints" / "last.pt").read_bytes()
    (cut_pt / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 2])
    plan = plan_sweep(SweepDir(str(exp)), spec, resume=True)
    assert sorted(t["name"] for t in plan.trials) == sorted([static, aann])
    assert {n: Path(p).name for n, p in plan.resume_from.items()} == {static: "checkpoint_000001",
                                                                      aann: "checkpoint_000001"}


def test_resume_with_another_cpus_per_trial_is_not_a_changed_grid(tmp_path: Path) -> None:
    """Execution-only changes (threads, via --cpus-per-trial) are taken on --resume: a finished sweep
    resumed with other CPUs per trial only exports its runs again (nothing runs, Ray is not needed)."""
    from adaptive_weights.tuning.launcher import run_sweep

    spec = parse_sweep({**TINY, "strategy.name": ["static", "aann"], "sweep.paper_grid": False}, name="cpus")
    _fake_sweep(tmp_path, spec, {t["name"]: True for t in spec.trials}, threads=1)
    outcome = run_sweep(spec, out=tmp_path, cpus_per_trial=2, resume=True, verbose=0)
    assert outcome.errored == [] and outcome.unfinished == []
    assert sorted(p.name for p in outcome.run_dirs) == sorted(t["name"] for t in spec.trials)


def test_resume_takes_a_fix_in_the_sweep_file_for_unfinished_trials_only(tmp_path: Path) -> None:
    """The way a failed trial's advice offers works: a sweep file that changes only a trial that did
    not finish resumes (that trial starts again); one that changes a finished trial is refused,
    naming the trial and the key."""
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.plan import plan_sweep
    from adaptive_weights.tuning.sweepdir import SweepDir

    base = {**TINY, "strategy.name": ["static", "aann"], "sweep.paper_grid": False}
    spec = parse_sweep(base, name="fix")
    static, aann = (t["name"] for t in spec.trials)
    exp = _fake_sweep(tmp_path, spec, {static: True, aann: False})
    fixed = parse_sweep({**base, "sweep.per_strategy.aann.ratio": 1.5}, name="fix")  # aann failed: fix it
    fixed_name = next(t["name"] for t in fixed.trials if t["strategy.name"] == "aann")
    plan = plan_sweep(SweepDir(str(exp)), fixed, resume=True)
    assert [t["name"] for t in plan.trials] == [fixed_name] and plan.resume_from == {}

    same = plan_sweep(SweepDir(str(exp)), spec, resume=True)  # unchanged: aann continues from its checkpoint
    assert [t["name"] for t in same.trials] == [aann] and set(same.resume_from) == {aann}

    changed = parse_sweep({**base, "train.batch_size": 16}, name="fix")
    with pytest.raises(RefusedError, match=rf"changes finished trial\(s\): {static} \(train\.batch_size: 32 -> 16"):
        plan_sweep(SweepDir(str(exp)), changed, resume=True)


def test_resume_restarts_a_stopped_trial_whose_config_the_file_changes(tmp_path: Path) -> None:
    """A trial a scheduler stopped is kept only while its config stays: changed (here a key its run
    name does not show), it starts again instead of being neither run nor exported."""
    from adaptive_weights.tuning.plan import plan_sweep
    from adaptive_weights.tuning.sweepdir import SweepDir

    base = {**TINY, "strategy.name": "aann", "sweep.paper_grid": False}
    spec = parse_sweep(base, name="stopped")
    (name,) = (t["name"] for t in spec.trials)
    exp = _fake_sweep(tmp_path, spec, {name: False})
    SweepDir(str(exp)).record_stopped(name)
    assert plan_sweep(SweepDir(str(exp)), spec, resume=True).trials == []  # unchanged: kept
    fixed = parse_sweep({**base, "train.batch_size": 16}, name="stopped")
    plan = plan_sweep(SweepDir(str(exp)), fixed, resume=True)
    assert [t["name"] for t in plan.trials] == [name] and plan.resume_from == {}


def test_report_of_a_finished_sweep_refuses_a_changed_sweep_file(tmp_path: Path) -> None:
    """``sweep FILE --report`` on a finished sweep reports its runs without Ray only while FILE
    still describes them; a changed file (a key the run names do not show) is the refusal of a
    sweep that already exists, not a report of the old runs under the new file's name."""
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.cli import _complete_runs, cli_main
    from adaptive_weights.tuning.launcher import run_sweep

    path = _write(tmp_path, "".join(f"{k}: {json.dumps(v)}\n" for k, v in TINY.items())
                  + "strategy.name: static\nsweep: {paper_grid: false, name: rep}\n")
    spec = load_sweep(path)
    _fake_sweep(tmp_path, spec, {t["name"]: True for t in spec.trials})
    run_sweep(spec, out=tmp_path, resume=True, verbose=0)  # exports runs/ as a finished sweep does
    assert [p.name for p in _complete_runs(str(tmp_path), spec)] == [t["name"] for t in spec.trials]
    with pytest.raises(RefusedError, match="already exists; pass --resume"):
        cli_main([str(path), "--out", str(tmp_path), "--report", "-q", "--train.batch_size", "16"])


def test_a_resumed_sweeps_progress_lines_count_on_from_its_finished_trials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """After ``--resume`` of a sweep with 2 of 3 trials finished, the first new progress line read
    ``[1/3]``; it is ``[3/3]``."""
    from ray import tune

    from adaptive_weights.tuning import launcher
    from adaptive_weights.tuning.plan import plan_sweep, spec_record, with_threads
    from adaptive_weights.tuning.sweepdir import SweepDir

    spec = with_threads(parse_sweep({**TINY, "strategy.name": ["static", "aann", "eg"], "sweep.paper_grid": False}, name="count"), 1)
    exp = tmp_path / spec.name
    SweepDir(str(exp)).write_spec(spec_record(spec))
    for trial in spec.trials[:2]:
        _fake_checkpoint(exp / trial["name"] / "checkpoint_000001", trial, epochs=1, completed=True)
    plan = plan_sweep(SweepDir(str(exp)), spec, resume=True)
    assert plan.finished == 2 and [t["name"] for t in plan.trials] == [spec.trials[2]["name"]]

    built = {}
    monkeypatch.setattr(tune, "with_parameters", lambda trainable, **kwargs: trainable)
    monkeypatch.setattr(tune, "Tuner", lambda trainable, **kwargs: built.update(kwargs))
    launcher._tuner(spec, plan, plan.trials, 0, root=str(tmp_path), sweep_dir=SweepDir(str(exp)), cpus_per_trial=1,
                    gpus_per_trial=0, max_concurrent=None, max_failures=0, tensorboard=False, verbose=1)
    (lines,) = [c for c in built["run_config"].callbacks if hasattr(c, "done")]
    last = spec.trials[2]
    lines.on_trial_complete(0, [], SimpleNamespace(custom_trial_name=last["name"], config=last,
                                                   last_result={"val/err/final": 0.5, "val/err/mean": 0.5,
                                                                "epoch": 1}))
    assert capsys.readouterr().out.startswith(f"[3/3] {last['name']}:")


def test_resume_of_a_random_search_completes_a_sample_killed_between_its_seeds(tmp_path: Path) -> None:
    """A random search runs each sample over its grid (here 2 seeds). Killed after one seed of a
    sample, a resume runs that sample's other seed with the sampled gamma, rather than a new sample
    (which left the setting one seed short and ran more trials than the sweep asked for)."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.tuning.plan import plan_sweep, spec_record
    from adaptive_weights.tuning.sweepdir import SweepDir

    spec = parse_sweep({**TINY, "strategy.name": "eg", "strategy.gamma": {"loguniform": [0.01, 0.5]},
                        "train.seed": [0, 1], "sweep.search": "random", "sweep.num_samples": 2,
                        "sweep.paper_grid": False}, name="rnd")
    exp = tmp_path / "rnd"
    SweepDir(str(exp)).write_spec(spec_record(spec))
    fixed = {k: v for k, v in spec.space.items() if k not in spec.searched}
    for number, (gamma, seed) in enumerate([(0.05, 0), (0.05, 1), (0.2, 0)], start=1):
        trial = RunConfig.from_flat({**fixed, "strategy.gamma": gamma, "train.seed": seed,
                                     "name": f"eg-s{seed}-0000{number}"}).resolve().to_flat()
        _fake_checkpoint(exp / trial["name"] / "checkpoint_000001", trial, epochs=2, completed=True)
    plan = plan_sweep(SweepDir(str(exp)), spec, resume=True)
    assert [(t["strategy.gamma"], t["train.seed"]) for t in plan.trials] == [(0.2, 1)]
    assert plan.samples == 0 and plan.resume_from == {}
    assert plan.trials[0]["name"] not in {d for d in SweepDir(str(exp)).entries()}


def test_resume_of_a_search_refuses_a_changed_space_naming_the_key_only(tmp_path: Path) -> None:
    """A searcher's resume takes execution-only changes (threads) and refuses a changed range,
    naming the key with its old and new value (and no execution-only key)."""
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.plan import plan_sweep, spec_record, with_threads
    from adaptive_weights.tuning.sweepdir import SweepDir

    keys = {**TINY, "strategy.name": "eg", "strategy.gamma": {"loguniform": [0.01, 0.5]},
            "sweep.search": "random", "sweep.paper_grid": False}
    spec = parse_sweep(keys, name="srch")
    SweepDir(str(tmp_path / "srch")).write_spec(spec_record(with_threads(spec, 1)))
    assert plan_sweep(SweepDir(str(tmp_path / "srch")), with_threads(spec, 2), resume=True).trials == []
    changed = parse_sweep({**keys, "strategy.gamma": {"loguniform": [0.01, 0.4]}}, name="srch")
    with pytest.raises(RefusedError, match=r"search differs from .*: strategy\.gamma: \{'loguniform': \[0\.01, "
                                           r"0\.5\]\} -> \{'loguniform': \[0\.01, 0\.4\]\}\. A resume") as err:
        plan_sweep(SweepDir(str(tmp_path / "srch")), with_threads(changed, 2), resume=True)
    assert "num_threads" not in str(err.value)


def test_resume_without_a_sweep_json_is_refused(tmp_path: Path) -> None:
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.plan import plan_sweep
    from adaptive_weights.tuning.sweepdir import SweepDir

    spec = parse_sweep(TINY, name="none")
    with pytest.raises(RefusedError, match="no sweep to resume"):
        plan_sweep(SweepDir(str(tmp_path / "none")), spec, resume=True)


def test_cluster_auth_is_token_by_default_and_needs_a_token(tmp_path: Path) -> None:
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.cluster import ensure_cluster_auth

    with pytest.raises(RefusedError, match="RAY_AUTH_TOKEN_PATH"):
        ensure_cluster_auth({"HOME": str(tmp_path)})
    assert ensure_cluster_auth({"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "x" * 32}) == "token"
    token = tmp_path / "token"
    token.write_text("y" * 32)
    assert ensure_cluster_auth({"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(token)}) == "token"
    assert ensure_cluster_auth({"HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}) == "disabled"


def test_pbt_mutates_the_searched_strategy_keys_and_needs_some() -> None:
    from ray.tune.schedulers import PopulationBasedTraining

    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.space import make_scheduler, pbt_mutations

    spec = parse_sweep({**TINY, "strategy.name": "eg", "strategy.gamma": {"uniform": [0.1, 0.4]},
                        "strategy.rho": [0.7, 0.9], "train.seed": [0, 1], "sweep.search": "random",
                        "sweep.scheduler": "pbt", "sweep.paper_grid": False})
    mutations = pbt_mutations(spec)
    assert sorted(mutations) == ["strategy.gamma", "strategy.rho"]  # never the seed
    assert mutations["strategy.rho"] == [0.7, 0.9]  # values to pick from, not Tune's grid_search dict
    assert isinstance(make_scheduler("pbt", max_epochs=2, mutations=mutations), PopulationBasedTraining)
    with pytest.raises(RefusedError, match="sweep.scheduler: pbt"):
        make_scheduler("pbt", max_epochs=2, mutations={})


@pytest.mark.parametrize("search, message", [
    ("grid", "sweep.scheduler: pbt mutates searched keys"),
    ("optuna", "sweep.scheduler: pbt with sweep.search: 'optuna'"),
])
def test_a_pbt_sweep_ray_cannot_run_is_refused_before_anything_is_written(tmp_path: Path, search: str,
                                                                          message: str) -> None:
    """``--scheduler pbt`` on a grid (nothing to mutate) or with Optuna (Tune's PBT takes no searcher)
    failed only once Ray ran and sweep.json was written, so the fixed command then met 'sweep
    directory already exists'."""
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.launcher import run_sweep

    keys = {"strategy.gamma": {"uniform": [0.1, 0.3]}, "sweep.search": search} if search != "grid" else {}
    spec = parse_sweep({**TINY, "strategy.name": "eg", "sweep.paper_grid": False, **keys}, name="pbt")
    with pytest.raises(RefusedError, match=message):
        run_sweep(spec, out=tmp_path / "out", scheduler="pbt", verbose=0)
    assert not (tmp_path / "out").exists()


def test_pbt_exploit_continues_a_checkpoint_with_mutated_hyper_parameters(tmp_path: Path) -> None:
    """PBT hands a trial another trial's checkpoint with a mutated strategy.gamma: a plain resume
    refuses it, the trainable's adoption continues it (learnt state kept, the new gamma used)."""
    import shutil

    from adaptive_weights.checkpoint import load_checkpoint
    from adaptive_weights.config import RunConfig
    from adaptive_weights.training import train
    from adaptive_weights.tuning.trainable import _adopt_hparams

    base = {**TINY, "data.synthetic_size": 32, "strategy.name": "eg", "train.num_threads": 1,
            "train.lr_milestones": [1], "train.lr_values": [0.05, 0.005]}
    donor = tmp_path / "donor"
    train(RunConfig.from_flat({**base, "train.epochs": 1, "strategy.gamma": 0.2}), out_dir=donor, tensorboard=False)
    mutated = RunConfig.from_flat({**base, "train.epochs": 2, "strategy.gamma": 0.25}).resolve()
    refused = tmp_path / "refused"
    shutil.copytree(donor, refused)
    with pytest.raises(ValueError, match="strategy.gamma|hparams"):
        train(mutated, out_dir=refused, resume=True, tensorboard=False)
    adopted = tmp_path / "adopted"
    shutil.copytree(donor, adopted)
    _adopt_hparams(adopted, mutated)
    summary = train(mutated, out_dir=adopted, resume=True, tensorboard=False)
    assert summary["completed"] and summary["epochs"] == 2
    assert load_checkpoint(adopted / "checkpoints" / "last.pt")["strategy"]["hparams"]["gamma"] == 0.25


def test_a_diverged_setting_scores_the_worst_error() -> None:
    """A setting whose run diverged loses, even though its last good epoch looked fine (its summary
    holds that epoch's errors); its exit count comes from the run."""
    diverged = _run("d0", "eg", 0, [0.01, 0.01], gamma=0.4)
    diverged.status, diverged.exit_units = "diverged", (0, 1)
    runs = [diverged, _run("a0", "eg", 0, [0.3, 0.2], gamma=0.1)]
    scores = {s.params: s for s in score_settings(runs)}
    assert scores[(("strategy.gamma", 0.4),)].mean_error == 1.0
    (choice,) = select_settings(runs)
    assert choice.chosen.params == (("strategy.gamma", 0.1),)


def test_a_diverging_trial_ends_with_its_run_directory_not_a_retry(tmp_path: Path, tiny_flat: dict) -> None:
    """Ray would retry a failed trial from the same checkpoint, where it diverges again: the trial
    ends normally instead, reporting the worst error and the run directory whose summary says why."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.runs import is_completed, is_final
    from adaptive_weights.tuning.trainable import train_in_scratch

    cfg = RunConfig.from_flat({**tiny_flat, "train.lr_values": "0.05,1e6", "train.progress": False}).resolve()
    reports: list[tuple[dict, dict]] = []

    def report(metrics: dict, run_dir: Path) -> None:
        reports.append((metrics, json.loads((run_dir / "summary.json").read_text())))

    train_in_scratch(cfg, f"diverge-{tmp_path.name}", checkpoint=None, report=report, tensorboard=False,
                     hparam_keys=())
    (metrics, summary) = reports[-1]
    assert metrics["diverged"] == 1.0 and metrics["val/err/mean"] == 1.0 and metrics["diverged_epoch"] == 2.0
    assert summary["status"] == "diverged" and summary["diverged"]["epoch"] == 2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    assert is_final(tmp_path / "run") and not is_completed(tmp_path / "run")


def test_a_diverged_trial_is_said_so_and_not_recorded_as_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its last report holds no epoch: the progress line read 'val err final 100.00% ... after 0
    epochs' and the trial went into stopped.json as if a scheduler had cut it."""
    from adaptive_weights.tuning.launcher import _progress_callback, _StoppedRecorder
    from adaptive_weights.tuning.sweepdir import SweepDir

    sweep_dir = SweepDir(str(tmp_path))
    result = {"diverged": 1.0, "diverged_epoch": 2.0, "val/err/final": 1.0, "val/err/mean": 1.0, "time_total_s": 3.0}
    trial = SimpleNamespace(custom_trial_name="r-diverged", config={"data.name": "synthetic", "train.epochs": 4},
                            last_result=result)
    _StoppedRecorder(sweep_dir).on_trial_complete(0, [], trial)
    _progress_callback(1).on_trial_complete(0, [], trial)
    assert sweep_dir.stopped() == set()
    assert "r-diverged: diverged in epoch 2" in capsys.readouterr().out
    cut = SimpleNamespace(custom_trial_name="r-cut", config=trial.config, last_result={"epoch": 1, "val/err/final": 0.5})
    _StoppedRecorder(sweep_dir).on_trial_complete(0, [], cut)
    assert sweep_dir.stopped() == {"r-cut"}


def test_a_sweeps_trials_share_its_compile_cache_unless_they_name_one(tmp_path):
    from adaptive_weights.tuning.plan import with_compile_cache
    from adaptive_weights.tuning.sweepfile import SweepSpec

    spec = SweepSpec(name="s", trials=[{"name": "a"}, {"name": "b", "train.compile_cache": "/mine"}])
    shared = with_compile_cache(spec, tmp_path / "compile-cache")
    assert [t["train.compile_cache"] for t in shared.trials] == [str(tmp_path / "compile-cache"), "/mine"]
    assert with_compile_cache(spec, None) is spec  # trials on other nodes keep torch's per-node cache


@pytest.mark.parametrize("bad", ["cifar\n", "a/b", "..", ".hidden", "x y"])
def test_a_sweep_name_that_cannot_name_a_directory_is_refused(bad):
    from adaptive_weights.errors import RefusedError
    """`$` matches before a final newline: 'cifar\\n' passed and named a directory with a newline."""
    from adaptive_weights.tuning.sweepfile import parse_sweep

    with pytest.raises(RefusedError, match="sweep.name"):
        parse_sweep({"data.name": "synthetic", "sweep.name": bad})


def test_opt_baselines_add_the_grids_opt_runs_once_per_model_and_seed():
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.tuning.baselines import with_opt_baselines
    from adaptive_weights.tuning.sweepfile import parse_sweep

    base = {"data.name": "synthetic", "model.n": 1, "train.epochs": 1, "train.seed": [0, 1],
            "strategy.name": ["static", "aann"], "sweep.paper_grid": False}
    plain = parse_sweep(base)
    spec = parse_sweep({**base, "sweep.opt_baselines": True})
    opt = [t for t in spec.trials if t["scheme.name"].startswith("optimal@")]
    assert spec.trials[:len(plain.trials)] == plain.trials
    # n=1: 3 units, milestones at units 0, 1, 2 -> 3 OPT runs per seed, shared by both strategies
    assert len(opt) == 6 and {t["train.seed"] for t in opt} == {0, 1}
    assert {t["strategy.name"] for t in opt} == {"static"}
    assert with_opt_baselines(spec).trials == spec.trials  # added once (the CLI flag and the key together)
    with pytest.raises(RefusedError, match="sweep.opt_baselines: expected true or false"):
        parse_sweep({**base, "sweep.opt_baselines": "yes"})
    with pytest.raises(RefusedError, match="sweep.opt_baselines: the OPT runs are added to a grid"):
        parse_sweep({**base, "train.seed": 0, "strategy.gamma": {"uniform": [0.1, 0.5]}, "strategy.name": "eg",
                     "sweep.search": "random", "sweep.opt_baselines": True})


def test_the_sweep_report_compares_with_the_sweeps_own_opt_runs(tmp_path, tiny_flat):
    """One command gives the paper's table: the OPT runs of the sweep are baselines, not a setting
    to choose among."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.training import train
    from adaptive_weights.tuning.launcher import write_sweep_report
    from adaptive_weights.tuning.sweepfile import parse_sweep

    spec = parse_sweep({**tiny_flat, "train.epochs": 1, "strategy.name": ["static", "aann"],
                        "sweep.paper_grid": False, "sweep.opt_baselines": True})
    dirs = []
    for trial in spec.trials:
        dirs.append(tmp_path / "runs" / trial["name"])
        train(RunConfig.from_flat(trial), out_dir=dirs[-1], tensorboard=False)
    text = write_sweep_report(dirs, tmp_path / "report").read_text()
    chosen = text[text.index("## Chosen"):text.index("\n## ", text.index("## Chosen") + 1)]
    assert "strategy.name=static" in chosen and "strategy.name=aann" in chosen
    assert not any(row.startswith("|") and "optimal@" in row for row in chosen.splitlines())  # OPT: no setting
    assert "No OPT run was given" not in text and "### OPT baselines" in text


def test_the_sweep_command_takes_opt_baselines_and_refuses_baselines_that_are_no_runs(tmp_path, capsys):
    from adaptive_weights.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text("data.name: synthetic\nmodel.n: 1\ntrain.epochs: 1\nstrategy.name: [static, aann]\n"
                     "sweep.paper_grid: false\n")
    assert main(["sweep", str(sweep), "--opt-baselines", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep s: 5 trials" in out and out.count("-optimalat") == 3
    assert main(["sweep", str(sweep), "--baselines", str(tmp_path), "--dry-run"]) == 2
    assert "--baselines" in capsys.readouterr().err


def test_a_sweep_from_a_bare_shell_imports_ray_only_once_loopback_is_set(tmp_path: Path) -> None:
    """`adaptive-weights sweep` run by hand (no Makefile, so RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is not
    in the environment) must import Ray only after `ray_session` set it: a Ray callback made
    before the session imported Ray first, and the README's quick start stopped with "Ray was
    imported before ...". The session is replaced by one that records whether Ray is loaded and stops."""
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text("data.name: synthetic\ndata.synthetic_size: 64\nmodel.n: 1\nmodel.c: 4\ntrain.epochs: 1\n"
                     "train.batch_size: 16\n"
                     "strategy.name: [static, aann]\n")
    code = f"""
import contextlib, sys
import adaptive_weights.tuning.launcher as launcher
from adaptive_weights.tuning.sweepfile import load_sweep

class Stop(Exception):
    pass

@contextlib.contextmanager
def session(*args, **kwargs):
    print("ray loaded before the session:", "ray" in sys.modules)
    raise Stop
    yield

launcher.ray_session = session
try:
    launcher.run_sweep(load_sweep({str(sweep)!r}), out={str(tmp_path / 'out')!r}, verbose=1)
except Stop:
    pass
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ray loaded before the session: False" in done.stdout, done.stdout + done.stderr
