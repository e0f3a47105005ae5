"""The one exception type for user-facing refusals.

Everything the library refuses because of what a user gave it (a bad config value, a run directory
that already holds a run, a corrupt or unsafe file, a bad label, a resume that would mix two
experiments) raises :class:`RefusedError`. The CLI prints it as ``error: <message>`` and exits 2 in
every command; anything else is a bug and keeps its traceback. It subclasses ``ValueError`` so code
that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["RefusedError"]


class RefusedError(ValueError):
    """A refusal to act on bad input; the message names the bad value and what was expected."""
