"""A restricted unpickler for the CIFAR python batches.

``pickle.load`` on a downloaded file runs whatever callable the file names, so a crafted "data batch"
can execute code. The CIFAR batches only ever contain dicts, lists, strings, bytes, ints and numpy
arrays; the unpickler below resolves just the few numpy globals those arrays need and refuses every
other global with an error that names it and the file. A truncated or garbled file is refused the
same way (:class:`~adaptive_weights.errors.RefusedError`, naming the file), never a bare traceback.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from ..errors import RefusedError

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "safe_pickle_load"]

# (module, name) pairs a numpy array's pickle may reference. Python 2 pickles (the official CIFAR
# files) name ``numpy.core.multiarray``; numpy >= 2 writes ``numpy._core``; protocol 5 uses
# ``_frombuffer``; Python 3 writes ``bytes`` at protocol 2 as ``_codecs.encode(str, "latin1")``.
# None of these can run arbitrary code: they rebuild an ndarray of a given dtype or a bytes object.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class UnsafePickleError(RefusedError, pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (it could have run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers, strings, bytes, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle global {module}.{name}: only numpy arrays, dicts, lists, strings "
            "and bytes are allowed in a data set file (the file may be corrupt or malicious)"
        )


def safe_pickle_load(path: str | os.PathLike[str], *, encoding: str = "bytes") -> Any:
    """Load a pickle file through :class:`RestrictedUnpickler`.

    ``encoding="bytes"`` keeps the Python 2 strings of the official CIFAR files as ``bytes`` (their
    keys are ``b"data"``, ``b"labels"``), which is what the readers expect.
    """
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding=encoding).load()
        except UnsafePickleError as err:
            raise UnsafePickleError(f"{os.fspath(path)}: {err}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, UnicodeDecodeError, MemoryError) as err:  # what a garbled pickle raises
            raise RefusedError(f"{os.fspath(path)}: not a readable pickle, truncated or corrupt "
                               f"({type(err).__name__}: {err})") from None
