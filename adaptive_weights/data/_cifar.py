"""Readers for the official CIFAR-10 / CIFAR-100 files, in both published formats.

Python format: ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` and ``cifar-100-python/{train,test}``,
pickled dicts with ``b"data"`` (uint8 [N, 3072], channel-major) and ``b"labels"`` / ``b"fine_labels"``.
Binary format: ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` (records of 1 label byte + 3072
pixel bytes) and ``cifar-100-binary/{train,test}.bin`` (coarse label byte, fine label byte, 3072 pixels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RefusedError
from ._labels import check_labels
from ._safe_pickle import safe_pickle_load

__all__ = ["CIFAR_LAYOUTS", "CifarLayout", "check_cifar", "find_cifar", "read_cifar"]

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where one format of one CIFAR data set keeps its files (names relative to ``folder``)."""

    name: str
    fmt: str  # "python" or "binary"
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int  # binary format: label bytes per record (the last one is the label we use)
    label_key: bytes  # python format: the dict key of the labels we use
    num_classes: int  # of the labels we use (CIFAR-100: the fine labels)

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files


_C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

CIFAR_LAYOUTS: dict[tuple[str, str], CifarLayout] = {
    ("cifar10", "python"): CifarLayout(
        "cifar10", "python", "cifar-10-batches-py", _C10_TRAIN, ("test_batch",), 1, b"labels", 10
    ),
    ("cifar10", "binary"): CifarLayout(
        "cifar10", "binary", "cifar-10-batches-bin",
        tuple(f + ".bin" for f in _C10_TRAIN), ("test_batch.bin",), 1, b"labels", 10,
    ),
    ("cifar100", "python"): CifarLayout(
        "cifar100", "python", "cifar-100-python", ("train",), ("test",), 2, b"fine_labels", 100
    ),
    ("cifar100", "binary"): CifarLayout(
        "cifar100", "binary", "cifar-100-binary", ("train.bin",), ("test.bin",), 2, b"fine_labels", 100
    ),
}


def _check_name(name: str) -> None:
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"unknown CIFAR data set {name!r}; expected 'cifar10' or 'cifar100'")


def find_cifar(root: str | os.PathLike[str], name: str) -> CifarLayout | None:
    """The first complete layout (python format first, then binary) found under ``root``, else None."""
    _check_name(name)
    for fmt in ("python", "binary"):
        layout = CIFAR_LAYOUTS[(name, fmt)]
        folder = Path(root) / layout.folder
        if all((folder / f).is_file() for f in layout.files):
            return layout
    return None


def _read_python_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_pickle_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise RefusedError(f"{path}: not a CIFAR python batch (expected a dict with b'data' and {label_key!r})")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != _PIXELS or data.shape[0] != labels.shape[0]:
        raise RefusedError(f"{path}: data has shape {data.shape}, labels {labels.shape}; expected [N, 3072] and [N]")
    return data.reshape(-1, 3, 32, 32), labels


def _read_binary_batch(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + _PIXELS
    if raw.size == 0 or raw.size % record:
        raise RefusedError(f"{path}: size {raw.size} bytes is not a positive multiple of the {record}-byte record")
    raw = raw.reshape(-1, record)
    labels = raw[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: byte 0 coarse, byte 1 fine
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), labels


def _read_files(folder: Path, files: tuple[str, ...], layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        if layout.fmt == "python":
            x, y = _read_python_batch(folder / f, layout.label_key)
        else:
            x, y = _read_binary_batch(folder / f, layout.label_bytes)
        check_labels(y, 0, layout.num_classes - 1, folder / f, f"{layout.name} classes")
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar(
    root: str | os.PathLike[str], name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read CIFAR-10 or CIFAR-100 (fine labels) from ``root``, detecting the format present.

    Returns ``(train_x, train_y, test_x, test_y)``: images uint8 ``[N, 3, 32, 32]``, labels int64 ``[N]``,
    training images in the official order (``data_batch_1`` ... ``data_batch_5``), so "the last 5,000"
    is the second half of ``data_batch_5`` as in the paper's validation split.
    """
    layout = _require_cifar(root, name)
    folder = Path(root) / layout.folder
    train_x, train_y = _read_files(folder, layout.train_files, layout)
    test_x, test_y = _read_files(folder, layout.test_files, layout)
    return train_x, train_y, test_x, test_y


def check_cifar(root: str | os.PathLike[str], name: str) -> None:
    """Refuse a CIFAR set that is not under ``root`` or whose test files do not load (the smallest
    part: a sixth of the set), without reading the training files."""
    layout = _require_cifar(root, name)
    _read_files(Path(root) / layout.folder, layout.test_files, layout)


def _require_cifar(root: str | os.PathLike[str], name: str) -> CifarLayout:
    """The layout found under ``root``; none is a FileNotFoundError naming where it was looked for."""
    layout = find_cifar(root, name)
    if layout is None:
        expected = " or ".join(
            str(Path(root) / CIFAR_LAYOUTS[(name, fmt)].folder) for fmt in ("python", "binary")
        )
        raise FileNotFoundError(
            f"{name} not found: expected the extracted official archive at {expected} "
            "(pass --data.download to fetch it, or --data.root to point at it)"
        )
    return layout
