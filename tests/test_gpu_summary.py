"""benchmarks/gpu_summary.py: a suite's parts become the summary (what ran, what was skipped) and
the docs' figures block is rewritten mechanically, nothing else in the file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_summary():
    spec = importlib.util.spec_from_file_location("gpu_summary", ROOT / "benchmarks" / "gpu_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parts(tmp_path: Path) -> Path:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "stages.tsv").write_text("steps9\tok\t95\t120\nprojection\ttimeout\t80\t80\ncache\tskipped\t0\t110\n")
    (parts / "commit.txt").write_text("0123456789abcdef\n")
    env = {"device": "NVIDIA H200", "torch": "2.11.0", "cuda": "13.0", "cudnn": 91000, "date": "2026-12-04 20:00 UTC"}
    row = {"img_s": 2600.0, "step_ms": 49.2, "vs_fp32_eager": 1.0, "warmup_s": 3.0, "syncs_per_step": 0,
           "peak_mem_mib": 400.0, "min": 2500.0, "max": 2700.0, "strategy_compiled": False,
           "kernels_per_step": 1500.0, "aten_ops_per_step": 2100.0, "casts_per_step": 0.0,
           "host_ms_per_step_profiled": 45.0}
    fast = {**row, "img_s": 11000.0, "step_ms": 11.6, "vs_fp32_eager": 4.23, "warmup_s": 60.0}
    del fast["kernels_per_step"]
    (parts / "step_n9.json").write_text(json.dumps({**env, "steps": {"n=9": {"fp32 eager": row, "fast": fast}}}))
    return parts


def test_the_summary_says_what_ran_and_what_was_skipped(gpu_summary, tmp_path):
    text = "\n".join(gpu_summary.summary(_parts(tmp_path)))
    assert "skipped: cache" in text and "cut short or failed: projection (timeout)" in text
    assert "pytest gpu (fast): no report" in text
    assert "| 9 | fast | 11,000 | 11.60 | 4.23 | 60.0 | - | - | - |" in text
    assert "NVIDIA H200, torch 2.11.0" in text and "at commit 0123456789" in text


def test_docs_block_is_rewritten_and_nothing_else(gpu_summary, tmp_path):
    doc = tmp_path / "gpu.md"
    doc.write_text(f"# GPU\n\nbefore\n\n{gpu_summary.BEGIN}\nold figures\n{gpu_summary.END}\n\nafter\n")
    gpu_summary.main([str(_parts(tmp_path)), "--docs", str(doc)])
    text = doc.read_text()
    assert "old figures" not in text and "| 9 | fp32 eager | 2,600 |" in text
    assert text.startswith("# GPU\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    gpu_summary.main([str(tmp_path / "parts"), "--docs", str(doc)])  # again: the same file
    assert doc.read_text() == text


def test_a_doc_without_the_block_is_refused(gpu_summary, tmp_path):
    doc = tmp_path / "gpu.md"
    doc.write_text("# GPU\n")
    with pytest.raises(SystemExit, match="no <!-- gpu-figures:begin -->"):
        gpu_summary.main([str(_parts(tmp_path)), "--docs", str(doc)])
    assert doc.read_text() == "# GPU\n"


def test_the_committed_gpu_page_has_the_block(gpu_summary):
    text = (ROOT / "docs" / "gpu.md").read_text()
    assert text.count(gpu_summary.BEGIN) == 1 and text.count(gpu_summary.END) == 1
