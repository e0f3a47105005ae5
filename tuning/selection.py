"""Choosing each strategy's hyper-parameters from a sweep: the paper's rule (spec §5.3).

The settings of one strategy are ranked twice on the validation split, by the mean error over the
exits and by the final exit's error (each averaged over seeds, last-epoch values). The chosen
setting is the first one that appears in the top k of *both* rankings as k grows from 1: a setting
that is good early without giving up the final exit. When several settings enter both top-k lists
at the same k, the smaller sum of the two ranks wins, then the lower mean error, then the setting's
text (so the choice never depends on the order the trials finished in).

Selection is done per *group*: the strategy plus every other config key that varies between runs
(data set, model, scheme, ...), except the seed, which is averaged over, and the strategy's own
hyper-parameters, which are what is being chosen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptive_weights.config import EXECUTION_KEYS
from adaptive_weights.errors import RefusedError

__all__ = ["rank_first_common", "SettingScore", "Choice", "score_settings", "select_settings",
           "selection_markdown", "selection_rows", "selection_csv"]

# Keys that never distinguish two settings: where/how a run executes, the seed, the run's name.
_IGNORED_KEYS = {*EXECUTION_KEYS, "train.seed"}


def rank_first_common(scores: Mapping[Hashable, tuple[float, float]]) -> tuple[Hashable, int]:
    """The paper's rule on ``{setting: (mean_error, final_error)}``: the first setting in the top k
    of both rankings as k grows, and that k. Ties as in the module docstring."""
    if not scores:
        raise RefusedError("no settings to choose from")
    keys = list(scores)

    def order(i: int) -> list[Hashable]:
        return sorted(keys, key=lambda s: (scores[s][i], scores[s][1 - i], str(s)))

    by_mean, by_final = order(0), order(1)
    rank_mean = {s: r for r, s in enumerate(by_mean)}
    rank_final = {s: r for r, s in enumerate(by_final)}
    for k in range(1, len(keys) + 1):
        both = set(by_mean[:k]) & set(by_final[:k])
        if both:
            best = min(both, key=lambda s: (rank_mean[s] + rank_final[s], scores[s][0], str(s)))
            return best, k
    raise AssertionError("unreachable: at k = len(scores) every setting is in both lists")


@dataclass(frozen=True)
class SettingScore:
    """One hyper-parameter setting of one group: its runs (one per seed) and their mean errors."""

    group: tuple[tuple[str, Any], ...]
    params: tuple[tuple[str, Any], ...]
    runs: tuple[Path, ...]
    mean_error: float
    final_error: float

    @property
    def params_text(self) -> str:
        return ", ".join(f"{k.removeprefix('strategy.')}={v}" for k, v in self.params) or "(no hyper-parameters)"

    @property
    def group_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group)


@dataclass(frozen=True)
class Choice:
    """The chosen setting of a group, the k at which the rule chose it, and every candidate."""

    chosen: SettingScore
    k: int
    candidates: tuple[SettingScore, ...]


def score_settings(runs: Sequence[Any]) -> list[SettingScore]:
    """Group runs (``adaptive_weights.report.Run``-like: ``.path``, ``.config``, ``.errors``) into
    settings and average their last-epoch validation errors over seeds."""
    if not runs:
        raise RefusedError("no runs to select from")
    varying = _varying_keys([r.config for r in runs])
    buckets: dict[tuple, list[Any]] = defaultdict(list)
    for run in runs:
        if getattr(run, "status", "completed") == "diverged":
            # a setting that diverged failed: it scores the worst error at every exit, not its last good epoch
            errs = [1.0] * len(run.exit_units)
        else:
            errs = run.errors.get("val")
        if not errs:
            raise RefusedError(f"{run.path}: no validation errors in summary.json; selection ranks the validation "
                               "split (train.eval_splits must include 'val')")
        cfg = run.config
        group = tuple((k, cfg.get(k)) for k in varying if not k.startswith("strategy.") or k == "strategy.name")
        if "strategy.name" not in varying:
            group = (("strategy.name", cfg.get("strategy.name")),) + group
        params = tuple(sorted((k, cfg[k]) for k in cfg if k.startswith("strategy.") and k != "strategy.name"))
        buckets[(group, params)].append((run, errs))
    out = []
    for (group, params), members in buckets.items():
        vals = [errs for _, errs in members]
        out.append(SettingScore(
            group=group, params=params, runs=tuple(sorted(r.path for r, _ in members)),
            mean_error=sum(sum(v) / len(v) for v in vals) / len(vals),
            final_error=sum(v[-1] for v in vals) / len(vals),
        ))
    return sorted(out, key=lambda s: (_sort_key(s.group), _sort_key(s.params)))


def select_settings(runs: Sequence[Any]) -> list[Choice]:
    """The paper's choice for every group of ``runs`` (see the module docstring)."""
    groups: dict[tuple, list[SettingScore]] = defaultdict(list)
    for s in score_settings(runs):
        groups[s.group].append(s)
    choices = []
    for members in groups.values():
        by_params = {s.params: s for s in members}
        best, k = rank_first_common({p: (s.mean_error, s.final_error) for p, s in by_params.items()})
        choices.append(Choice(by_params[best], k, tuple(members)))
    return choices


def selection_rows(choices: Sequence[Choice]) -> list[dict[str, Any]]:
    """One CSV row per candidate setting, the chosen ones marked."""
    rows = []
    for c in choices:
        for s in c.candidates:
            rows.append({**dict(s.group), "setting": s.params_text, "seeds": len(s.runs),
                         "val_err_mean": s.mean_error, "val_err_final": s.final_error,
                         "chosen": s is c.chosen, "k": c.k if s is c.chosen else ""})
    return rows


def selection_csv(choices: Sequence[Choice]) -> str:
    """:func:`selection_rows` as CSV text (columns: the group keys, then the scores)."""
    import csv
    import io

    rows = selection_rows(choices)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def selection_markdown(choices: Sequence[Choice]) -> str:
    """A table of the chosen settings: group, setting, k, validation errors (percent), seeds."""
    lines = ["## Chosen hyper-parameters (validation split)", "",
             "Rule: rank settings by mean validation error over the exits and by the final exit's "
             "validation error (mean over seeds); choose the first setting in the top k of both as k grows.",
             "", "| group | setting | k | of | val err mean % | val err final % | seeds |",
             "|---|---|---|---|---|---|---|"]
    for c in choices:
        s = c.chosen
        lines.append(f"| {s.group_text} | {s.params_text} | {c.k} | {len(c.candidates)} | "
                     f"{100 * s.mean_error:.2f} | {100 * s.final_error:.2f} | {len(s.runs)} |")
    return "\n".join(lines) + "\n"


def _varying_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c} - _IGNORED_KEYS)
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def _sort_key(items: tuple[tuple[str, Any], ...]) -> tuple:
    return tuple((k, str(v)) for k, v in items)
