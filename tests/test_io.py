"""Atomic writes: strict JSON, stale temp files of a killed writer removed, the umask's file mode."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from adaptive_weights._io import atomic_write, atomic_write_json
from adaptive_weights.logging import RunLogger


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_files_are_strict_non_finite_values_become_null(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"nan": float("nan"), "inf": float("inf"), "ninf": -np.inf,
                                            "tensor": torch.tensor([1.0, float("nan")]), "np": np.float32("inf"),
                                            "ok": [0.5, 2, True, None, "x"]})
    got = _strict_json((tmp_path / "s.json").read_text())
    assert got == {"nan": None, "inf": None, "ninf": None, "tensor": [1.0, None], "np": None,
                   "ok": [0.5, 2, True, None, "x"]}


def test_metrics_rows_are_strict_json(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log_epoch({"epoch": 1, "step": 4, "lr": 0.1, "train/loss/exit_00": float("nan"),
                      "train/loss/exit_01": float("-inf")})
    logger.close()
    (row,) = [_strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["train/loss/exit_00"] is None and row["train/loss/exit_01"] is None and row["lr"] == 0.1


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from adaptive_weights._io import atomic_write

    def write(f):
        f.write(b"half of a file")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    atomic_write(sys.argv[1], write)
""")


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "summary.json"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -9, killed.stderr
    (left,) = [p for p in tmp_path.iterdir() if p.name != target.name]
    assert left.name.startswith(".summary.json.") and left.read_bytes() == b"half of a file"
    # a temp file of the same target being written right now (its writer holds the lock) is kept
    live = tmp_path / ".summary.json.live.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        atomic_write_json(target, {"epochs": 1})
        assert not left.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".summary.json.live.tmp", "summary.json"]
    assert json.loads(target.read_text()) == {"epochs": 1}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_umasks_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "result.csv", lambda f: f.write(b"a,b\n"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
