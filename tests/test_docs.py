"""The documentation cannot rot: every Python block of the pages that promise to run is executed,
in order, in one namespace (a fresh working directory, so their run directories land there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# pages whose every ```python block is a runnable example (other pages hold fragments)
RUNNABLE = ["docs/python-api.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.M | re.S)


@pytest.mark.parametrize("page", RUNNABLE)
def test_every_python_block_runs(page, tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page} block {i + 1}", "exec"), namespace)
        except Exception as err:  # name the block, not only the line
            raise AssertionError(f"{page}, python block {i + 1} failed: {err!r}\n{block}") from err
