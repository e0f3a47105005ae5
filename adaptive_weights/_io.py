"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Every write goes to a temp file beside the target (``.NAME.<random>.tmp``), is fsynced and renamed
over the target. The writer holds an ``flock`` on its temp file until the rename, so the next write
of the same file can tell a temp file left by a killed process (nobody holds its lock) from one
being written right now, and removes only the former. Files get the mode the umask gives (as
``open`` would), not the 0600 of ``mkstemp``. JSON is written strictly: NaN and infinities become
``null``, so every file is valid JSON for any reader.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no flock; stale temp files are then left alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "json_dumps", "json_safe", "read_json",
           "remove_stale_temp_files"]

_TMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename it over
    ``path`` (``os.replace`` is atomic on POSIX and Windows). Stale temp files of ``path`` (left by
    a killed writer) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    f, tmp = _locked_temp_file(path)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)  # while the lock is held: no cleaner can take the temp file first
        if fcntl is None:
            os.replace(tmp, path)  # Windows renames only closed files
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _locked_temp_file(path: Path) -> tuple[IO[bytes], str]:
    """A new temp file beside ``path``, opened for writing, locked, with the umask's mode.

    A cleaner may lock and remove a temp file in the instant between its creation and its lock; the
    inode check notices that and starts over with a new one."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
        f = os.fdopen(fd, "wb")
        try:
            os.chmod(tmp, 0o666 & ~_umask())
            if fcntl is None:
                return f, tmp
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return f, tmp
        except FileNotFoundError:
            pass
        except BaseException:
            f.close()
            Path(tmp).unlink(missing_ok=True)
            raise
        f.close()


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Remove the temp files of ``path`` that no live writer holds (a kill mid-write leaves one);
    return what was removed."""
    path = Path(path)
    removed: list[Path] = []
    if fcntl is None or not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for entry in os.scandir(path.parent):
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP_SUFFIX) and entry.is_file()):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # being written right now
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json_dumps(obj, indent=2) + "\n")


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON of ``obj`` (see :func:`json_safe`): never a bare ``NaN`` or ``Infinity``."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats become ``None`` (``null``), tensors and numpy
    values lists or numbers, tuples and sets lists, paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def read_json(path: str | Path) -> Any:
    """Read JSON, naming the file in the error when it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
