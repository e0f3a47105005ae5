"""Searchers on the in-process Ray (loopback only): every socket Ray listens on is bound to
127.0.0.1; a random search and an Optuna search over a ``loguniform`` range, each followed by
``--report``; the varying keys in Ray's table, its dataframe and TensorBoard's HParams. One Ray for
the module, three tiny 1-epoch trials per sweep.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc"),
]

SEARCH_YAML = """\
data.name: synthetic
data.synthetic_size: 128
data.synthetic_image_size: 8
model.n: 1
model.c: 4
train.preset: smoke
train.epochs: 1
train.batch_size: 32
train.progress: false
strategy.name: eg
strategy.gamma: {{loguniform: [0.01, 0.5]}}
sweep:
  name: {name}
  search: {search}
  num_samples: 3
  paper_grid: false
"""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """The sweep's own in-process Ray (adaptive_weights.tuning.cluster.init_local_ray) under a private RAY_TMPDIR."""
    from adaptive_weights.tuning.cluster import init_local_ray

    tmp = tempfile.mkdtemp(prefix="aws", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    import ray

    init_local_ray(verbose=0, num_cpus=2)
    try:
        yield
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            tree.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def _listening(pids: list[int]) -> list[tuple[int, str]]:
    """(pid, local address) of every TCP socket in LISTEN state and every bound UDP socket of ``pids``."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes and (listen_state is None or cols[3] == listen_state):
                found.append((inodes[cols[9]], _address(cols[1])))
    return found


def _address(hex_addr: str) -> str:
    import ipaddress
    import socket
    import struct

    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16)))
    else:  # /proc prints an IPv6 address as four little-endian 32-bit words
        v6 = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        ip = str(v6.ipv4_mapped or v6)  # ::ffff:127.0.0.1 is loopback too
    return f"{ip}:{int(port, 16)}"


def _hparams(tb_dir: Path) -> dict[str, float | str]:
    """The hyper-parameters TensorBoard's HParams view shows for a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.number_value if v.HasField("number_value") else v.string_value for k, v in info.hparams.items()}


def test_in_process_ray_listens_on_loopback_only(local_ray: None) -> None:
    import ray

    assert ray.is_initialized()
    sockets = _listening(_descendants(os.getpid()))
    assert len({pid for pid, _ in sockets}) >= 2, sockets  # at least the GCS and the raylet
    assert [s for s in sockets if not s[1].startswith("127.0.0.1:")] == [], sockets


@pytest.mark.parametrize("search", ["random", "optuna", "hyperopt"])
def test_search_sweep_samples_the_range_and_reports(local_ray: None, search: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    if search != "random":
        pytest.importorskip(search)
    from adaptive_weights._io import read_json
    from adaptive_weights.tuning.cli import cli_main
    from adaptive_weights.tuning.launcher import run_sweep
    from adaptive_weights.tuning.sweepfile import load_sweep

    path = tmp_path / f"{search}.yaml"
    path.write_text(SEARCH_YAML.format(name=f"s-{search}", search=search))
    out = tmp_path / "sweeps"
    outcome = run_sweep(load_sweep(path), out=out, verbose=2 if search == "random" else 0)
    assert outcome.errored == [] and outcome.unfinished == []
    if search == "random":  # Ray's own progress table shows the sampled key, and no hint at Ray's folder
        printed = capsys.readouterr().out
        assert any("Trial name" in line and "strategy.gamma" in line for line in printed.splitlines()), printed
        assert "To visualize your results with TensorBoard" not in printed
    assert len(outcome.run_dirs) == 3 and len({p.name for p in outcome.run_dirs}) == 3
    gammas = []
    for run in outcome.run_dirs:
        cfg = read_json(run / "summary.json")["config"]
        assert run.name == cfg["name"] and run.name.startswith("synthetic-resnet1c4-sieve-eg-gamma")
        assert 0.01 <= cfg["strategy.gamma"] <= 0.5
        gammas.append(cfg["strategy.gamma"])
        assert _hparams(run / "tb") == {"strategy.gamma": cfg["strategy.gamma"]}, run
    assert len(set(gammas)) == 3
    # Ray's result table holds the real keys
    df = outcome.dataframe
    assert sorted(df["config/strategy.gamma"]) == sorted(gammas)

    assert cli_main([str(path), "--out", str(out), "--report", "-q"]) == 0  # a finished sweep: no Ray
    report = (out / f"s-{search}" / "report" / "report.md").read_text()
    assert "## Chosen hyper-parameters" in report and "| strategy.name=eg |" in report
