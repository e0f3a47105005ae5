"""``adaptive-weights pack``: a sweep file's grid as packs in one process, and the GPU campaign's dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_weights.cli import main
from adaptive_weights.tuning.packed import group_packs

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """
data.name: synthetic
data.synthetic_size: 64
data.synthetic_image_size: 8
data.synthetic_classes: 4
model.n: 1
model.c: 4
train.preset: smoke
train.batch_size: 16
train.device: cpu
train.progress: false
train.num_threads: 1
train.seed: [0, 1]
sweep:
  name: tiny
  paper_grid: false
  cases:
    - {scheme.name: [const, sieve], strategy.name: static}
    - {scheme.name: sieve, strategy.name: aann}
    - {scheme.name: [optimal@0, optimal@2], strategy.name: static}
"""


def test_group_packs_keeps_graphs_apart_and_splits_evenly():
    trials = [{"name": f"r{i}", "train.seed": i, "model.c": 4 if i < 5 else 8} for i in range(7)]
    packs = group_packs(trials, 2)
    assert [[t["name"] for t in p] for p in packs] == [["r0", "r1"], ["r2"], ["r3", "r4"], ["r5", "r6"]]
    assert all(len({t["model.c"] for t in p}) == 1 for p in packs)
    assert [len(p) for p in group_packs(trials[:5], 4)] == [2, 3]  # 5 by at most 4: near-equal halves
    with pytest.raises(ValueError, match="--pack"):
        group_packs(trials, 0)


def test_pack_command_trains_resumes_and_keeps_finished_packs(tmp_path, capsys):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(SWEEP)
    args = ["pack", str(sweep), "--pack", "3", "--out", str(tmp_path / "out"), "--no-tensorboard"]
    assert main([*args, "--dry-run"]) == 0
    assert "10 trials in 4 pack(s)" in capsys.readouterr().out
    assert main(args) == 0
    runs = sorted(p.name for p in (tmp_path / "out" / "tiny" / "runs").iterdir())
    assert len(runs) == 10
    for run in runs:
        summary = json.loads((tmp_path / "out" / "tiny" / "runs" / run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["pack"]["size"] <= 3
    capsys.readouterr()
    assert main(args) == 0  # everything finished: nothing trains again
    assert capsys.readouterr().out.count("finished earlier, kept") == 4


def test_gpu_campaign_dry_run(tmp_path):
    """The GPU reference campaign's commands, at tiny sizes on the CPU, end with its report."""
    script = ROOT / "results" / "reports" / "reference" / "cifar10-gpu" / "reproduce.sh"
    done = subprocess.run(["bash", str(script), "--dry-run", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "cifar10-gpu" / "report" / "report.md").read_text()
    assert "The paper's claims, checked" in report
    assert len(list((tmp_path / "cifar10-gpu" / "runs").iterdir())) == 30
