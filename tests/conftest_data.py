"""Helpers that write tiny data set files in the real official formats (imported by tests/test_data*.py)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from adaptive_weights.data._cifar import CIFAR_LAYOUTS


def fake_images(n: int, offset: int = 0) -> np.ndarray:
    """uint8 [n, 3072] rows with distinct, position-dependent values (row i starts at offset + 7 i)."""
    return ((np.arange(n)[:, None] * 7 + offset + np.arange(3072)[None, :]) % 256).astype(np.uint8)


def cifar_batches(name: str, per_batch: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{file stem: (rows uint8 [n, 3072], fine labels [n], coarse labels [n])}, train files first."""
    rng = np.random.default_rng(seed)
    stems = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    out = {}
    for k, stem in enumerate(stems):
        n = per_batch * (5 if name == "cifar100" and stem == "train" else 1)
        classes = 10 if name == "cifar10" else 100
        out[stem] = (fake_images(n, offset=31 * k), rng.integers(0, classes, n), rng.integers(0, 20, n))
    return out


def write_fake_cifar(root: Path, name: str, fmt: str, per_batch: int = 4, seed: int = 0):
    """Write a tiny CIFAR folder in ``fmt`` under ``root``; return (train_x, train_y, test_x, test_y) expected."""
    layout = CIFAR_LAYOUTS[(name, fmt)]
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    batches = cifar_batches(name, per_batch, seed)
    for stem, (rows, fine, coarse) in batches.items():
        if fmt == "python":
            d = {b"batch_label": b"fake " + stem.encode(), b"data": rows,
                 b"filenames": [b"img_%d.png" % i for i in range(len(rows))]}
            if name == "cifar10":
                d[b"labels"] = [int(v) for v in fine]
            else:
                d[b"fine_labels"], d[b"coarse_labels"] = [int(v) for v in fine], [int(v) for v in coarse]
            (folder / stem).write_bytes(pickle.dumps(d, protocol=2))
        else:
            labels = fine[:, None] if name == "cifar10" else np.stack([coarse, fine], axis=1)
            records = np.concatenate([labels.astype(np.uint8), rows], axis=1)
            (folder / f"{stem}.bin").write_bytes(records.tobytes())
    stems = list(batches)
    train, test = stems[:-1], stems[-1:]

    def cat(keys):
        return (np.concatenate([batches[k][0] for k in keys]).reshape(-1, 3, 32, 32),
                np.concatenate([batches[k][1] for k in keys]))

    return (*cat(train), *cat(test))


def make_tar_gz(src_root: Path, folder: str, drop: str | None = None) -> bytes:
    """A .tar.gz holding ``src_root/folder`` (optionally without the member file ``drop``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted((Path(src_root) / folder).iterdir()):
            if p.name != drop:
                tar.add(p, arcname=f"{folder}/{p.name}")
    return buf.getvalue()


def write_fake_svhn(folder: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``{split}_32x32.mat`` in the official layout; return the expected (x [n,3,32,32], labels 0..9)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    digits = np.arange(n) % 10  # every digit, including 0 (stored as 10)
    y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    Path(folder).mkdir(parents=True, exist_ok=True)
    savemat(Path(folder) / f"{split}_32x32.mat", {"X": x, "y": y})
    return x.transpose(3, 2, 0, 1), digits
