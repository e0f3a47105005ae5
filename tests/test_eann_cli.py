"""``adaptive-weights eann``: the curve, OPT+ and inflation factors printed and written from run dirs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from adaptive_weights.config import RunConfig
from adaptive_weights.eann import cost_inflation, eann_curve, members_from_run_dirs, opt_plus_curve
from adaptive_weights.eann_cli import cli_main, eann_report
from adaptive_weights.training import train

TINY = {
    "data.name": "synthetic", "data.synthetic_size": 64, "data.synthetic_image_size": 8,
    "model.c": 4, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 32,
    "train.progress": False, "train.num_threads": 1, "scheme.name": "sieve", "strategy.name": "aann",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[Path]]:
    """Members n = 1, 2, 4 (full costs about 2x apart) and OPT at the last unit of n = 1 and n = 2."""
    root = tmp_path_factory.mktemp("eann")
    members, opts = [], []
    for n in (1, 2, 4):
        members.append(root / f"member-n{n}")
        train(RunConfig.from_flat({**TINY, "model.n": n}), out_dir=members[-1], tensorboard=False)
    for n in (1, 2):
        opts.append(root / "opt" / f"opt-n{n}")
        train(RunConfig.from_flat({**TINY, "model.n": n, "scheme.name": "optimal@-1", "strategy.name": "static"}),
              out_dir=opts[-1], tensorboard=False)
    return {"members": members, "opt": opts, "root": [root]}


def test_cli_prints_and_writes_the_curve(runs, tmp_path, capsys):
    out = tmp_path / "eann"
    # OPT runs are found below a folder; the anytime members living beside them are ignored
    assert cli_main([*map(str, runs["members"]), "--opt", str(runs["root"][0]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    members = members_from_run_dirs(runs["members"])
    curve = eann_curve(members)
    from adaptive_weights._io import read_json

    points = [(read_json(p / "summary.json")["exit_macs"][0], read_json(p / "summary.json")["errors"]["test"][0])
              for p in runs["opt"]]
    inflation = cost_inflation(curve, opt_plus_curve(points))

    def shown(x: float) -> str:  # how the CLI prints a factor, an unreachable error included
        return "inf (the EANN never reaches that error)" if math.isinf(x) else f"{x:.2f}x"

    assert f"worst {shown(inflation.worst)}, average {shown(inflation.average)}" in text
    assert "member-n1 exit 0" in text and "![" not in text
    assert {p.name for p in out.iterdir()} == {"eann.md", "eann.csv", "opt_plus.csv", "eann.png"}
    rows = list(csv.DictReader((out / "eann.csv").open()))
    assert [float(r["macs"]) for r in rows] == list(curve.costs)
    assert [float(r["error"]) for r in rows] == list(curve.errors)
    assert [(r["member"], int(r["exit"])) for r in rows] == list(curve.sources)
    # the output changes only when an exit is reached, and exit i of member k is reached at the
    # earlier members' full costs plus its own cost up to exit i
    events = {sum(m.full_cost for m in members[:k]) + c for k, m in enumerate(members) for c in m.exit_costs}
    assert {float(r["macs"]) for r in rows} <= events
    assert float(rows[0]["macs"]) == members[0].exit_costs[0] and rows[0]["member"] == "member-n1"

def test_without_opt_runs_the_comparison_is_na(runs):
    rep = eann_report(runs["members"])
    assert "opt_plus" not in rep.tables
    assert rep.warnings == ["no OPT run on synthetic: OPT+ and the cost-inflation factors are n/a"]
    assert "| n/a |" in rep.markdown


def test_bad_members_are_refused(runs, tmp_path):
    with pytest.raises(ValueError, match="single-exit OPT runs"):
        eann_report([runs["members"][0], runs["opt"][0]])
    with pytest.raises(ValueError, match="no summary.json"):
        cli_main([str(tmp_path)])


def _edited_copy(src: Path, dst: Path, **changes) -> Path:
    import json
    import shutil

    shutil.copytree(src, dst)
    summary = json.loads((dst / "summary.json").read_text())
    summary.update(changes)
    (dst / "summary.json").write_text(json.dumps(summary))
    return dst


def test_a_diverged_member_is_refused_and_an_unfinished_one_noted(runs, tmp_path):
    """A member that diverged after a good epoch kept that epoch's errors and was chained silently (one
    that diverged in epoch 1 was refused as 'train the member with a validation split')."""
    from adaptive_weights.errors import RefusedError

    first = runs["members"][0]
    for name, errors in (("later", None), ("at-once", {"val": None, "test": None})):
        bad = _edited_copy(runs["members"][1], tmp_path / name, status="diverged", completed=False,
                           diverged={"epoch": 2, "step": 3, "reason": "the training loss was non-finite"},
                           **({"errors": errors} if errors else {}))
        with pytest.raises(RefusedError, match=rf"EANN member {name} \(.*\) diverged \(epoch 2: the training loss was "
                                               r"non-finite\); a chain needs every member's final errors"):
            eann_report([first, bad])
    half = _edited_copy(runs["members"][1], tmp_path / "half", completed=False, status="unfinished")
    note = "run half is unfinished (its summary is of epoch 1 of 1); its numbers are provisional"
    rep = eann_report([first, half])
    assert note in rep.warnings and f"*{note}*" in rep.markdown


def test_plot_curves_sit_on_the_chain_cost_axis():
    from adaptive_weights.eann import EannAnalysis, Member, eann_curve, eann_plot_curves

    a = Member("a", (1.0, 2.0), (0.5, 0.3), (0.5, 0.3))
    b = Member("b", (2.0, 4.0), (0.6, 0.1), (0.6, 0.1))
    curve = eann_curve([a, b])  # b's first exit (val 0.6) loses to a's final (0.3): one point at 6 for b's final
    assert list(curve.costs) == [1.0, 2.0, 6.0]
    curves = eann_plot_curves(EannAnalysis([a, b], curve, None, None, []))
    assert curves["EANN"] == ([1.0, 2.0, 6.0], [0.5, 0.3, 0.1])
    assert curves["a"] == ([1.0, 2.0], [0.5, 0.3])
    assert curves["b (from 2e-06M)"] == ([4.0, 6.0], [0.6, 0.1])  # shifted by a's full cost
    short = eann_plot_curves(EannAnalysis([a, b], eann_curve([a]), None, None, []))
    assert short["EANN"] == ([1.0, 2.0, 6.0], [0.5, 0.3, 0.3])  # held until the chain's end
