"""Fetch CIFAR-10/100 and SVHN from their official locations, verify the published MD5, install atomically.

Every file is streamed into a temporary file next to its target while its MD5 is computed; only a
verified file is renamed into place (``os.replace``), and an archive is extracted into a temporary
directory next to the target folder, checked for every expected file, then renamed. A failed or
interrupted run therefore leaves no partial file or half-extracted folder that a later run could trust.
What is already installed is never fetched again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write
from ._cifar import CIFAR_LAYOUTS, find_cifar
from ._svhn import SVHN_FILES, find_svhn_dir

__all__ = ["DATASET_SOURCES", "DownloadError", "RemoteFile", "download_dataset"]

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction failed; nothing partial was left in place."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name at ``url_base`` and its official MD5."""

    filename: str
    md5: str


# The official MD5s published on the data sets' pages.
DATASET_SOURCES: dict[str, tuple[str, dict[str, RemoteFile]]] = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {
        "python": RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        "binary": RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    }),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/", {
        "python": RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
        "binary": RemoteFile("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
    }),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/", {
        "train": RemoteFile(SVHN_FILES["train"], "e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test": RemoteFile(SVHN_FILES["test"], "eb5a983be6a315427106f1b18c3d6b43"),
        "extra": RemoteFile(SVHN_FILES["extra"], "a93ce644f1a588dc4d68dda5feec44a7"),
    }),
}


class _Progress:
    """A one-line byte counter on stderr (redrawn at most every 1%)."""

    def __init__(self, name: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled, self.done, self._shown = name, total, enabled, 0, -1

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        mib = self.done / 2**20
        if self.total:
            pct = int(100 * self.done / self.total)
            if pct == self._shown:
                return
            self._shown = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.name} [{bar:<25}] {pct:3d}% {mib:.1f}/{self.total / 2**20:.1f} MiB")
        else:
            sys.stderr.write(f"\r{self.name} {mib:.1f} MiB")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_verified(url: str, target: Path, md5: str, progress: bool) -> None:
    """Stream ``url`` into a temp file beside ``target``, check length and MD5, then rename it into place
    (:func:`~adaptive_weights._io.atomic_write`: the temp file of a killed download goes at the next try)."""

    def stream(out) -> None:
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                length = resp.headers.get("Content-Length")
                bar = _Progress(target.name, int(length) if length else None, progress)
                try:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
        except urllib.error.HTTPError as e:
            raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:  # includes http.client.IncompleteRead, timeouts
            raise DownloadError(f"could not download {url}: {e}") from e
        if length is not None and bar.done != int(length):
            raise DownloadError(f"download of {url} incomplete: got {bar.done} of {length} bytes")
        if digest.hexdigest() != md5.lower():
            raise DownloadError(
                f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5.lower()} "
                "(the file is corrupt, truncated or not the published one)"
            )

    atomic_write(target, stream)


def _extract_folder(archive: Path, root: Path, folder: str, files: tuple[str, ...]) -> None:
    """Extract ``archive`` into a temp dir in ``root``; move ``folder`` into place once all ``files`` are there."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.", suffix=".extract"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")  # "data" filter: no absolute paths, links out, devices
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(f"could not extract {archive.name}: {e} (corrupt or truncated archive)") from e
        missing = [f for f in files if not (tmp / folder / f).is_file()]
        if missing:
            raise DownloadError(f"{archive.name} lacks {folder}/{missing[0]}"
                                f"{f' and {len(missing) - 1} more files' if len(missing) > 1 else ''}")
        dest = root / folder
        if dest.exists():  # an incomplete folder (left by hand): move it aside, os.replace needs it gone
            os.replace(dest, tmp / ".stale")
        try:
            os.replace(tmp / folder, dest)
        except OSError:
            # another process (e.g. a parallel trial) installed the same folder first: keep theirs
            if not all((dest / f).is_file() for f in files):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    url_base: str | None = None,
    progress: bool = True,
    fmt: str = "python",
    extra: bool = False,
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Make sure ``name`` is installed under ``root``, downloading it only if it is not; return its folder.

    Args:
        name: ``cifar10``, ``cifar100`` or ``svhn``.
        root: data directory; CIFAR extracts to ``root/cifar-10-batches-py`` etc. (as the archive names
            it), SVHN files go to ``root/svhn/``.
        url_base: replaces the official location (a mirror, or the tests' local server).
        progress: print a progress bar on stderr.
        fmt: CIFAR archive to fetch, ``python`` or ``binary`` (either one already present counts).
        extra: SVHN: also fetch ``extra_32x32.mat`` (531,131 images, 1.3 GB).
        md5: overrides of the expected MD5 by file name (for mirrors serving other bytes, and tests).
    """
    if name not in DATASET_SOURCES:
        raise ValueError(f"cannot download {name!r}; downloadable data sets: {', '.join(DATASET_SOURCES)}")
    base, files = DATASET_SOURCES[name]
    base = url_base or base
    if not base.endswith("/"):
        base += "/"
    md5 = dict(md5 or {})
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    if name == "svhn":
        splits = ("train", "test", "extra") if extra else ("train", "test")
        present = find_svhn_dir(root, splits)
        if present is not None:
            return present
        folder = root / "svhn"
        for split in splits:
            remote = files[split]
            target = folder / remote.filename
            if not target.is_file() and not (root / remote.filename).is_file():
                _fetch_verified(base + remote.filename, target, md5.get(remote.filename, remote.md5), progress)
        return find_svhn_dir(root, splits) or folder

    if fmt not in ("python", "binary"):
        raise ValueError(f"fmt={fmt!r}; allowed 'python' or 'binary'")
    present_layout = find_cifar(root, name)
    if present_layout is not None:
        return root / present_layout.folder
    layout, remote = CIFAR_LAYOUTS[(name, fmt)], files[fmt]
    archive, expected = root / remote.filename, md5.get(remote.filename, remote.md5)
    # An archive the user already placed in root is used (and kept) if its MD5 is right.
    users_archive = archive.is_file() and _md5_of(archive) == expected.lower()
    try:
        if not users_archive:
            _fetch_verified(base + remote.filename, archive, expected, progress)
        _extract_folder(archive, root, layout.folder, layout.files)
    finally:
        if not users_archive and archive.exists():
            archive.unlink()  # the extracted folder is what counts as "already there"
    return root / layout.folder
