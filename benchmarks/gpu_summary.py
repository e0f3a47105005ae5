"""One `gpu_suite.sh` run as markdown: what ran and what was skipped, then every measured figure.

    python benchmarks/gpu_summary.py PARTS_DIR                    # print the summary
    python benchmarks/gpu_summary.py PARTS_DIR --docs docs/gpu.md # also rewrite the docs' figures

PARTS_DIR holds the stages' files (`gpu_suite.sh` packs them into `parts.tgz`; unpack it first).
With `--docs`, the block between `<!-- gpu-figures:begin -->` and `<!-- gpu-figures:end -->` in
that file is replaced by the figures (date, device, torch, commit, command), so the next measurement
updates the documentation mechanically; a file without the markers is refused.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from adaptive_weights._io import atomic_write_text, read_json

BEGIN, END = "<!-- gpu-figures:begin -->", "<!-- gpu-figures:end -->"
FILES = ("step_n9.json", "projection.json", "packed.json", "strategies_eager.json", "strategies_compiled.json",
         "compile_cache.json", "runs.json", "step_n3.json", "data_wait.json")


def load(parts: Path, name: str) -> dict:
    """A stage's JSON file; {} for a stage that wrote none (skipped, cut short) or a broken one."""
    try:
        return read_json(parts / name)
    except (OSError, ValueError):
        return {}


def stages(parts: Path) -> list[list[str]]:
    """Rows of stages.tsv: name, state (ok, timeout, exit-N, skipped), seconds, limit."""
    try:
        return [line.split("\t") for line in (parts / "stages.tsv").read_text().splitlines() if line.strip()]
    except OSError:
        return []


