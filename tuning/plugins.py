"""Plug-ins that a sweep's Ray workers must have: ``sweep.imports`` / ``--plugin MODULE``.

A plug-in registered in code (``import my_strategy`` before the sweep) lives in the driver's
registries only. A Ray worker is another Python process: it imports the trainable's module, not the
driver's script, so without help every trial of such a plug-in fails there with "unknown strategy"
after passing the driver's validation. Hence:

* ``sweep.imports`` (``--plugin MODULE``, repeatable) lists modules that every worker imports before
  it resolves its trial's config (:func:`import_plugins`, called by the trainables); the driver
  imports them before it expands the sweep file, so the file may name their plug-ins;
* a plug-in that the sweep uses and that was registered in the driver by an importable module is
  carried as if listed (:func:`sweep_imports`); one registered in ``__main__`` (the script
  itself) or inside a function cannot reach a worker and is refused before Ray starts, naming it;
* before Ray starts, one trial per combination of plug-ins is resolved in a fresh Python process
  with the workers' path, importing nothing but those modules (:func:`check_in_fresh_process`):
  what a worker would lack fails once, in the driver, as one line.

Nothing here imports Ray.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adaptive_weights.errors import RefusedError

__all__ = ["check_module_names", "import_plugins", "sweep_imports", "check_in_fresh_process", "PLUGIN_KEYS",
           "FIX"]

# config key -> (module, registry) of the plug-in kind the key names
PLUGIN_KEYS = {
    "strategy.name": ("adaptive_weights.strategies", "STRATEGIES"),
    "objective.name": ("adaptive_weights.objectives", "OBJECTIVES"),
    "gradient.name": ("adaptive_weights.gradients", "GRADIENT_RULES"),
    "scheme.name": ("adaptive_weights.schemes", "SCHEMES"),
    "model.arch": ("adaptive_weights.models", "MODELS"),
}
FIX = "put it in a module and pass --plugin MODULE / sweep.imports"
_FRESH_TIMEOUT_S = 300
_RESOLVED: set[str] = set()  # requests a fresh process resolved in this process's life


def check_module_names(value: Any, key: str = "sweep.imports") -> tuple[str, ...]:
    """``sweep.imports``: a module name or a list of them (``my_pkg.strategies``); anything else
    is refused naming the value, before anything is imported."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise RefusedError(f"{key}: expected a list of module names (e.g. [my_strategies]), got {value!r}")
    for name in names:
        if not (isinstance(name, str) and name and all(part.isidentifier() for part in name.split("."))):
            raise RefusedError(f"{key}: {name!r} is not a module name (dotted Python identifiers, e.g. "
                               "my_pkg.strategies)")
    return tuple(dict.fromkeys(names))


def import_plugins(modules: Iterable[str], key: str = "sweep.imports") -> None:
    """Import ``modules`` (each registers its plug-ins as it is imported); a module that cannot be
    imported is refused naming it and why. The driver calls it before it resolves a trial, and so
    does every worker. The working directory is searched last, as Ray's local workers search the
    driver's (the ``adaptive-weights`` command does not put it on ``sys.path`` by itself)."""
    modules = list(modules)
    here = os.path.abspath(os.curdir)
    if modules and "" not in sys.path and here not in sys.path:
        sys.path.append(here)
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise RefusedError(f"{key}: importing {name!r} failed: {type(err).__name__}: {err}") from None
            raise RefusedError(f"{key}: cannot import {name!r}: {err} (the module must be importable by every Ray "
                               "worker: installed, on PYTHONPATH, or in the directory the sweep starts from)") from None
        except Exception as err:  # noqa: BLE001 - a user's module may fail in any way; name it
            raise RefusedError(f"{key}: importing {name!r} failed: {type(err).__name__}: {err}") from None


def sweep_imports(spec: Any) -> tuple[str, ...]:
    """The modules every worker of ``spec`` imports: ``spec.imports``, then the modules that
    registered, in this process, the plug-ins the sweep uses (carried so that ``import
    my_strategy`` before the sweep works, as it does for ``train``). A used plug-in that no fresh
    process could import is refused, naming it and the fix."""
    carried = []
    for key, names in _used_names(spec).items():
        for name in names:
            entry = _code_registered(key, name)
            if entry is not None:
                carried.append(_importable_module(entry, _registry(key).kind))
    return tuple(dict.fromkeys([*spec.imports, *carried]))


def _used_names(spec: Any) -> dict[str, list[str]]:
    """The plug-in names the sweep's trials (or a searcher's space) give each key of PLUGIN_KEYS."""
    used: dict[str, list[str]] = {}
    for key in PLUGIN_KEYS:
        values = [t[key] for t in spec.trials if key in t] if spec.search == "grid" else _space_values(spec.space, key)
        used[key] = list(dict.fromkeys(str(v).split("@")[0].split(":")[0] if key == "scheme.name" else str(v)
                                       for v in values))
    return used


