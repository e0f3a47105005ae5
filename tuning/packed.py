"""``adaptive-weights pack``: a sweep file's grid trained as packs in this process, without Ray.

The trials that can share one computation graph (equal in every key but the run name, the seed,
the scheme, the strategy and the objective) are grouped into packs of at most ``--pack`` members,
split evenly; the packs then train one after another on this machine's device, each member into
``OUT/NAME/runs/<trial name>``, the run directories a Ray sweep writes. Nothing here imports Ray:
this is the path for a GPU box that has only torch and the plotting stack.

Every step resumes: a pack whose members all finished is kept, a pack with checkpoints continues
from them (all members from one common position), a pack not started starts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adaptive_weights._flags import add_quiet
from adaptive_weights._io import atomic_write_json, read_json
from adaptive_weights.errors import RefusedError

from .sweepdir import DEFAULT_OUT, RUNS_DIR
from .sweepfile import SweepSpec, load_sweep, parse_overrides

__all__ = ["group_packs", "run_packed_sweep", "cli_main"]

PACKS_FILE = "packs.json"


def group_packs(trials: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """The trials (resolved flat configs) in packs of at most ``size``: trials that can share a graph
    together, each group split into as few packs as ``size`` allows, of near-equal sizes; the sweep's
    order is kept within and across groups. The one grouping rule: ``adaptive-weights pack`` and the
    packed Ray sweep (:mod:`adaptive_weights.tuning.packsweep`) both use it."""
    from adaptive_weights.packing import member_key

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RefusedError(f"--pack: expected an int >= 1 (members per pack), got {size!r}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        shared = json.dumps({k: v for k, v in sorted(trial.items()) if not member_key(k)}, sort_keys=True)
        groups.setdefault(shared, []).append(trial)
    packs = []
    for members in groups.values():
        count = math.ceil(len(members) / size)
        bounds = [round(i * len(members) / count) for i in range(count + 1)]
        packs += [members[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return packs


def _state(run_dirs: Sequence[Path]) -> str:
    """``done`` (every member finished or diverged), ``started`` (checkpoints to resume) or ``new``."""
    def finished(d: Path) -> bool:
        try:
            return read_json(d / "summary.json").get("status") in ("completed", "diverged")
        except (OSError, ValueError):
            return False

    if all(finished(d) for d in run_dirs):
        return "done"
    if any((d / "checkpoints" / "last.pt").exists() for d in run_dirs):
        return "started"
    return "new"


def run_packed_sweep(spec: SweepSpec, *, out: str | Path = DEFAULT_OUT, pack_size: int = 16,
                     tensorboard: bool = True, quiet: bool = False) -> list[Path]:
    """Train every trial of the grid ``spec`` in packs (see the module docstring); returns the run
    directories in sweep order. A pack is resumed where it stopped."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.packing import check_pack, train_packed

    if spec.search != "grid":
        raise RefusedError(f"sweep.search: {spec.search!r} proposes one configuration at a time; packing a "
                           "sweep locally needs the whole grid up front (sweep.search: grid)")
    packs = group_packs(spec.trials, pack_size)
    configs = [[RunConfig.from_flat(t) for t in pack] for pack in packs]
    for members in configs:
        check_pack(members)  # every pack refused before any is trained
    root = Path(out) / spec.name
    runs = root / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / PACKS_FILE, {"sweep": spec.name, "pack_size": pack_size,
                                          "packs": [[t["name"] for t in pack] for pack in packs]})
    run_dirs = []
    for i, members in enumerate(configs, 1):
        dirs = [runs / cfg.name for cfg in members]
        run_dirs += dirs
        state = _state(dirs)
        label = f"pack {i}/{len(configs)} ({len(members)} runs)"
        if state == "done":
            if not quiet:
                print(f"{label}: finished earlier, kept")
            continue
        t0 = time.perf_counter()
        if not quiet:
            print(f"{label}: {'resumed' if state == 'started' else 'started'}", flush=True)
        members = [_quiet(cfg) for cfg in members] if quiet else members
        summaries = train_packed(members, out_dirs=dirs, resume=state == "started", tensorboard=tensorboard)
        if not quiet:
            diverged = [s["name"] for s in summaries if s.get("status") == "diverged"]
            print(f"{label}: done in {time.perf_counter() - t0:.0f} s"
                  + (f"; diverged: {', '.join(diverged)}" if diverged else ""), flush=True)
    return run_dirs


def _quiet(cfg: Any) -> Any:
    from adaptive_weights.config import RunConfig

    return RunConfig.from_flat({**cfg.to_flat(), "train.progress": False})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adaptive-weights pack", description=__doc__.split("\n\n")[0],
                                epilog="Any dotted config key given as a flag replaces the file's value, read as "
                                       "YAML (as for adaptive-weights sweep). See docs/packed-runs.md.")
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="a sweep file (grid search)")
    p.add_argument("--pack", type=int, default=None,
                   help="members per pack, at most (default: the file's sweep.pack where it is above 1, else 16)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results go to OUT/NAME/runs (default {DEFAULT_OUT})")
    p.add_argument("--name", help="sweep name (default: sweep.name in the file, else the file's stem)")
    p.add_argument("--no-tensorboard", action="store_true", help="runs write no TensorBoard events")
    p.add_argument("--dry-run", action="store_true", help="validate and list the packs only")
    add_quiet(p)
    return p


def cli_main(argv: Sequence[str]) -> int:
    """``adaptive-weights pack SWEEP.yaml [--pack N] [--out DIR] [--dry-run]``."""
    args, extra = _parser().parse_known_args(list(argv))
    spec = load_sweep(args.sweep_file, name=args.name, overrides=parse_overrides(extra))
    if args.pack is None:  # sweep.pack is the same option as for adaptive-weights sweep
        args.pack = spec.pack if spec.pack > 1 else 16
    if args.dry_run:
        packs = group_packs(spec.trials, args.pack)
        print(f"{spec.describe()} in {len(packs)} pack(s) of at most {args.pack}")
        for i, pack in enumerate(packs, 1):
            print(f"  pack {i}: {', '.join(t['name'] for t in pack)}")
        return 0
    run_dirs = run_packed_sweep(spec, out=args.out, pack_size=args.pack, tensorboard=not args.no_tensorboard,
                                quiet=args.quiet)
    diverged = [d.name for d in run_dirs if read_json(d / "summary.json").get("status") == "diverged"]
    print(f"{len(run_dirs)} run directories in {Path(args.out) / spec.name / RUNS_DIR}")
    if diverged:
        print(f"error: {len(diverged)} run(s) diverged: {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0