def pytest_line(parts: Path, name: str, label: str) -> str:
    try:
        root = ET.parse(parts / name).getroot()
    except (OSError, ET.ParseError):
        return f"{label}: no report"
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return f"{label}: no report"
    failed = [f"{c.get('classname', '').rsplit('.', 1)[-1]}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    counts = ", ".join(f"{k} {suite.get(k)}" for k in ("tests", "failures", "errors", "skipped"))
    return f"{label}: {counts} in {float(suite.get('time', 0)):.0f} s" + (f"; failed: {', '.join(failed)}" if failed else "")


def figures(parts: Path) -> list[str]:
    """The measured figures as markdown lines (what the docs carry)."""
    f = {name: load(parts, name) for name in FILES}
    env = next((v.get("environment", v) for v in f.values() if "device" in v.get("environment", v)), {})
    try:
        commit = (parts / "commit.txt").read_text().strip()[:10]
    except OSError:
        commit = ""
    lines = [f"Measured {env.get('date', '?')} on {env.get('device', '?')}, torch {env.get('torch')}, "
             f"CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}; `bash benchmarks/gpu_suite.sh`"
             + (f" at commit {commit}" if commit else "") + "."]
    steps = {**f["step_n9.json"].get("steps", {}), **f["step_n3.json"].get("steps", {})}
    if steps:
        lines += ["", "Training step of the paper's CIFAR model (c=16, batch 128, strategy eg), by mode:", "",
                  "| n | mode | img/s | ms/step | x fp32 eager | warm-up s | kernels/step | casts/step | host ms/step |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for n, rows in steps.items():
            for mode, r in rows.items():
                if "error" in r:
                    lines.append(f"| {n[2:]} | {mode} | failed: {r['error'][:80]} | | | | | | |")
                    continue
                ratio = "-" if r.get("vs_fp32_eager") is None else f"{r['vs_fp32_eager']:.2f}"
                k = (f"{r['kernels_per_step']:.0f} | {r['casts_per_step']:.0f} | {r['host_ms_per_step_profiled']:.1f}"
                     if "kernels_per_step" in r else "- | - | -")
                lines.append(f"| {n[2:]} | {mode} | {r['img_s']:,.0f} | {r['step_ms']:.2f} | {ratio} | "
                             f"{r['warmup_s']:.1f} | {k} |")
    if pr := f["projection.json"].get("projection"):
        s = pr["settings"]
        lines += ["", f"A run without flags (`train.speed {pr['speed']}`: compile {s['compile']}, channels_last "
                      f"{s['channels_last']}, cudnn.benchmark {s['cudnn_benchmark']}, fused SGD {s['fused_sgd']}), n=9 on "
                      f"{pr['images']:,} images per epoch: epochs of {', '.join(f'{e:.1f}' for e in pr['epoch_s'])} s "
                      f"(the first includes compiling or loading the compiled step), {pr['eval_10k_s']:.2f} s per "
                      f"10,000-image evaluation: **300 epochs in about {pr['projected_300_epochs_min']:.0f} minutes**."]
    if rows := f["packed.json"].get("rows"):
        lines += ["", "Packed runs (n=9 members, batch 128 each; one member alone by the library's step):", "",
                  "| mode | N | img/s in all | x one alone | ms/step | strategies' share (batched) | per member | peak MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            peak = "-" if r.get("peak_mib") is None else f"{r['peak_mib']:,.0f}"
            lines.append(f"| {r['mode']} | {r['members']} | {r['img_s']:,.0f} | {r['ratio']:.2f} | {r['ms_per_step']:.1f} "
                         f"| {100 * r['strategy_share']:.1f}% | "
                         + ("-" if r.get("strategy_share_per_member") is None else f"{100 * r['strategy_share_per_member']:.1f}%")
                         + f" | {peak} |")
    for name in ("strategies_eager.json", "strategies_compiled.json"):
        s = f[name]
        if s.get("strategies"):
            shares = {k: v["K=27"]["share"] for k, v in s["strategies"].items() if "K=27" in v}
            worst = max(shares, key=shares.get)
            lines += ["", f"Strategies ({'eager' if s['compile'] == 'none' else 'compiled ' + s['compile']}), share of "
                          f"an n=3 training step at K=27: worst {worst} {100 * shares[worst]:.2f}%, median "
                          f"{100 * sorted(shares.values())[len(shares) // 2]:.2f}% (target < 1% compiled)."]
        if ops := s.get("ops_per_step"):
            lines.append("Kernels per eager strategy step (K=27): "
                         + ", ".join(f"{n} {v['K=27']['kernels']}" for n, v in ops.items() if "K=27" in v) + ".")
    if runs := f["compile_cache.json"].get("runs"):
        first, second = runs.get("first (compiles)", {}), runs.get("second (same cache)", {})
        if first and second:
            lines += ["", f"Compile cache ({f['compile_cache.json']['config']['train.compile']}): first epoch "
                          f"{first['first_epoch_s']:.1f} s in the process that compiles, {second['first_epoch_s']:.1f} s "
                          f"in the next one (warm epoch {second['warm_epoch_s']:.1f} s; target: at most 10 s over)."]
    if pk := f["runs.json"].get("packed"):
        if "error" not in pk:
            lines += ["", f"{pk['procs']} processes sharing the GPU: {pk['packed_total_img_s']:,.0f} img/s in all, "
                          f"{pk['vs_alone']:.2f}x one alone."]
    return lines


def summary(parts: Path) -> list[str]:
    rows = stages(parts)
    skipped = [r[0] for r in rows if r[1] == "skipped"]
    cut = [f"{r[0]} ({r[1]})" for r in rows if r[1] not in ("ok", "skipped")]
    lines = ["## GPU suite", "", "| stage | state | s | limit s |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines += ["", "skipped: " + (", ".join(skipped) or "nothing"), "cut short or failed: " + (", ".join(cut) or "nothing"),
              pytest_line(parts, "pytest_fast.xml", "pytest gpu (fast)"),
              pytest_line(parts, "pytest_compiled.xml", "pytest gpu (compiles)"), ""]
    return lines + figures(parts)


def update_docs(doc: Path, lines: list[str]) -> None:
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"gpu_summary: {doc} has no {BEGIN} ... {END} block to replace")
    block = "\n".join([BEGIN, *lines, END])
    atomic_write_text(doc, re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", type=Path, help="the suite's parts directory (parts.tgz unpacked)")
    p.add_argument("--docs", type=Path, default=None, help="rewrite this file's gpu-figures block")
    args = p.parse_args(argv)
    print("\n".join(summary(args.parts)))
    if args.docs:
        update_docs(args.docs, figures(args.parts))
        print(f"\n{args.docs}: figures updated")


if __name__ == "__main__":
    main(sys.argv[1:])
