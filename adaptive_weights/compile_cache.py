"""`train.compile_cache`: where compiled training steps are kept, so a sweep compiles once.

`torch.compile` spends about a minute per process on a c=16 anytime ResNet (Dynamo, AOTAutograd,
inductor's code generation, Triton's kernels). Inductor keeps what it generated in an on-disk cache
(FX graphs, AOTAutograd entries, Triton kernels) keyed by the graph, the shapes, the torch version
and the device, so a later process with the same shapes loads them instead of generating them
again. A run uses torch's own per-user directory unless ``train.compile_cache`` names another; a
sweep gives all its trials one directory of its own, which may sit on storage the nodes share.

What is trusted, and why. Cache entries are pickles and compiled code, so whoever can write the
directory can run code in the next process that reads it. The directory is therefore used only if it
is a real directory (not a symbolic link), owned by the user running the training and not writable
by group or others; a new one is made with mode 0700, so nobody else can even look inside. A
directory that fails these checks is refused before the run writes anything, naming the fix.

Why a killed process cannot break the next one: inductor writes every entry to a hidden temporary
file and renames it into place, readers skip hidden files, and an entry that fails to load is
counted as a miss and compiled again (torch._inductor.codecache). A crash leaves at worst a stray
temporary file, never a half-written entry that is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import RefusedError

__all__ = ["check_cache_dir", "default_cache_dir", "use_compile_cache"]

_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_cache_dir() -> Path:
    """Torch's own per-user cache directory (``$TMPDIR/torchinductor_<user>``)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default

    return Path(torch_default())


def check_cache_dir(directory: str | Path, key: str = "train.compile_cache") -> Path:
    """``directory`` made (mode 0700) if missing and checked as trusted (see the module's docstring);
    returns its absolute path or raises :class:`RefusedError` naming it and the fix."""
    path = Path(directory).expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as err:
        raise RefusedError(f"{key}: cannot make or read the directory {str(path)!r}: {err.strerror or err}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RefusedError(f"{key}: {str(path)!r} is {'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'not a directory'}; "
                           "compiled artefacts are loaded as code, so only a real directory of your own is used")
    getuid = getattr(os, "getuid", None)
    if getuid is not None:  # POSIX: ownership and permission bits mean something
        if info.st_uid != getuid():
            raise RefusedError(f"{key}: {str(path)!r} belongs to user id {info.st_uid}, not to you ({getuid()}); "
                               "compiled artefacts are loaded as code, so only a directory you own is used: "
                               "choose another train.compile_cache")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RefusedError(f"{key}: {str(path)!r} is writable by other users (mode {oct(info.st_mode & 0o777)}); "
                               f"compiled artefacts are loaded as code, so it is used only when just you can write "
                               f"it: `chmod go-w {path}`, or choose another train.compile_cache")
    return path


def use_compile_cache(directory: str | Path | None, compile_mode: str) -> Path | None:
    """Point inductor at ``directory`` for this process's compilations (Triton's kernels go to its
    ``triton/`` unless ``TRITON_CACHE_DIR`` says otherwise), after checking it
    (:func:`check_cache_dir`). ``None``: ``$TORCHINDUCTOR_CACHE_DIR`` if set, else torch's per-user
    directory, checked the same way. Nothing to do for an eager run. Returns the directory used."""
    if compile_mode == "none":
        return None
    if directory is None:
        directory = os.environ.get(_ENV) or default_cache_dir()
    path = check_cache_dir(directory)
    if os.environ.get(_ENV) != str(path):
        os.environ[_ENV] = str(path)
        _forget_cached_paths()
    return path


def _forget_cached_paths() -> None:
    """Inductor memoises paths derived from its cache directory; forget them after a change."""
    try:
        from torch._inductor.utils import clear_caches
    except ImportError:  # an older or newer torch without it: nothing memoised to forget
        return
    clear_caches()
