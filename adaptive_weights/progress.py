"""Progress on stderr for every long phase: training's throttled line, tqdm bars with an ETA for
evaluation, budgeted inference, OPT baselines and sweeps.

Two rules hold for all of them, so that a log file never fills with carriage returns:

* a bar is drawn only on a terminal (``stream.isatty()``); elsewhere it draws nothing, and the
  phases that print one line per finished unit of work (an OPT run, a sweep trial) still print it;
* a command's ``-q/--quiet`` (:func:`adaptive_weights._flags.add_quiet`) turns them off: the caller
  passes ``enabled=False``. Nothing here reads a global switch, so a library caller decides alone.

Training's line (:class:`Progress`) is not a tqdm bar: reading the loss forces a host-device sync,
so it refreshes at most every ``interval_s`` seconds (every minute when the stream is a log).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["Progress", "EtaClock", "bar", "is_terminal", "format_duration", "length_of", "writing_above_bars"]

# a bar whose ETA is in its postfix: count, bar, time so far, postfix
_OWN_ETA_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} |{bar}| [{elapsed}{postfix}]"
# a log (stderr not a terminal) gets a training step line this seldom: occasional, not a flood
LOG_INTERVAL_S = 60.0


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is a terminal, where a redrawn line belongs (a file or pipe gets none)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def format_duration(seconds: float) -> str:
    """``H:MM:SS``; ``?`` for an unknown (non-finite) duration."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def length_of(iterable: Any) -> int | None:
    """``len(iterable)`` where it has one (a DataLoader), else None: a bar without a total."""
    try:
        return len(iterable)
    except TypeError:
        return None


def bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, initial: int = 0,
        stream: TextIO | None = None, own_eta: bool = False) -> Any:
    """A tqdm bar on ``stream`` (default: stderr at call time) that vanishes when closed; a disabled
    tqdm (every method a no-op, no output) when not ``enabled`` or the stream is not a terminal.
    ``own_eta``: the caller puts its own ETA in the postfix (tqdm's, from whole units done, is left out).

    Callers update it per batch or per finished unit: tqdm itself throttles the redraws, and an
    ``update`` reads nothing from the device."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, leave=False,
                disable=not (enabled and is_terminal(stream)), dynamic_ncols=True,
                bar_format=_OWN_ETA_FORMAT if own_eta else None)


@contextlib.contextmanager
def writing_above_bars() -> Iterator[None]:
    """Clear the bars drawn on stdout/stderr while a line is printed, and redraw them under it, so
    that a line printed during a bar is not torn by it."""
    from tqdm import tqdm

    with tqdm.external_write_mode():
        yield


class EtaClock:
    """Estimated time left from the work done since the clock started: ``total`` units of which
    ``start`` were done before (a resumed sweep's finished trials do not make the rate look fast).
    Units may be fractional (a running trial at epoch 3 of 10 counts 0.3)."""

    def __init__(self, total: float, start: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if total < 0 or start < 0:
            raise ValueError(f"EtaClock: total={total!r}, start={start!r}; expected numbers >= 0")
        self.total, self.start, self._clock = total, start, clock
        self._t0 = clock()

    def seconds_left(self, done: float) -> float:
        """Seconds until ``total`` at the rate since the start; NaN before any work was done."""
        elapsed, gained = self._clock() - self._t0, done - self.start
        if gained <= 0:
            return math.nan
        return max(0.0, self.total - done) * elapsed / gained

    def text(self, done: float) -> str:
        """``eta H:MM:SS`` (``eta ?`` before the first unit of work)."""
        return f"eta {format_duration(self.seconds_left(done))}"


class Progress:
    """Training's progress line: epoch, step, loss, images/s and the estimated time left.

    Reading the loss forces a host-device sync, so the line refreshes at most every
    ``interval_s`` seconds (at most every :data:`LOG_INTERVAL_S` when the stream is not a
    terminal), never once per step. On a terminal it redraws in place; in a log it is a plain line.
    """

    def __init__(self, total_epochs: int, steps_per_epoch: int, *, enabled: bool = True,
                 interval_s: float = 2.0, stream: TextIO | None = None):
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        self.stream = stream or sys.stderr
        self.tty = is_terminal(self.stream)
        self.enabled = enabled
        self.interval_s = interval_s if self.tty else max(interval_s, LOG_INTERVAL_S)
        self._last = 0.0
        self._eta = EtaClock(total_epochs * steps_per_epoch, clock=time.perf_counter)

    def due(self) -> bool:
        return self.enabled and time.perf_counter() - self._last >= self.interval_s

    def update(self, epoch: int, step_in_epoch: int, loss: float, images_per_s: float) -> None:
        self._last = time.perf_counter()
        done = epoch * self.steps_per_epoch + step_in_epoch
        msg = (f"epoch {epoch + 1}/{self.total_epochs} step {step_in_epoch}/{self.steps_per_epoch} "
               f"loss {loss:.4f} {images_per_s:,.0f} img/s {self._eta.text(done)}")
        self.stream.write(("\r" + msg + "\x1b[K") if self.tty else msg + "\n")
        self.stream.flush()

    def start(self, epoch: int, step_in_epoch: int) -> None:
        """Count the rate from here (a resumed run's earlier steps do not make it look fast)."""
        self._eta = EtaClock(self.total_epochs * self.steps_per_epoch,
                             epoch * self.steps_per_epoch + step_in_epoch, clock=time.perf_counter)

    def line(self, msg: str) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + msg + ("\x1b[K\n" if self.tty else "\n"))
            self.stream.flush()
