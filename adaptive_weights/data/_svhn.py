"""Reader for the official SVHN cropped-digit files (``{train,test,extra}_32x32.mat``, MATLAB v5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import RefusedError
from ._labels import check_labels

__all__ = ["SVHN_FILES", "check_svhn", "find_svhn_dir", "read_svhn", "read_svhn_file"]

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def find_svhn_dir(root: str | os.PathLike[str], splits: tuple[str, ...] = ("train", "test")) -> Path | None:
    """``root`` or ``root/svhn``, whichever holds all the requested split files; else None."""
    for folder in (Path(root), Path(root) / "svhn"):
        if all((folder / SVHN_FILES[s]).is_file() for s in splits):
            return folder
    return None


def read_svhn_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One .mat file -> images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` in 0..9.

    The files store ``X`` as ``[32, 32, 3, N]`` and ``y`` as ``[N, 1]`` with 10 meaning the digit 0.
    """
    from scipy.io import loadmat  # scipy is slow to import; only the SVHN path needs it

    try:
        mat = loadmat(path)
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as err:  # truncated or not MATLAB v5
        raise RefusedError(f"{os.fspath(path)}: not a readable MATLAB file, truncated or corrupt "
                           f"({type(err).__name__}: {err})") from None
    if "X" not in mat or "y" not in mat:
        raise RefusedError(f"{path}: not an SVHN file (expected variables 'X' and 'y')")
    x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise RefusedError(f"{path}: X has shape {x.shape}, y {mat['y'].shape}; expected [32, 32, 3, N] and [N, 1]")
    check_labels(y, 0, 10, path, "SVHN digits (10 stands for 0)")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8), y


def read_svhn(root: str | os.PathLike[str], extra: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read SVHN from ``root`` (or ``root/svhn``) as ``{"train": (x, y), "test": (x, y)[, "extra": (x, y)]}``.

    Images are uint8 ``[N, 3, 32, 32]``, labels int64 ``[N]`` in 0..9. Extra stays a separate entry so
    that a validation split can come from the official train file alone (the paper trains on
    train + extra).
    """
    splits = _splits(extra)
    folder = _require_svhn(root, splits)
    return {s: read_svhn_file(folder / SVHN_FILES[s]) for s in splits}


def check_svhn(root: str | os.PathLike[str], extra: bool = False) -> None:
    """Refuse SVHN files that are not under ``root`` or are no SVHN file, reading only each file's
    list of variables (not its images)."""
    from scipy.io import whosmat

    splits = _splits(extra)
    folder = _require_svhn(root, splits)
    for split in splits:
        path = folder / SVHN_FILES[split]
        try:
            names = {name for name, _, _ in whosmat(path)}
        except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as err:
            raise RefusedError(f"{path}: not a readable MATLAB file, truncated or corrupt "
                               f"({type(err).__name__}: {err})") from None
        if not {"X", "y"} <= names:
            raise RefusedError(f"{path}: not an SVHN file (expected variables 'X' and 'y')")


def _splits(extra: bool) -> tuple[str, ...]:
    return ("train", "test", "extra") if extra else ("train", "test")


def _require_svhn(root: str | os.PathLike[str], splits: tuple[str, ...]) -> Path:
    """The folder holding the split files; none is a FileNotFoundError naming where it was looked for."""
    folder = find_svhn_dir(root, splits)
    if folder is None:
        names = ", ".join(SVHN_FILES[s] for s in splits)
        raise FileNotFoundError(
            f"svhn not found: expected {names} in {Path(root)} or {Path(root) / 'svhn'} "
            "(pass --data.download to fetch them, or --data.root to point at them)"
        )
    return folder
