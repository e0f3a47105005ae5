"""The numbers of one `gpu_suite.sh` run, short, as markdown (the end of a run's output is what the
device tool's reply carries): every ratio against issue 10's targets, from the stages' JSON files.

    python benchmarks/gpu_summary.py OUT_DIR
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from adaptive_weights._io import read_json


def load(out: Path, name: str) -> dict:
    """A stage's JSON file; {} for a stage that wrote none (skipped, cut short) or a broken one."""
    try:
        return read_json(out / name)
    except (OSError, ValueError):
        return {}


def main(out: Path) -> None:
    files = {name: load(out, name) for name in ("step_n9.json", "step_n3.json", "strategies_eager.json", "runs.json",
                                                "strategies_compiled.json", "data_wait.json")}
    env = next((f for f in files.values() if "device" in f), {})
    print(f"## GPU suite: {env.get('device', '?')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
          f"cuDNN {env.get('cudnn')}, {env.get('date')}")
    try:
        root = ET.parse(out / "pytest_gpu.xml").getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        print("pytest -m gpu: " + ", ".join(f"{k} {suite.get(k)}" for k in ("tests", "failures", "errors", "skipped"))
              + f" in {float(suite.get('time', 0)):.0f} s")
    except (OSError, ET.ParseError, AttributeError):
        print("pytest -m gpu: no report")
    print("\n| n | mode | img/s | ms/step | x fp32 eager | syncs/step | peak MiB | warm-up s |\n" + "|---" * 8 + "|")
    for n, rows in {**files["step_n9.json"].get("steps", {}), **files["step_n3.json"].get("steps", {})}.items():
        for mode, r in rows.items():
            if "error" in r:
                print(f"| {n} | {mode} | {r['error']} |")
                continue
            peak = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:,.0f}"
            ratio = "-" if r.get("vs_fp32_eager") is None else f"{r['vs_fp32_eager']:.2f}"
            print(f"| {n} | {mode} | {r['img_s']:,.0f} | {r['step_ms']:.2f} | {ratio} | {r['syncs_per_step']} "
                  f"| {peak} | {r['warmup_s']:.1f} |")
    for name in ("strategies_eager.json", "strategies_compiled.json"):
        s = files[name]
        if s.get("strategies"):
            worst = {k: max(v[k]["share"] for v in s["strategies"].values() if k in v) for k in
                     next(iter(s["strategies"].values()))}
            loop = max((v["share"] for v in s.get("in_loop_k9", {}).values()), default=None)
            print(f"\nstrategy step ({s['compile']}): worst share of an n=3 step "
                  + ", ".join(f"{k} {100 * v:.2f}%" for k, v in worst.items())
                  + ("" if loop is None else f"; worst in-loop K=9 {100 * loop:+.2f}%") + " (target <= 1% at K=27)")
        if ops := s.get("ops_per_step"):
            print("eager kernels per strategy step (K=27): "
                  + ", ".join(f"{n} {v['K=27']['kernels']}" for n, v in ops.items() if "K=27" in v))
    for loader, r in files["data_wait.json"].get("loaders", {}).items():
        print(f"data: {loader} {r['img_s']:,.0f} img/s, data wait {100 * r['data_wait_share']:.2f}% of a step")
    if "error" in (pk := files["runs.json"].get("packed", {})):
        print(f"packed: {pk['error']}")
    elif pk:
        print(f"packed: {pk['procs']} processes {pk['packed_total_img_s']:,.0f} img/s = {pk['vs_alone']:.2f}x one "
              f"alone ({pk['alone_img_s']:,.0f}) (target >= 2.5x)")
    if pr := files["runs.json"].get("projection"):
        print(f"projection: 300 epochs n=9 ({pr['mode']}, amp {pr['amp']}): {pr['projected_300_epochs_min']:.1f} min "
              f"(target <= 15); epochs {[round(e, 1) for e in pr['epoch_s']]} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
