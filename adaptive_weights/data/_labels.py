"""The label check every reader applies to the file it has just read.

A label outside ``0..num_classes-1`` does not fail where it is: 12 of 10 classes crashes an
indexing op mid-training (a device assert on CUDA), -100 is silently ignored by the loss
(``ignore_index``), -1 crashes evaluation. So the readers refuse it at once, naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import RefusedError

__all__ = ["check_labels"]


def check_labels(labels: np.ndarray, low: int, high: int, where: str | os.PathLike[str], what: str = "labels") -> None:
    """Refuse ``labels`` unless every one lies in ``low..high``; the error names ``where`` (the file),
    the first bad value with its position and the allowed range."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < low) | (labels > high))
    if bad.size:
        i = int(bad[0])
        raise RefusedError(f"{os.fspath(where)}: label {labels.reshape(-1)[i].item()} at position {i} is outside "
                           f"the allowed range {low}..{high} of {what} ({bad.size} bad label(s) in the file)")
