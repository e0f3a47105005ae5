"""Sweeps under real Ray, on loopback only: an undisturbed 4-trial sweep (the reference), a sweep
killed mid-way and resumed (from a sweep folder whose Ray pickles an attacker replaced), and a
two-node cluster with token authentication that loses its worker node mid-trial.

Every Ray process these tests start lives under a private ``RAY_TMPDIR`` (so nothing touches the
machine's ``/tmp/ray`` or another developer's cluster) and is stopped by process id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Ray reads this when it is imported: every Ray process of these tests binds to 127.0.0.1.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc"),
]

EPOCHS = 3
SWEEP_YAML = f"""\
data.name: synthetic
data.synthetic_size: 1024
data.synthetic_image_size: 8
model.n: 1
model.c: 4
train.preset: smoke
train.epochs: {EPOCHS}
train.batch_size: 32
train.progress: false
train.num_threads: 1
train.seed: [0, 1]
strategy.name: [static, eg]
sweep.paper_grid: false
sweep.name: tiny
"""
# Keys of metrics.jsonl that measure time, not what was computed.
_TIMING = ("time/", "throughput/")


@pytest.fixture(scope="module")
def ray_tmp() -> Iterator[str]:
    """A short private RAY_TMPDIR (Unix socket paths must stay under ~100 characters)."""
    path = tempfile.mkdtemp(prefix="awr", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = path
    yield path
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweepfile") / "tiny.yaml"
    path.write_text(SWEEP_YAML)
    return path


@pytest.fixture(scope="module")
def reference(sweep_file: Path, ray_tmp: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """An undisturbed sweep on the in-process Ray: the results every disturbed sweep must equal."""
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    out = tmp_path_factory.mktemp("reference")
    outcome = run_sweep(load_sweep(sweep_file), out=out, max_concurrent=2, tensorboard=False, verbose=0)
    assert outcome.errored == []
    for trial in Path(outcome.experiment).glob("synthetic-*"):  # every trial ran on loopback
        assert {json.loads(r)["node_ip"] for r in (trial / "result.json").read_text().splitlines()} == {"127.0.0.1"}
    for run in Path(outcome.runs_dir).iterdir():  # the trials share one compile cache of the sweep
        cache = json.loads((run / "config.json").read_text())["config"]["train"]["compile_cache"]
        assert Path(cache).name == "compile-cache" and Path(cache).is_relative_to(out), cache
    return _results(outcome.runs_dir)


def _results(runs_dir: Path) -> dict[str, dict]:
    """Per run: final per-exit errors and every epoch's metrics without the timing keys."""
    out = {}
    for run in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        summary = json.loads((run / "summary.json").read_text())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out[run.name] = {
            "completed": summary["completed"],
            "errors": summary["errors"],
            "rows": [{k: v for k, v in r.items() if not k.startswith(_TIMING)} for r in rows],
        }
    return out


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "adaptive_weights.cli", "sweep", *args, "-q", "--no-tensorboard"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(*pids: int) -> list[int]:
    """``pids`` and every process below them (read from /proc)."""
    tree, out, todo = _children(), [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _iterations(trial_dir: Path) -> int:
    """How many epochs Ray recorded for a trial (lines of its result.json)."""
    path = trial_dir / "result.json"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(_descendants(proc.pid))
        out, _ = proc.communicate()
        raise AssertionError(f"sweep did not finish in {timeout} s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    return out


def test_sweep_runs_every_trial_and_reports_per_epoch_metrics(reference: dict[str, dict]) -> None:
    assert sorted(reference) == ["synthetic-resnet1c4-sieve-eg-s0", "synthetic-resnet1c4-sieve-eg-s1",
                                 "synthetic-resnet1c4-sieve-static-s0", "synthetic-resnet1c4-sieve-static-s1"]
    for name, res in reference.items():
        assert res["completed"], name
        assert [r["epoch"] for r in res["rows"]] == [1, 2, 3]
        last = res["rows"][-1]
        val = res["errors"]["val"]
        assert last["val/err/final"] == val[-1]
        assert last["val/err/mean"] == pytest.approx(sum(val) / len(val))
    # the seed is an axis: two seeds train differently
    assert reference["synthetic-resnet1c4-sieve-eg-s0"]["errors"] != reference["synthetic-resnet1c4-sieve-eg-s1"]["errors"]


def test_killed_sweep_resumes_without_repeating_finished_trials(
        sweep_file: Path, reference: dict[str, dict], ray_tmp: str, tmp_path: Path) -> None:
    out = tmp_path / "sweeps"
    exp = out / "tiny"
    proc = _cli(str(sweep_file), "--out", str(out), "--max-concurrent", "1")

    def finished() -> list[Path]:
        return [d for d in exp.glob("synthetic-*") if _iterations(d) == EPOCHS]

    def midway() -> bool:
        return len(finished()) >= 1 and any(0 < _iterations(d) < EPOCHS for d in exp.glob("synthetic-*"))

    try:
        _wait_for(midway, 120, "one finished trial and one mid-way")
    finally:
        _kill(_descendants(proc.pid))  # the driver, its in-process Ray and every trial worker
        proc.communicate()
    done_before = {d.name: (d / "result.json").read_text() for d in finished()}
    assert 1 <= len(done_before) < 4

    # anyone who can write to the sweep folder replaces every pickle Ray left there
    marker = tmp_path / "pwned"
    crafted = _plant_pickles(exp, marker)
    assert any(p.name == "tuner.pkl" for p in crafted) and any(p.name == "params.pkl" for p in crafted)

    _finish(_cli(str(sweep_file), "--out", str(out), "--resume"), 150)
    assert not marker.exists(), "--resume unpickled a file from the sweep folder"
    for name, text in done_before.items():  # finished trials were not run again
        assert (exp / name / "result.json").read_text() == text, name
    assert _results(exp / "runs") == reference

    # a finished sweep: --report chooses and reports without starting Ray again
    _finish(_cli(str(sweep_file), "--out", str(out), "--report"), 120)
    report = (exp / "report" / "report.md").read_text()
    assert "## Chosen hyper-parameters" in report and "| strategy.name=eg |" in report
    assert (exp / "report" / "win_rates.csv").exists()


class _Payload:
    """Unpickling this writes the marker file: what a crafted pickle in a shared folder would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _plant_pickles(exp: Path, marker: Path) -> list[Path]:
    """Overwrite every pickle Ray keeps outside the trials' checkpoints (tuner.pkl, params.pkl, the
    searcher's and variant generator's state, which Ray pickles even under a .json name)."""
    import pickle

    payload = pickle.dumps(_Payload(marker))
    planted = []
    for path in exp.rglob("*"):
        if path.is_file() and "checkpoint_" not in str(path.relative_to(exp)) and (
                path.suffix == ".pkl" or path.name.startswith(("basic-variant-state", "search_gen_state"))):
            path.write_bytes(payload)
            planted.append(path)
    return planted


# Starts a head node and a worker node (each with its own resources) in a helper process, prints
# their addresses and process ids, and keeps them up until its stdin closes. ``ray start`` cannot do
# this on loopback: a worker node refuses to start with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and binds
# to the network address without it; ``ray.cluster_utils.Cluster`` starts the same processes.
_CLUSTER_HELPER = """
import json, sys
from ray.cluster_utils import Cluster
fast = {"health_check_period_ms": 500, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
cluster = Cluster(initialize_head=True, connect=False, shutdown_at_exit=False, head_node_args={
    "num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False, "_system_config": fast})
worker = cluster.add_node(num_cpus=1, resources={"worker": 1})
pids = lambda node: [p.process.pid for procs in node.all_processes.values() for p in procs]
print(json.dumps({"address": cluster.address, "head": pids(cluster.head_node), "worker": pids(worker)}), flush=True)
sys.stdin.read()
"""


def test_two_node_cluster_survives_losing_its_worker(
        sweep_file: Path, reference: dict[str, dict], ray_tmp: str, tmp_path: Path) -> None:
    # the cluster and the sweep share a token (Ray's token authentication, as docs/sweeps.md sets it up)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **auth}
    helper = subprocess.Popen([sys.executable, "-c", _CLUSTER_HELPER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        info = json.loads(helper.stdout.readline())
        out = tmp_path / "sweeps"
        exp = out / "tiny"
        proc = _cli(str(sweep_file), "--out", str(out), "--address", info["address"], "--max-failures", "3",
                    env_extra=auth)

        def victim() -> str | None:
            """A trial running on the worker node with a checkpoint in storage and epochs to go."""
            for pid in _descendants(*info["worker"]):
                try:
                    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                except OSError:
                    continue
                if cwd.name.startswith("synthetic-") and 0 < _iterations(exp / cwd.name) < EPOCHS:
                    return cwd.name
            return None

        try:
            _wait_for(lambda: victim() is not None, 120, "a trial mid-way on the worker node")
            killed = victim()
            _kill(_descendants(*info["worker"]))  # the worker node: raylet, agents and trial workers
            _finish(proc, 150)
        finally:
            _kill(_descendants(proc.pid))
        rows = [json.loads(line) for line in (exp / killed / "result.json").read_text().splitlines()]
        assert rows[-1]["resumed_from_epoch"] >= 1  # restarted from its last checkpoint, not from scratch
        assert {r["node_ip"] for r in rows} == {"127.0.0.1"}
        assert _results(exp / "runs") == reference
    finally:  # stop everything this test started, by process id
        _kill(_descendants(helper.pid))
        helper.communicate()
