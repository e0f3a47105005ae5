"""Reports: hand-computed tables from hand-made runs, and an end-to-end report from tiny trained runs
(two schemes, OPT at the milestones, an EANN of three members) with every table and plot."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from adaptive_weights.config import RunConfig
from adaptive_weights.errors import RefusedError
from adaptive_weights.opt import plan_opt_runs, run_opt_plan
from adaptive_weights.rendering import write_report
from adaptive_weights.report import ZERO_OPT, build_report, cli_main
from adaptive_weights.runs import Run, find_run_dirs, load_runs
from adaptive_weights.training import train

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.n": 1, "model.c": 4, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 32,
    "train.progress": False, "train.num_threads": 1,
}


# ------------------------------------------------------------------------------ hand-made runs
def _run(name: str, scheme: str, seed: int, test: list[float], *, units=(0, 1, 2), epochs: int = 1) -> Run:
    config = {"data.name": "synthetic", "model.arch": "resnet", "model.n": 1, "model.c": 4, "model.period": 1,
              "model.depth": 50, "model.unit_style": "preact", "train.seed": seed, "scheme.name": scheme,
              "strategy.name": "static", "train.epochs": epochs}
    macs = {0: 100, 1: 200, 2: 300}
    return Run(path=Path("/nonexistent") / name, name=name, config=config, num_units=3, exit_units=tuple(units),
               exit_macs=tuple(macs[u] for u in units), errors={"test": test, "val": None}, completed=True,
               epochs=epochs)


def _hand_runs(drop_opt: tuple[int, int] | None = (2, 1), opt_epochs: int = 1) -> list[Run]:
    """L = 3, milestones q = 1/4, 1/2, 3/4, 1 -> units 0, 1, 1, 2. Seeds 0-2 of sieve (A) and const (B);
    OPT errors 0.25, 0.2, 0.1 at units 0, 1, 2, without OPT (seed 2, unit 1) by default."""
    runs = []
    for s in range(3):
        runs.append(_run(f"a{s}", "sieve", s, [0.5, 0.4, 0.2]))
        runs.append(_run(f"b{s}", "const", s, [0.3, 0.45, 0.2 if s == 2 else 0.25]))
        for u, e in zip((0, 1, 2), (0.25, 0.2, 0.1), strict=True):
            if (s, u) != drop_opt:
                runs.append(_run(f"opt{u}-s{s}", f"optimal@{u}", s, [e], units=(u,),
                                 epochs=opt_epochs if (s, u) == (0, 0) else 1))
    return runs


def _row(md: str, prefix: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(prefix))
    return [c.strip() for c in line.strip("|").split("|")]


def test_tables_are_hand_computed():
    rep = build_report(_hand_runs(), group_by=["scheme.name", "strategy.name"])
    md = rep.markdown
    # (a) mean over three seeds: const at unit 2 is (0.25 + 0.25 + 0.2) / 3 = 23.33%
    assert _row(md, "| const+static | 3 |")[2:5] == ["30.00", "45.00", "23.33"]
    # step AUC over [100, 300]: sieve holds 0.5 on [100, 200), 0.4 on [200, 300) -> 45%
    assert _row(md, "| sieve+static | 3 |")[-1] == "45.00"
    # (b) sieve at q=1/4: (0.5 - 0.25) / 0.25 = +100%; q=1: (0.2 - 0.1) / 0.1 = +100%; const at q=1/4:
    # (0.3 - 0.25) / 0.25 = +20%; q=1 mean of +150, +150, +100 = +133.3%. Seed 2 lacks OPT at unit 1
    # (q = 1/2 and 3/4): it is compared with OPT's mean over seeds 0 and 1 there (0.2, as theirs), so
    # sieve is (0.4 - 0.2) / 0.2 = +100% and const (0.45 - 0.2) / 0.2 = +125% on every seed.
    assert _row(md, "| synthetic/resnet n1 c4 | sieve+static |")[2:] == ["+100.0", "+100.0", "+100.0", "+100.0"]
    assert _row(md, "| synthetic/resnet n1 c4 | const+static |")[2:] == ["+20.0", "+125.0", "+125.0", "+133.3"]
    fallback = ("synthetic/resnet n1 c4 seed 2, unit 1: no OPT run of seed 2: compared with OPT's mean over "
                "seeds [0, 1]")
    assert fallback in rep.warnings and f"- {fallback}" in md
    rel = [r for r in rep.tables["relative_increase"] if r["run"] == "a2" and r["q"] == "1/2"]
    assert rel[0]["relative_increase"] == pytest.approx(1.0) and rel[0]["opt_error"] == pytest.approx(0.2)
    assert rel[0]["note"] == "no OPT run of seed 2: compared with OPT's mean over seeds [0, 1]"
    # without any OPT run at unit 1 the cells are n/a, and the warning says which is missing
    no_unit1 = build_report([r for r in _hand_runs() if not r.name.startswith("opt1-")],
                            group_by=["scheme.name", "strategy.name"])
    assert _row(no_unit1.markdown, "| synthetic/resnet n1 c4 | sieve+static |")[2:] == ["+100.0", "n/a", "n/a", "+100.0"]
    assert "missing OPT at unit 1 for synthetic/resnet n1 c4 seed 2" in no_unit1.warnings
    rel = [r for r in no_unit1.tables["relative_increase"] if r["run"] == "a2" and r["q"] == "1/2"]
    assert rel[0]["relative_increase"] is None and rel[0]["note"].startswith("missing OPT at unit 1")
    # (c) const vs sieve: q=1/4 const wins 3 of 3 -> Hoeffding exp(-2*3*(1/2)^2) = exp(-1.5), exact 1/8;
    # q=1 sieve wins 2, one tie dropped -> n=2, Hoeffding exp(-1), exact 1/4.
    by_q = {r["q"]: r for r in rep.tables["win_rates"]}
    assert (by_q["1/4"]["a"], by_q["1/4"]["a_wins"], by_q["1/4"]["b_wins"]) == ("const+static", 3, 0)
    assert by_q["1/4"]["hoeffding_p_a_better"] == pytest.approx(math.exp(-1.5))
    assert by_q["1/4"]["binomial_p_a_better"] == pytest.approx(1 / 8)
    assert by_q["1/4"]["hoeffding_p_b_better"] == 1.0
    assert (by_q["1"]["a_wins"], by_q["1"]["b_wins"], by_q["1"]["ties"], by_q["1"]["n"]) == (0, 2, 1, 2)
    assert by_q["1"]["hoeffding_p_b_better"] == pytest.approx(math.exp(-1.0))
    assert by_q["1"]["binomial_p_b_better"] == pytest.approx(0.25)
    assert _row(md, "| const+static vs sieve+static | 1/4 |")[2:] == ["3", "0", "0", "1.00", "0.223 / 0.125", "1 / 1"]
    # the OPT runs are not a method, and the markdown explains its numbers
    assert {r["method"] for r in rep.tables["per_exit_errors"]} == {"sieve+static", "const+static", "OPT"}
    for text in ("multiply-accumulates", "round_half_up(q*L) - 1", "exp(-2n(k/n - 1/2)^2)", "Binomial(n, 1/2)"):
        assert text in md


def test_a_report_points_to_no_document_its_reader_lacks():
    """The report's text once cited "spec §5.3" (and its EANN section "spec §5.5"), a document no
    user has; every section, the claims included, now says what it means."""
    md = build_report(_hand_runs(), group_by=["scheme.name", "strategy.name"], claims=True).markdown
    assert "the last epoch, as in the paper" in md and "the paper's OPT baseline" in md
    assert "spec §" not in md and "DESIGN.md" not in md


def test_baselines_keep_the_win_rates_that_involve_them():
    runs = _hand_runs() + [_run(f"c{s}", "linear", s, [0.4, 0.3, 0.2]) for s in range(3)]
    every = build_report(runs, group_by=["scheme.name", "strategy.name"])
    assert {(r["a"], r["b"]) for r in every.tables["win_rates"]} == {
        ("const+static", "linear+static"), ("const+static", "sieve+static"), ("linear+static", "sieve+static")}
    one = build_report(runs, group_by=["scheme.name", "strategy.name"], baselines=["sieve+static"])
    assert {(r["a"], r["b"]) for r in one.tables["win_rates"]} == {
        ("const+static", "sieve+static"), ("linear+static", "sieve+static")}
    assert "Only pairs with a baseline (`sieve+static`) are shown." in one.markdown
    # a seed that one method lacks is one warning line, not one per pair
    two_seeds = [r for r in runs if r.name != "c2"]
    lines = [w for w in build_report(two_seeds, group_by=["scheme.name", "strategy.name"]).warnings
             if w.startswith("win rates:")]
    assert lines == ["win rates: setting synthetic/resnet n1 c4 seed 2 has only 2 of the 3 methods (const+static, "
                     "sieve+static), so it is left out of the 2 comparison(s) of a method that has it with one that "
                     "does not (const+static vs linear+static, linear+static vs sieve+static)"]
    with pytest.raises(ValueError, match=r"--baseline 'sieve' is no method .* methods: const\+static, linear"):
        build_report(runs, group_by=["scheme.name", "strategy.name"], baselines=["sieve"])


def test_a_plug_in_named_by_group_by_is_a_method_not_a_mismatch():
    distill = [_run(f"d{s}", "const", s, [0.3, 0.4, 0.2]) for s in range(3)]
    for r in distill:
        r.config.update({"objective.name": "distill", "objective.alpha": 0.5})
    runs = [*_hand_runs(drop_opt=None), *distill]
    for r in runs:
        r.config.setdefault("objective.name", "ce")
    keys = ["scheme.name", "strategy.name", "objective.name"]
    assert not [w for w in build_report(runs, group_by=keys).warnings if "mismatched" in w]
    # grouped without the objective, the same runs do differ in protocol, and the warning says how
    warned = [w for w in build_report(runs, group_by=keys[:2]).warnings if "mismatched" in w]
    assert any("`objective.name`" in w for w in warned) and any("`objective.alpha`" in w for w in warned)


def test_mismatches_and_single_key_grouping_are_reported():
    rep = build_report(_hand_runs(drop_opt=None, opt_epochs=2))
    assert not any(w.startswith("missing OPT") for w in rep.warnings)
    mismatch = [w for w in rep.warnings if "train.epochs" in w]
    assert len(mismatch) == 1 and "2 in 1 run(s) (opt0-s0)" in mismatch[0]
    # grouped by strategy only, sieve and const are one method with two runs per setting: reported
    assert any("method static has several runs for setting synthetic/resnet n1 c4 seed 0" in w for w in rep.warnings)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no key 'train.nope'"):
        build_report(_hand_runs(), group_by=["train.nope"])
    # a hyper-parameter that some runs' strategy does not have is left out of their label, not an error
    runs = _hand_runs()
    runs[0].config["strategy.ratio"] = 2.0
    assert build_report(runs, group_by=["scheme.name", "strategy.ratio"]).tables["win_rates"][0]["a"] == "const"
    with pytest.raises(ValueError, match="only OPT runs"):
        build_report([r for r in _hand_runs() if r.is_opt])
    with pytest.raises(ValueError, match="no such run directory"):
        cli_main(["/nonexistent/run"])


def test_a_group_by_key_that_no_run_has_is_refused():
    """A strategy hyper-parameter absent from some runs shows as ``-``; one absent from all (a typo)
    made every run the one method ``-``, comparing nothing with nothing."""
    with pytest.raises(RefusedError, match=r"--group-by scheme.name,strategy.nme: no key 'strategy.nme' in any of "
                                           r"the 6 anytime runs; their keys in strategy\.\*: strategy.name$"):
        build_report(_hand_runs(), group_by=["scheme.name", "strategy.nme"])


def test_an_opt_run_as_eann_member_is_refused():
    """`adaptive-weights eann` refused a single-exit member, but `report --eann` chained it."""
    import dataclasses

    runs = _hand_runs()
    chain = [dataclasses.replace(r, errors={"test": r.errors["test"], "val": r.errors["test"]}) for r in (runs[2], runs[0])]
    with pytest.raises(RefusedError, match=r"EANN members must be anytime runs; \['opt0-s0'\] are single-exit OPT runs"):
        build_report(runs, eann_chains=[chain])


def test_a_pipe_in_a_cell_keeps_the_table_well_formed():
    runs = [*_hand_runs(), _run("a|b", "sieve", 5, [0.5, 0.4, 0.2])]
    line = next(ln for ln in build_report(runs).markdown.splitlines() if "| 5 |" in ln)  # the Runs table's row
    assert line.startswith("| a\\|b | static |") and line.replace("\\|", "").count("|") == 7


def test_out_that_is_a_file_is_refused_before_writing(tmp_path):
    report = build_report(_hand_runs())
    (tmp_path / "taken").write_text("not a report")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        with pytest.raises(RefusedError, match=f"--out '{out}': {tmp_path / 'taken'} is a file; expected a directory"):
            write_report(report, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_csv_tables_without_rows_keep_their_header(tmp_path):
    """One method has no pair to compare, a report of EANN chains only has no anytime rows: each
    CSV still starts with its header (it was a file holding one empty line)."""
    import dataclasses

    one_method = build_report([r for r in _hand_runs() if r.is_opt or r.config["scheme.name"] == "sieve"])
    member = dataclasses.replace(_run("m", "sieve", 0, [0.5, 0.4, 0.2]), errors={"test": [0.5, 0.4, 0.2],
                                                                              "val": [0.5, 0.4, 0.2]})
    no_method = build_report([], eann_chains=[[member]])
    for report, empty in ((one_method, ["win_rates"]), (no_method, ["per_exit_errors", "relative_increase", "win_rates"])):
        out = tmp_path / str(len(empty))
        report.plots.clear()  # the CSVs are what is tested
        write_report(report, out)
        for name in empty:
            with (out / f"{name}.csv").open(newline="") as f:
                rows = list(csv.reader(f))
            assert len(rows) == 1 and rows[0][0] in ("a", "run"), (name, rows)
    assert rows[0][:4] == ["a", "b", "q", "settings"]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path.parent


def test_run_dirs_are_found_through_symlinks_once(tmp_path):
    """A folder of links to chosen runs is searched (rglob did not follow them: "no run directory
    under it"); a link cycle or a second link to the same run adds nothing."""
    runs = [_touch(tmp_path / "all" / name / "summary.json") for name in ("a", "b")]
    picks = tmp_path / "picks"
    picks.mkdir()
    (picks / "a").symlink_to(runs[0])
    (picks / "again").symlink_to(runs[0])
    (picks / "nested").mkdir()
    (picks / "nested" / "b").symlink_to(runs[1])
    (picks / "nested" / "loop").symlink_to(picks)
    assert find_run_dirs([picks]).finished == [r.resolve() for r in runs]


def test_ray_checkpoint_copies_are_not_runs_of_a_sweep_folder(tmp_path):
    """A sweep's trial folders hold Ray's checkpoint_* copies of each run (provisional ones too) beside
    its runs/ copy: searching the sweep folder counted every run three times."""
    run = _touch(tmp_path / "sweep" / "runs" / "r-s0" / "summary.json")
    trial = tmp_path / "sweep" / "r-s0"
    _touch(trial / "params.json")
    copies = [_touch(trial / f"checkpoint_00000{k}" / "summary.json") for k in (2, 3)]
    lone = _touch(tmp_path / "not-a-trial" / "checkpoint_000001" / "summary.json")  # no params.json beside it
    assert find_run_dirs([tmp_path]).finished == [lone.resolve(), run.resolve()]
    assert find_run_dirs([copies[0]]).finished == [copies[0].resolve()]  # named directly, it is one


# ------------------------------------------------------------------------------ trained runs
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, list[Path]]:
    """Two methods x two seeds (n=1: 3 exits), OPT at the milestones (units 0, 1, 2) per seed, and an
    EANN of n = 1, 2, 4 (seed 0). About 15 one-epoch runs on 8x8 synthetic images."""
    root = tmp_path_factory.mktemp("report")
    runs, eann = [], []
    for seed in (0, 1):
        for scheme, strategy in (("sieve", "aann"), ("const", "static")):
            out = root / "runs" / f"{scheme}-{strategy}-s{seed}"
            train(RunConfig.from_flat({**TINY, "scheme.name": scheme, "strategy.name": strategy,
                                       "train.seed": seed}), out_dir=out, tensorboard=False)
            runs.append(out)
        run_opt_plan(plan_opt_runs(root / "runs" / f"sieve-aann-s{seed}", out_root=root / "opt"),
                     tensorboard=False, log=lambda msg: None)
    for n in (2, 4):
        out = root / "eann" / f"n{n}"
        train(RunConfig.from_flat({**TINY, "model.n": n, "scheme.name": "sieve", "strategy.name": "aann"}),
              out_dir=out, tensorboard=False)
        eann.append(out)
    return {"root": [root], "runs": runs, "eann": [runs[0], *eann]}


