"""`train.compile_cache`: a second process reuses the first one's compiled artefacts, a cache left
corrupt by a killed process does not break the next one, and a directory a stranger could write is
refused before the run writes anything."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from adaptive_weights.compile_cache import check_cache_dir
from adaptive_weights.config import RunConfig
from adaptive_weights.errors import RefusedError
from adaptive_weights.training import train

# one process: compile a small function with inductor through the library's cache switch, print its
# result and inductor's FX-graph cache counters
_COMPILE = """
import json, sys, torch
from torch._dynamo.utils import counters
from adaptive_weights.compile_cache import use_compile_cache
use_compile_cache(sys.argv[1], "default")
f = torch.compile(lambda x: torch.relu(x * 3.0 + 1.0).sum(dim=0), backend="inductor")
out = f(torch.linspace(-2.0, 2.0, 12).reshape(3, 4))
print(json.dumps({"out": out.tolist(), "hit": counters["inductor"]["fxgraph_cache_hit"],
                  "miss": counters["inductor"]["fxgraph_cache_miss"]}))
"""


def _compile_in_fresh_process(cache) -> dict:
    done = subprocess.run([sys.executable, "-c", _COMPILE, str(cache)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="inductor needs a C compiler on the CPU")
def test_a_second_process_reuses_the_cache_and_survives_a_corrupt_one(tmp_path):
    cache = tmp_path / "sweep" / "compile-cache"
    first = _compile_in_fresh_process(cache)
    assert first["miss"] >= 1 and first["hit"] == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # made private: nobody else can look inside
    second = _compile_in_fresh_process(cache)
    assert second["hit"] >= 1 and second["miss"] == 0 and second["out"] == first["out"]
    # a process killed while writing: every entry cut short, and a stray temporary file
    entries = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert entries
    for p in entries:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    (entries[0].parent / f".{os.getpid()}.0.tmp").write_bytes(b"half a pickle")
    third = _compile_in_fresh_process(cache)
    assert third["out"] == first["out"]  # compiled again, same numbers


def test_a_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RefusedError, match=r"writable by other users \(mode 0o777\).*chmod go-w"):
        check_cache_dir(shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "private", target_is_directory=True)
    (tmp_path / "private").mkdir(mode=0o700)
    with pytest.raises(RefusedError, match="is a symbolic link"):
        check_cache_dir(link)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RefusedError, match="cannot make or read the directory .*file.: File exists"):
        check_cache_dir(tmp_path / "file")
    assert check_cache_dir(tmp_path / "new" / "cache") == tmp_path / "new" / "cache"


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="giving a directory away needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(RefusedError, match="belongs to user id 12345"):
        check_cache_dir(theirs)


def test_a_refused_cache_writes_no_run_directory(tiny_flat, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o757)
    cfg = RunConfig.from_flat({**tiny_flat, "train.compile": "default", "train.compile_cache": str(shared)})
    with pytest.raises(RefusedError, match="train.compile_cache"):
        train(cfg, out_dir=tmp_path / "run", tensorboard=False)
    assert not (tmp_path / "run").exists()


def test_an_eager_run_does_not_touch_the_cache(tiny_flat, tmp_path):
    cfg = RunConfig.from_flat({**tiny_flat, "train.compile_cache": str(tmp_path / "cache")})
    train(cfg, out_dir=tmp_path / "run", tensorboard=False)
    assert not (tmp_path / "cache").exists()
