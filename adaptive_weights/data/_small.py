"""Data sets that need no files: scikit-learn's digits and a learnable synthetic set."""

from __future__ import annotations

import numpy as np

__all__ = ["DIGITS_SPLIT", "load_digits_arrays", "make_synthetic", "split_digits"]

# The fixed digits split: a permutation of the 1,797 images drawn with seed 0, then 1,197 train,
# 300 validation, 300 test, in that order.
DIGITS_SPLIT = (1197, 300, 300)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 sklearn digits as uint8 ``[1797, 1, 8, 8]`` (0..16 scaled by 255/16, rounded) and int64 labels."""
    from sklearn.datasets import load_digits  # heavy import; only the digits path needs it

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return x, d.target.astype(np.int64)


def split_digits(
    x: np.ndarray, y: np.ndarray, val_split: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed train/val/test split of the digits (see ``DIGITS_SPLIT``).

    The test set is always the last 300 images of the seed-0 permutation. ``val_split`` (default 300)
    images are taken from the end of the remaining 1,497; 0 gives no validation split.
    """
    n_test = DIGITS_SPLIT[2]
    pool = len(x) - n_test
    n_val = DIGITS_SPLIT[1] if val_split is None else val_split
    if not 0 <= n_val < pool:
        raise ValueError(f"val_split={val_split} for digits; allowed 0..{pool - 1} (None means 300)")
    perm = np.random.default_rng(0).permutation(len(x))
    parts = {"train": perm[: pool - n_val], "val": perm[pool - n_val : pool], "test": perm[pool:]}
    return {k: (x[idx], y[idx]) for k, idx in parts.items() if len(idx) or k != "val"}


def make_synthetic(
    num_samples: int,
    *,
    image_size: int = 32,
    num_classes: int = 10,
    channels: int = 3,
    noise: float = 48.0,
    seed: int = 0,
    sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A class-conditional image set: one smooth random prototype per class plus Gaussian pixel noise.

    The prototypes depend only on ``(seed, image_size, num_classes, channels)``; ``sample_seed`` (default
    ``seed``) draws the labels and noise, so train, validation and test sets share prototypes but not
    samples. Prototypes are low-frequency (upsampled 4x4 grids), so a small convnet learns them in a few
    steps while the noise keeps the task from being trivial. Returns uint8 ``[N, C, S, S]`` and int64 ``[N]``.
    """
    if num_samples < 0 or image_size < 1 or num_classes < 2 or channels < 1:
        raise ValueError(
            f"make_synthetic(num_samples={num_samples}, image_size={image_size}, num_classes={num_classes}, "
            f"channels={channels}): need num_samples >= 0, image_size >= 1, num_classes >= 2, channels >= 1"
        )
    proto_rng = np.random.default_rng([seed, image_size, num_classes, channels])
    grid = proto_rng.uniform(32.0, 224.0, size=(num_classes, channels, 4, 4))
    rep = -(-image_size // 4)
    protos = np.kron(grid, np.ones((rep, rep)))[:, :, :image_size, :image_size]
    rng = np.random.default_rng([seed if sample_seed is None else sample_seed, 1])
    y = rng.integers(0, num_classes, size=num_samples)
    x = protos[y] + rng.normal(0.0, noise, size=(num_samples, channels, image_size, image_size))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)