def test_report_from_trained_runs(trained, tmp_path, capsys):
    root = trained["root"][0]
    out = tmp_path / "report"
    eann_args = ["--eann", *map(str, trained["eann"])]
    assert cli_main([str(root / "runs"), str(root / "opt"), "--group-by", "scheme.name,strategy.name",
                     *eann_args, "--out", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "per_exit_errors.csv", "relative_increase.csv", "win_rates.csv", "eann.csv",
            "error_vs_macs_synthetic_resnet_n1_c4.png", "eann_0.png",
            "probability_stack_sieve+aann_synthetic_resnet_n1_c4.png"} <= names
    assert not any(n.startswith("probability_stack_const") for n in names)  # static does not sample
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for heading in ("## (a)", "### OPT baselines", "## (b)", "## (c)", "## (d) EANN", "## Plots", "## Warnings"):
        assert heading in md
    assert "missing OPT" not in md and "Cost inflation of the EANN against OPT+" in md
    # a reader has no specification document: the text says it, or links a file of the repository
    assert "spec §" not in md and "DESIGN.md" not in md

    runs = {r.name: r for r in load_runs([root])}
    # per-exit CSV rows are the summaries' numbers
    rows = list(csv.DictReader((out / "per_exit_errors.csv").open()))
    a0 = runs["sieve-aann-s0"]
    assert [float(r["test_error"]) for r in rows if r["run"] == "sieve-aann-s0"] == a0.errors["test"]
    # a relative increase recomputed from the summaries (n=1: q=1/2 is unit 1)
    opt1 = next(r for r in runs.values() if r.is_opt and r.seed == 0 and r.exit_units == (1,))
    rel = next(r for r in csv.DictReader((out / "relative_increase.csv").open())
               if r["run"] == "sieve-aann-s0" and r["q"] == "1/2")
    e_ann, e_opt = a0.errors["test"][1], opt1.errors["test"][0]
    assert float(rel["relative_increase"]) == pytest.approx((e_ann - e_opt) / e_opt)
    # win rates cover the two seeds at each milestone
    wins = list(csv.DictReader((out / "win_rates.csv").open()))
    assert len(wins) == 4 and all(int(w["a_wins"]) + int(w["b_wins"]) + int(w["ties"]) == 2 for w in wins)
    # the EANN curve starts at the cheapest member's first exit
    eann_rows = list(csv.DictReader((out / "eann.csv").open()))
    assert float(eann_rows[0]["macs"]) == a0.exit_macs[0] and eann_rows[0]["member"] == "sieve-aann-s0"


def test_missing_opt_is_reported_not_skipped(trained, tmp_path):
    root = trained["root"][0]
    kept = [p for p in (root / "opt").iterdir() if not p.name.startswith("synthetic-resnet1c4-optimalat1-static")]
    rep = build_report(load_runs([root / "runs", *kept]), group_by=["scheme.name", "strategy.name"])
    assert "missing OPT at unit 1 for synthetic/resnet n1 c4 seed 1" in rep.warnings
    assert _row(rep.markdown, "| synthetic/resnet n1 c4 | sieve+aann |")[3:5] == ["n/a", "n/a"]
    write_report(rep, tmp_path)
    assert (tmp_path / "report.md").read_text() == rep.markdown


def test_zero_opt_error_says_why_everywhere(tmp_path):
    """An OPT error of 0 makes the relative increase undefined: the table cell, the pooled row, the
    CSV's note and one warning line say so (never a bare n/a)."""
    runs = [r for r in _hand_runs() if r.name != "opt2-s0"]
    runs.append(_run("opt2-s0", "optimal@2", 0, [0.0], units=(2,)))
    rep = build_report(runs, group_by=["scheme.name", "strategy.name"])
    zero = [w for w in rep.warnings if ZERO_OPT in w]
    assert len(zero) == 1 and "unit 2" in zero[0] and "seed 0" in zero[0]
    assert len(rep.warnings) == len(set(rep.warnings))
    assert rep.markdown.count(zero[0]) == 1
    # q=1 is unit 2, whose seed-0 OPT has 0 errors; q=1/2 and 3/4 use OPT's mean for seed 2 (see above)
    assert _row(rep.markdown, "| synthetic/resnet n1 c4 | sieve+static |")[2:] == ["+100.0", "+100.0", "+100.0",
                                                                                 ZERO_OPT]
    assert _row(rep.markdown, "| **all settings** | const+static |")[-1] == ZERO_OPT
    write_report(rep, tmp_path)
    rows = [r for r in csv.DictReader((tmp_path / "relative_increase.csv").open()) if r["q"] == "1"]
    assert {(r["run"], r["relative_increase"], r["note"].startswith(ZERO_OPT)) for r in rows if r["seed"] == "0"} == {
        ("a0", "", True), ("b0", "", True)}
    assert all(r["relative_increase"] and not r["note"] for r in rows if r["seed"] != "0")


def test_run_dir_without_summary_is_a_warning(trained, tmp_path, capsys):
    """A run killed in its first epoch (config.json, no summary.json) is listed, not silently left out."""
    import shutil

    root = trained["root"][0]
    killed = tmp_path / "runs" / "killed-in-epoch-1"
    killed.mkdir(parents=True)
    shutil.copy(trained["runs"][0] / "config.json", killed / "config.json")
    for p in trained["runs"]:
        shutil.copytree(p, tmp_path / "runs" / p.name)
    out = tmp_path / "report"
    assert cli_main([str(tmp_path / "runs"), str(root / "opt"), "--out", str(out)]) == 0
    warning = next(w for w in (out / "report.md").read_text().splitlines() if "killed-in-epoch-1" in w)
    assert warning.startswith("- ") and "no summary.json" in warning
    assert "killed-in-epoch-1" in capsys.readouterr().out
    # given by itself, such a directory is found (no "no such run directory"), and alone there is nothing to report
    with pytest.raises(ValueError, match="no anytime run"):
        cli_main([str(killed), "--out", str(out)])


@pytest.mark.parametrize("summary", [
    "[]",
    '{"exit_units": [0], "exit_macs": [1], "errors": [], "num_units": 3, "config": {}}',
    '{"exit_units": "ab", "exit_macs": [1], "errors": {}, "num_units": 3, "config": {}}',
    '{"exit_units": [0, 1], "exit_macs": [1], "errors": {}, "num_units": 3, "config": {}}',
    '{"exit_units": [0], "exit_macs": [1], "errors": {"test": [0.1, 0.2]}, "num_units": 3, "config": {}}',
    '{"exit_units": [0], "exit_macs": [1], "errors": {"test": ["x"]}, "num_units": 3, "config": {}}',
    '{"exit_units": [0], "exit_macs": [1], "errors": {"test": [0.1]}, "num_units": "3", "config": {}}',
    '{"exit_units": [0], "exit_macs": [1], "errors": {"test": [0.1]}, "num_units": 3, "config": [1]}',
    '{"exit_units": [0], "exit_macs": [1], "errors": {"test": [0.1]}, "num_units": 3, "config": {}, "epochs": null}',
    '{"exit_units": [0], "exit_macs": [1]',
])
def test_malformed_summary_is_refused_naming_the_file(tmp_path, summary):
    from adaptive_weights.errors import RefusedError

    (tmp_path / "summary.json").write_text(summary)
    with pytest.raises(RefusedError, match=f"{tmp_path}/summary.json"):
        load_runs([tmp_path])


@pytest.mark.parametrize("config", ['{"config": ', "[1, 2]", '{"config": {"model.n": "three"}}'])
def test_malformed_config_json_is_refused_naming_the_file(tmp_path, config):
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.runs import load_run_config

    (tmp_path / "config.json").write_text(config)
    with pytest.raises(RefusedError, match="config.json"):
        load_run_config(tmp_path)
    # a summary without its own config falls back to config.json, with the same refusal
    (tmp_path / "summary.json").write_text('{"exit_units": [0], "exit_macs": [1], "errors": {}, "num_units": 3}')
    with pytest.raises(RefusedError, match="config.json"):
        load_runs([tmp_path])


@pytest.mark.parametrize("row", ['{"epoch": 1', "[1, 2]"])
def test_malformed_metrics_row_is_refused_naming_the_file(tmp_path, row):
    from adaptive_weights.errors import RefusedError
    from adaptive_weights.logging import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n' + row + "\n")
    with pytest.raises(RefusedError, match=f"{tmp_path}/metrics.jsonl:2"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_is_completed_is_the_one_rule(tmp_path):
    from adaptive_weights.runs import is_completed

    assert not is_completed(tmp_path)  # no summary yet
    (tmp_path / "summary.json").write_text('{"completed": false}')
    assert not is_completed(tmp_path)
    (tmp_path / "summary.json").write_text('{"completed": true}')
    assert is_completed(tmp_path)


def test_one_exit_numbering_in_every_output(trained):
    """Exits and units count from 0 in the exit table (evaluate, the demo), the report and the EANN output."""
    from adaptive_weights.conventions import EXIT_NUMBERING, MACS_CONVENTION
    from adaptive_weights.eann_cli import eann_report
    from adaptive_weights.evaluate import format_exit_table

    text = format_exit_table([2, 5], [100, 200], {"val": None, "test": [0.5, 0.4]})
    assert [ln.split()[:2] for ln in text.splitlines()[2:4]] == [["0", "2"], ["1", "5"]]
    assert EXIT_NUMBERING in text and MACS_CONVENTION in text
    md = build_report(_hand_runs()).markdown
    assert EXIT_NUMBERING in md and MACS_CONVENTION in md and "| method | seeds | u0 (0.0001M) |" in md
    eann_md = eann_report(trained["eann"]).markdown
    assert EXIT_NUMBERING in eann_md and f"{trained['eann'][0].name} exit 0 |" in eann_md


def test_opt_points_group_by_model_and_unit_mean_over_seeds():
    from adaptive_weights.runs import opt_points

    runs = _hand_runs()  # OPT at units 0, 1, 2 for seeds 0-2, except (seed 2, unit 1)
    p2 = _run("opt2-p2", "optimal@2", 3, [0.4], units=(2,))
    p2.config["model.period"] = 2  # a single exit is the same net whatever the period
    points = opt_points(runs + [p2], "test")  # anytime runs among them are no OPT points
    assert [(p.unit, len(p.runs)) for p in points] == [(0, 3), (1, 2), (2, 4)]
    assert points[2].error == pytest.approx((0.1 * 3 + 0.4) / 4) and points[2].model == "synthetic/resnet n1 c4"
    a2 = next(r for r in runs if r.name == "a2")
    assert [p.unit for p in opt_points(runs, "test", like=a2, seed=2)] == [0, 2]


def test_a_diverged_run_is_listed_and_left_out(trained, tmp_path, capsys):
    """A run that diverged in its first epoch (status 'diverged', errors null) does not stop the report,
    and one that diverged later does not lend its last good epoch's errors to its method: each is
    named under Warnings with the reason."""
    import json
    import shutil

    root = trained["root"][0]
    for p in trained["runs"]:
        shutil.copytree(p, tmp_path / "runs" / p.name)
    for name, seed, epoch, errors in (("diverged-run", 99, 1, {"val": None, "test": None}),
                                      ("diverged-later", 98, 2, None)):
        bad = tmp_path / "runs" / name
        shutil.copytree(trained["runs"][0], bad)
        summary = json.loads((bad / "summary.json").read_text())
        summary.update(status="diverged", completed=False, errors=errors or summary["errors"], name=name,
                       diverged={"epoch": epoch, "step": 3, "reason": "the training loss was non-finite in every step"})
        summary["config"] = {**summary["config"], "train.seed": seed}
        (bad / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "report"
    assert cli_main([str(tmp_path / "runs"), str(root / "opt"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    warning = next(w for w in md.splitlines() if "diverged-run" in w)
    assert "diverged (epoch 1: the training loss was non-finite" in warning and "left out" in warning
    assert "diverged-run" in capsys.readouterr().out
    # every table is that of the report without it (everything above Warnings; the run list below
    # names the copies' paths)
    clean = tmp_path / "clean"
    cli_main([*map(str, trained["runs"]), str(root / "opt"), "--out", str(clean)])
    tables = md.split("## Warnings")[0]
    assert "## (c) Win rates" in tables and tables == (clean / "report.md").read_text().split("## Warnings")[0]


def test_keys_newer_than_a_run_read_as_their_defaults(trained, tmp_path):
    """A run written before objective.* / gradient.* existed groups with today's runs: the absent keys
    read as the defaults it trained with, so --group-by can name them and nothing is reported missing."""
    import json
    import shutil

    root = trained["root"][0]
    for p in trained["runs"]:
        shutil.copytree(p, tmp_path / "runs" / p.name)
    old = tmp_path / "runs" / trained["runs"][0].name
    summary = json.loads((old / "summary.json").read_text())
    summary["config"] = {k: v for k, v in summary["config"].items() if not k.startswith(("objective.", "gradient."))}
    (old / "summary.json").write_text(json.dumps(summary))
    (run,) = load_runs([old])
    assert run.config["objective.name"] == "ce" and run.config["gradient.name"] == "sum"
    out = tmp_path / "report"
    assert cli_main([str(tmp_path / "runs"), str(root / "opt"), "--out", str(out),
                     "--group-by", "scheme.name,objective.name,gradient.name"]) == 0
    md = (out / "report.md").read_text()
    assert "+ce+sum" in md and "objective" not in md.split("## Warnings")[1]


@pytest.mark.parametrize("errors", ["[1.5]", "[-0.1]", "[NaN]", "[Infinity]"])
def test_an_error_outside_0_1_is_refused_naming_the_file(tmp_path, errors):
    """An error is a fraction of the split's images: a summary with 1.5 or NaN was reported as is."""
    (tmp_path / "summary.json").write_text('{"exit_units": [0], "exit_macs": [1], "errors": {"test": ' + errors
                                           + '}, "num_units": 3, "config": {}}')
    with pytest.raises(RefusedError, match=rf"{tmp_path}/summary.json: errors.test=.*between 0 and 1"):
        load_runs([tmp_path])


@pytest.mark.parametrize("seed", ['"x"', "1.5", "true", "-1"])
def test_a_seed_that_is_no_integer_is_refused_naming_the_file(tmp_path, seed):
    """int('x') failed without naming the file, and 1.5 was read as seed 1."""
    (tmp_path / "summary.json").write_text('{"exit_units": [0], "exit_macs": [1], "errors": {"test": [0.1]}, '
                                           '"num_units": 3, "config": {"train.seed": ' + seed + '}}')
    with pytest.raises(RefusedError, match=rf"{tmp_path}/summary.json: train.seed="):
        load_runs([tmp_path])


def test_newlines_and_html_in_a_cell_are_escaped():
    """A run directory named with a newline split the Runs table's row in two, and HTML in a
    strategy's name was rendered by markdown viewers."""
    run = _run("a\nb<i>&", "sieve", 5, [0.5, 0.4, 0.2])
    run.config["strategy.name"] = "<script>x</script>"
    md = build_report([*_hand_runs(), run]).markdown
    line = next(ln for ln in md.splitlines() if "| 5 |" in ln)  # the Runs table's row
    assert line.startswith("| a b&lt;i&gt;&amp; | &lt;script&gt;x&lt;/script&gt; |"), line
    cells = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert not any("<script>" in ln or "<i>" in ln for ln in cells)
    assert any("&lt;script&gt;" in ln for ln in cells if not ln.startswith("| a b"))  # the method's other rows


def test_a_report_redraws_its_figures_from_its_own_tables(tmp_path, capsys):
    """The committed reference reports keep their CSVs, not their runs: `plot report DIR` redraws the
    error-versus-MACs figures from per_exit_errors.csv with the curves the report drew from the runs
    (mean, seed spread, OPT), and leaves the figures whose data no table holds."""
    from adaptive_weights.cli import main
    from adaptive_weights.redraw import report_plots

    rep = build_report(_hand_runs(drop_opt=None), group_by=["scheme.name", "strategy.name"])
    write_report(rep, tmp_path)
    drawn = {p.filename: p for p in rep.plots if p.kind == "error_vs_macs"}
    again = {p.filename: p for p in report_plots(tmp_path)}
    assert list(again) == list(drawn) == ["error_vs_macs_synthetic_resnet_n1_c4.png"]
    for name, p in again.items():
        assert p.title == drawn[name].title and p.step == drawn[name].step
        assert list(p.data) == list(drawn[name].data) == ["const+static", "sieve+static", "OPT"]
        for label, curve in p.data.items():
            want = drawn[name].data[label]
            for got, exp in zip(curve, want, strict=True):
                assert got == pytest.approx(exp), label
        assert p.data["OPT"].low is not None  # three seeds: a band
    (tmp_path / "probability_stack_x.png").write_bytes(b"")
    assert main(["plot", "report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "error_vs_macs_synthetic_resnet_n1_c4.png" in out and "left as they were" in out and "probability_stack_x.png" in out
    with pytest.raises(RefusedError, match="no per_exit_errors.csv"):
        report_plots(tmp_path / "nothing")


def test_a_group_by_key_a_method_lacks_is_left_out_of_its_label():
    """`--group-by strategy.name,strategy.gamma`: eg has a gamma, aann has none and is `aann`, not `aann+-`."""
    runs = _hand_runs()
    for r in runs:
        if r.config["scheme.name"] == "sieve":
            r.config.update({"strategy.name": "eg", "strategy.gamma": 0.1})
        elif r.config["scheme.name"] == "const":
            r.config["strategy.name"] = "aann"
    rep = build_report(runs, group_by=["strategy.name", "strategy.gamma"])
    assert {row["method"] for row in rep.tables["per_exit_errors"]} == {"aann", "eg+0.1", "OPT"}
    assert "+-" not in rep.markdown


def test_a_report_redraws_its_probability_stacks_from_its_own_table(trained, tmp_path, capsys):
    """probability_stacks.csv holds each stack the report drew (the first run's logged sampling
    distribution), so `plot report` redraws the stacks without the runs; a report written without
    that table gets it from its runs (`--runs`), and only from the runs whose per-exit errors are
    the report's."""
    import shutil

    from adaptive_weights.cli import main
    from adaptive_weights.logging import read_metrics
    from adaptive_weights.plots import probability_series

    root = trained["root"][0]
    out = tmp_path / "report"
    assert cli_main([str(root / "runs"), str(root / "opt"), "--group-by", "scheme.name,strategy.name",
                     "--out", str(out)]) == 0
    stack = "probability_stack_sieve+aann_synthetic_resnet_n1_c4.png"
    table = (out / "probability_stacks.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert {r["run"] for r in rows} == {"sieve-aann-s0"}  # the lowest seed; const+static does not sample
    epochs, series = probability_series(read_metrics(root / "runs" / "sieve-aann-s0" / "metrics.jsonl"))
    assert len(rows) == len(epochs) * len(series) == 3
    assert [float(r["probability"]) for r in rows] == pytest.approx([s[0] for s in series])

    (out / stack).unlink()
    capsys.readouterr()
    assert main(["plot", "report", str(out)]) == 0
    assert stack in capsys.readouterr().out and (out / stack).read_bytes()[:4] == b"\x89PNG"

    (out / "probability_stacks.csv").unlink()  # a report written before the table existed
    assert main(["plot", "report", str(out)]) == 0
    assert stack in capsys.readouterr().out.split("left as they were")[1]
    assert main(["plot", "report", str(out), "--runs", str(root / "runs")]) == 0
    assert (out / "probability_stacks.csv").read_text() == table

    impostor = tmp_path / "other" / "sieve-aann-s0"  # same name, another run's numbers
    shutil.copytree(root / "runs" / "sieve-aann-s1", impostor)
    before = (out / "probability_stacks.csv").read_bytes()
    assert main(["plot", "report", str(out), "--runs", str(impostor.parent)]) == 2
    assert "not those of" in capsys.readouterr().err
    assert (out / "probability_stacks.csv").read_bytes() == before
