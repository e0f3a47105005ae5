"""A sweep's directory on storage (a local path or a URI such as ``s3://bucket/sweeps/NAME``), read
without ever unpickling.

What a resume needs is written by this library as plain JSON: ``sweep.json`` (the validated sweep:
its trials or search space, written before Ray starts), ``stopped.json`` (trials a scheduler stopped
early, so a resume does not run them on), and in every trial directory Ray's checkpoints, each a
complete run directory (``summary.json``, ``config.json``, ``checkpoints/last.pt``, read by
``train(resume=True)`` with ``weights_only=True``). A packed sweep's trial (``pack-<id>``, one Ray
trial per pack) checkpoints ``pack.json`` (its members' run names) and one such run directory per
member, ``<run name>/``: each is read exactly as an unpacked trial's checkpoint. Ray's own files (``tuner.pkl``, ``params.pkl``,
the searcher and experiment state) are pickles and are never read.

Where a sweep lives: ``OUT/NAME`` on storage (Ray's experiment path), and on this machine a local
results directory whose ``runs/`` holds a copy of every trial's final run directory.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptive_weights.errors import RefusedError
from adaptive_weights.runs import summary_is_final

__all__ = ["SweepDir", "TrialCheckpoint", "SPEC_FILE", "DEFAULT_OUT", "RUNS_DIR", "experiment_path", "is_uri",
           "local_results_dir", "driver_lock", "PACK_FILE", "pack_trial_name"]

DEFAULT_OUT = "results/sweeps"
SPEC_FILE = "sweep.json"
STOPPED_FILE = "stopped.json"
RUNS_DIR = "runs"
_CHECKPOINT_PREFIX = "checkpoint_"
PACK_FILE = "pack.json"
# a pack's Ray trial directory: its name, or NAME.2, ... for a pack that a later attempt continued
_PACK_TRIAL = re.compile(r"^pack-[0-9a-f]{12}(\.[0-9]+)?$")


def pack_trial_name(run_names: list[str]) -> str:
    """The Ray trial name of a pack: ``pack-`` and a hash of its members' run names (the same pack
    gets the same name again on a resume, and its directory then ``NAME.2``)."""
    return "pack-" + hashlib.sha1("\n".join(run_names).encode()).hexdigest()[:12]


def is_uri(path: str) -> bool:
    return "://" in path


def experiment_path(out: str, name: str) -> tuple[str, str]:
    """(storage root for Ray, experiment path): absolute local paths (trial workers change
    directory) or URIs left as they are."""
    root = out if is_uri(out) else str(Path(out).expanduser().resolve())
    return root, f"{root.rstrip('/')}/{name}"


def local_results_dir(out: str, name: str) -> Path:
    """Where run directories and the report go on this machine: the experiment directory when
    it is local, else ``results/sweeps/NAME``."""
    if is_uri(out):
        return Path(DEFAULT_OUT).resolve() / name
    return Path(out).expanduser().resolve() / name


_DRIVER_LOCKS: dict[Path, object] = {}  # sweep directories this process's driver holds


@contextmanager
def driver_lock(local_dir: Path) -> Iterator[None]:
    """Hold the sweep's exclusive lock (``flock`` on ``local_dir/.lock``, as a run directory's) for
    the body: a second driver on a live sweep (``sweep --resume`` while the first runs) would plan
    every unfinished trial again on a second Ray; it is refused at once, naming the holder's pid.
    Re-entrant within a process (the command holds it around run_sweep and the report). The lock
    is on this machine's results directory: for a bucket it keeps out drivers on this machine
    only. A directory that only the lock made is removed again (a refused sweep leaves nothing)."""
    from adaptive_weights._lock import LOCK_NAME, RunDirLock

    key = Path(local_dir).resolve()
    if key in _DRIVER_LOCKS:
        yield
        return
    fresh = not key.exists()
    lock = RunDirLock(key, holder="another sweep driver", advice="wait for it to finish (or stop it) before "
                      "--resume, or give this sweep another --name or --out").acquire()
    _DRIVER_LOCKS[key] = lock
    try:
        yield
    finally:
        if fresh and [p.name for p in key.iterdir()] == [LOCK_NAME]:
            (key / LOCK_NAME).unlink(missing_ok=True)  # removed while still held
            key.rmdir()
        del _DRIVER_LOCKS[key]
        lock.release()


@dataclass(frozen=True)
class TrialCheckpoint:
    """The furthest checkpoint of one run found in the sweep directory."""

    name: str
    path: str              # a local path or a URI, as Ray's storage path is
    epochs: int
    completed: bool
    config: dict[str, Any]  # the run's flat config (summary.json)
    val_errors: list[float] | None


class SweepDir:
    """Reads and writes the files above under ``experiment`` (a path or URI)."""

    def __init__(self, experiment: str) -> None:
        import pyarrow.fs

        self.experiment = experiment
        self.is_uri = is_uri(experiment)
        self._fs, self._root = pyarrow.fs.FileSystem.from_uri(experiment)

    # ------------------------------------------------------------------ plain JSON files
    def _path(self, *parts: str) -> str:
        return posixpath.join(self._root, *parts)

    def uri(self, *parts: str) -> str:
        """A child as a path or URI of the same kind as ``experiment``."""
        return "/".join([self.experiment.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self._fs.get_file_info(self._path(*parts)).type != pyarrow.fs.FileType.NotFound

    def read_json(self, *parts: str) -> Any:
        path = self._path(*parts)
        try:
            with self._fs.open_input_stream(path) as f:
                return json.loads(f.read().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RefusedError(f"{self.uri(*parts)}: not readable JSON ({err})") from None

    def write_json(self, obj: Any, *parts: str) -> None:
        if not self.is_uri:
            from adaptive_weights._io import atomic_write_json

            atomic_write_json(Path(self._path(*parts)), obj)
            return
        with self._fs.open_output_stream(self._path(*parts)) as f:  # an object store writes whole objects
            f.write((json.dumps(obj, indent=2) + "\n").encode("utf-8"))

    def spec(self) -> dict[str, Any]:
        return self.read_json(SPEC_FILE)

    def write_spec(self, spec: dict[str, Any]) -> None:
        self.write_json(spec, SPEC_FILE)

    def stopped(self) -> set[str]:
        return set(self.read_json(STOPPED_FILE)) if self.exists(STOPPED_FILE) else set()

    def record_stopped(self, name: str) -> None:
        self.write_json(sorted(self.stopped() | {name}), STOPPED_FILE)

    def forget_stopped(self, names: set[str]) -> None:
        """Trials that run again (a resume restarts a stopped trial whose config changed)."""
        stopped = self.stopped()
        if stopped & names:
            self.write_json(sorted(stopped - names), STOPPED_FILE)

    # ------------------------------------------------------------------ trial directories
    def _children(self, path: str) -> list[str]:
        import pyarrow.fs

        infos = self._fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos if i.type == pyarrow.fs.FileType.Directory)

    def entries(self) -> list[str]:
        """Names of every directory in the sweep directory (trial directories, ``runs``, ...)."""
        return self._children(self._root)

    def trial_dirs(self) -> list[str]:
        """Names of the directories that hold Ray checkpoints (the trials of every attempt)."""
        return [d for d in self._children(self._root)
                if any(c.startswith(_CHECKPOINT_PREFIX) for c in self._children(self._path(d)))]

    def checkpoints(self) -> dict[str, TrialCheckpoint]:
        """Run name -> its furthest checkpoint over every trial directory (a run resumed in a later
        attempt has checkpoints in two directories; a packed run, one in every checkpoint of its pack)."""
        best: dict[str, TrialCheckpoint] = {}
        for trial in self.trial_dirs():
            for ckpt in self._children(self._path(trial)):
                if not ckpt.startswith(_CHECKPOINT_PREFIX):
                    continue
                for parts, name, summary in self._runs_in(trial, ckpt):
                    self._keep_furthest(best, parts, name, summary)
        return best

    def _runs_in(self, trial: str, ckpt: str) -> Iterator[tuple[tuple[str, ...], str, dict[str, Any]]]:
        """(path parts, run name, summary) of every complete run directory in one Ray checkpoint:
        the checkpoint itself, or in a pack's checkpoint each member's folder."""
        from adaptive_weights.config import is_run_name

        if _PACK_TRIAL.match(trial) and self.exists(trial, ckpt, PACK_FILE):
            try:
                members = self.read_json(trial, ckpt, PACK_FILE).get("members")
            except (RefusedError, AttributeError):
                return  # Ray was still copying it
            if not isinstance(members, list):
                return
            for member in members:
                if not is_run_name(member):
                    raise RefusedError(f"{self.uri(trial, ckpt, PACK_FILE)} names the member {member!r}, which is not "
                                       f"a run name: this sweep did not write it; remove {self.uri(trial)} if it is "
                                       "not yours, then resume")
                summary = self._complete_summary(trial, ckpt, str(member))
                if summary is not None:
                    yield (trial, ckpt, str(member)), self._member_name(trial, ckpt, str(member), summary), summary
            return
        summary = self._complete_summary(trial, ckpt)
        if summary is not None:
            yield (trial, ckpt), self._run_name(trial, ckpt, summary), summary

    def _keep_furthest(self, best: dict[str, TrialCheckpoint], parts: tuple[str, ...], name: str,
                       summary: dict[str, Any]) -> None:
        diverged = summary.get("status") == "diverged"
        found = TrialCheckpoint(
            name=name, path=self.uri(*parts), epochs=int(summary.get("epochs", 0)),
            completed=summary_is_final(summary), config=dict(summary.get("config") or {}),
            val_errors=None if diverged else (summary.get("errors") or {}).get("val"))
        # a diverged run's last checkpoint has the epochs of the good one before it: the later wins
        if found.name not in best or found.epochs > best[found.name].epochs or diverged:
            best[found.name] = found

    def _run_name(self, trial: str, ckpt: str, summary: dict[str, Any]) -> str:
        """The run a checkpoint belongs to, as the sweep itself recorded it: the trial directory
        is named after the run (``NAME``, or ``NAME.2``, ... for a run that a later attempt
        continued). The name becomes a directory under ``runs/``, so a summary.json that names
        another run, or no run name at all (``../../x``), was not written by this sweep and is
        refused rather than trusted."""
        from adaptive_weights.config import is_run_name

        name = summary.get("name")
        config_name = summary.get("config", {}).get("name", name) if isinstance(summary.get("config"), dict) else name
        ours = is_run_name(name) and config_name == name and (
            trial == name or (trial.startswith(f"{name}.") and trial[len(name) + 1:].isdigit()))
        if not ours:
            raise RefusedError(
                f"{self.uri(trial, ckpt, 'summary.json')} names the run {name!r} (config name {config_name!r}), "
                f"which is not its trial directory {trial!r}: this sweep did not write it (a trial directory is "
                f"its run's name, or NAME.2, ... for a continued run); remove {self.uri(trial)} if it is not "
                "yours, then resume")
        return name

    def _member_name(self, trial: str, ckpt: str, member: str, summary: dict[str, Any]) -> str:
        """A pack member's run name, checked as :meth:`_run_name` checks a trial's: its folder in
        the pack's checkpoint is the run's name, and its summary.json names that run."""
        from adaptive_weights.config import is_run_name

        config = summary.get("config")
        config_name = config.get("name") if isinstance(config, dict) else None
        if not (is_run_name(member) and summary.get("name") == member and config_name == member):
            raise RefusedError(
                f"{self.uri(trial, ckpt, member, 'summary.json')} names the run {summary.get('name')!r} (config "
                f"name {config_name!r}), which is not its folder {member!r} in the pack's checkpoint: this sweep "
                f"did not write it; remove {self.uri(trial)} if it is not yours, then resume")
        return member

    def _complete_summary(self, *parts: str) -> dict[str, Any] | None:
        """The ``summary.json`` of a checkpoint that Ray finished copying, else None. Ray copies a
        checkpoint into its folder file by file: a kill mid-copy leaves a summary.json cut short, or
        a run without its whole ``checkpoints/last.pt`` (a zip, whose directory is written last),
        which no retry could resume from. A diverged run may have no last.pt: it is never resumed."""
        if not self.exists(*parts, "summary.json"):
            return None
        try:
            summary = self.read_json(*parts, "summary.json")
        except RefusedError:
            return None
        if not isinstance(summary, dict):
            return None
        return summary if summary.get("status") == "diverged" or self._is_zip(*parts, "checkpoints", "last.pt") else None

    def _is_zip(self, *parts: str) -> bool:
        import zipfile

        try:
            with self._fs.open_input_file(self._path(*parts)) as f:
                return zipfile.is_zipfile(f)
        except OSError:
            return False

    def download(self, checkpoint: TrialCheckpoint, runs_dir: Path) -> Path:
        """Copy a checkpoint (a run directory) to ``runs_dir/<run name>`` on this machine, replacing
        what was there. Nothing outside ``runs_dir`` is ever removed: the name is one path component
        (:meth:`checkpoints` checked it), and a ``runs_dir`` that is a symbolic link is refused (a
        link planted in a shared sweep folder would point the removal elsewhere)."""
        import shutil

        import pyarrow.fs

        from adaptive_weights.config import is_run_name

        if not is_run_name(checkpoint.name):
            raise RefusedError(f"{checkpoint.path}: {checkpoint.name!r} is not a run name; it was not copied")
        if runs_dir.is_symlink():
            raise RefusedError(f"{runs_dir} is a symbolic link (to {runs_dir.resolve()}); the sweep's runs are "
                               "copied only into a real directory: remove the link and run the command again")
        dest = runs_dir / checkpoint.name
        if dest.is_symlink():
            dest.unlink()  # the link itself, never what it points to
        elif dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        _, src = pyarrow.fs.FileSystem.from_uri(checkpoint.path)
        pyarrow.fs.copy_files(src, str(dest), source_filesystem=self._fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        return dest
