"""The one exception type for user-facing refusals, and the failure of a sweep's trials.

Everything the library refuses because of what a user gave it (a bad config value, a run directory
that already holds a run, a corrupt or unsafe file, a bad label, a resume that would mix two
experiments) raises :class:`RefusedError`. The CLI prints it as ``error: <message>`` and exits 2 in
every command; anything else is a bug and keeps its traceback. It subclasses ``ValueError`` so code
that already catches ``ValueError`` keeps working.

:class:`SweepFailedError` is what ``run_sweep`` raises when trials failed in their workers, after it
wrote what the sweep produced: a script's exit status must not say success when trials failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RefusedError", "SweepFailedError"]


class RefusedError(ValueError):
    """A refusal to act on bad input; the message names the bad value and what was expected."""


class SweepFailedError(RefusedError):
    """Trials of a sweep failed for good (after their retries). ``failed``: their run names;
    ``cause``: the first failure's cause (the last line of its trial's ``error.txt``); ``total``:
    the trials the sweep ran; ``experiment``: where each trial's ``error.txt`` is; ``outcome``: the
    ``SweepOutcome`` that ``run_sweep`` would have returned (the runs it exported). A RefusedError,
    so every command prints it as one ``error:`` line."""

    def __init__(self, failed: Sequence[str], cause: str, *, total: int | None = None, experiment: str = "",
                 outcome: Any = None) -> None:
        self.failed = tuple(failed)
        self.cause = cause
        self.total = total
        self.experiment = experiment
        self.outcome = outcome
        of = f" of {total}" if total else ""
        where = f"; each trial's error.txt is under {experiment}" if experiment else ""
        super().__init__(f"{len(self.failed)}{of} trial(s) failed: {', '.join(self.failed)}; the first failure: "
                         f"{cause}{where}")