def _space_values(space: Mapping[str, Any], key: str) -> list[Any]:
    value = space.get(key)
    if value is None:
        return []
    if isinstance(value, Mapping):  # {choice: [...]}
        return [v for vs in value.values() for v in (vs if isinstance(vs, list) else [vs])]
    return list(value) if isinstance(value, list) else [value]


def _registry(key: str) -> Any:
    module, attr = PLUGIN_KEYS[key]
    return getattr(importlib.import_module(module), attr)


def _code_registered(key: str, name: str) -> Any:
    """The registry entry of ``name`` if it was registered in code outside the library (not a
    built-in, not an entry point, which a worker loads by itself), else None."""
    registry = _registry(key)
    if name not in registry:
        return None
    entry = registry.entry(name)
    module = getattr(entry.obj, "__module__", None) or ""
    if entry.origin.startswith("entry point") or module.startswith("adaptive_weights."):
        return None
    return entry


def _importable_module(entry: Any, kind: str) -> str:
    """The module that registers ``entry`` when a fresh process imports it; refused if none can."""
    module = getattr(entry.obj, "__module__", None) or ""
    qualname = getattr(entry.obj, "__qualname__", "")
    if module == "__main__":
        where = "in __main__ (the script itself), which the sweep's Ray workers cannot import"
    elif "<locals>" in qualname:
        where = f"inside a function ({module}.{qualname}), which a worker importing {module!r} does not run"
    elif not module or importlib.util.find_spec(module) is None:
        where = f"by the module {module!r}, which a fresh Python process cannot import"
    else:
        return module
    raise RefusedError(f"{kind} {entry.name!r} is registered {where}; every trial using it would fail in its "
                       f"worker with 'unknown {kind}'; {FIX}")


def check_in_fresh_process(spec: Any, imports: Sequence[str]) -> None:
    """Resolve one trial per combination of plug-ins as a worker will: in a fresh Python process
    that imports ``imports`` and nothing of this one, with the path Ray gives its local workers.
    A failure (a plug-in a worker would lack) is refused as one line naming the trial and its cause.
    A sweep of built-in and entry-point plug-ins only (no ``imports``) needs no check."""
    if not imports:
        return
    request = json.dumps({"imports": list(imports), "trials": _representatives(spec)}, sort_keys=True)
    if request in _RESOLVED:  # the command checked it before it took the sweep's lock
        return
    with tempfile.TemporaryDirectory(prefix="aw-fresh-") as cwd:  # not this process's directory
        proc = subprocess.run([sys.executable, "-m", __name__], input=request, capture_output=True, text=True,
                              cwd=cwd, env={**os.environ, "PYTHONPATH": _worker_path()}, timeout=_FRESH_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines and lines[-1] == "ok":
        _RESOLVED.add(request)
        return
    failure = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {
        "trial": None, "error": (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]}
    trial = f" the trial {failure['trial']}" if failure["trial"] else " a trial"
    raise RefusedError(f"a fresh Python process (as a Ray worker) cannot resolve{trial}: {failure['error']}; for a "
                       f"plug-in registered in code, {FIX}")


def _representatives(spec: Any) -> list[dict[str, Any]]:
    """One trial per combination of the PLUGIN_KEYS values (a grid), or a searcher's space at the
    first value of every searched key."""
    if spec.search == "grid":
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for trial in spec.trials:
            seen.setdefault(tuple(repr(trial.get(k)) for k in PLUGIN_KEYS), trial)
        return list(seen.values())
    from .sweepfile import _points

    return [{k: _points(v)[0] if k in spec.searched else v for k, v in spec.space.items()}]


def _worker_path() -> str:
    """PYTHONPATH as a local Ray worker sees it: the environment's, plus what Ray adds for the
    driver (its script's directory when on sys.path, and its working directory)."""
    script_dir = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    extra = [script_dir] if script_dir and script_dir in sys.path else []
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + extra + [os.path.abspath(os.curdir)]
    return os.pathsep.join(dict.fromkeys(parts))


def _resolve_request() -> int:
    """The fresh process's side: import the modules, resolve the trials; ``ok`` or the failure as JSON."""
    from .trainable import run_config

    request = json.load(sys.stdin)
    trial_name = None
    try:
        import_plugins(request["imports"])
        for trial in request["trials"]:
            trial_name = trial.get("name")
            run_config(trial, str(trial_name or "trial"))
    except Exception as err:  # noqa: BLE001 - reported to the driver as one line
        print(json.dumps({"trial": trial_name, "error": str(err).splitlines()[0] if str(err) else type(err).__name__}))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(_resolve_request())
