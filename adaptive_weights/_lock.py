"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock`` for as long as a run trains.

Two ``train`` processes started into one ``--out`` at the same moment (two shells, a duplicated job,
``torchrun`` without distributed support) would otherwise both train and overwrite each other's
files. The lock is taken before anything is read or written in the directory, and a second process
is refused at once with a message naming the directory and the holder's pid. The kernel drops the
lock when its holder exits, however it exits (a kill included), so a stale lock never blocks a
resume; the lock file itself stays (removing it would race with the next locker). The lock is
opened without following a link and must be a regular file with one name: a ``.lock`` planted as a
link to another file would otherwise have that file truncated to the holder's pid.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import TracebackType

from .errors import RefusedError

try:
    import fcntl
except ImportError:  # Windows: no flock, no lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunDirLock", "RunDirBusyError"]

LOCK_NAME = ".lock"


class RunDirBusyError(RefusedError):
    """Another process holds the run directory's lock."""


class RunDirLock:
    """``with RunDirLock(run_dir):`` holds the directory's exclusive lock (creating the directory).

    ``holder`` and ``advice`` word the refusal for what the directory is (a sweep's driver locks
    its sweep directory the same way)."""

    def __init__(self, run_dir: str | Path, *, holder: str = "another training process",
                 advice: str = "wait for it to finish (or stop it), or choose another --out") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.holder, self.advice = holder, advice
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        if fcntl is None or self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusyError(f"{self.run_dir} is in use: {self.holder} (pid {holder}) holds "
                                  f"{self.path}; {self.advice}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file, never through a link: refused unless a regular file with a single name."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:  # ELOOP: a symbolic link; EISDIR: a directory
            raise RefusedError(f"{self.path} cannot be the run's lock ({err.strerror}): a lock is a plain file; "
                               "remove it if no training process of yours is using the run") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else f"has {info.st_nlink} hard links"
            raise RefusedError(f"{self.path} {what}: a run's lock is a plain file of its own; it was left "
                               "untouched: remove it if no training process of yours is using the run")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
