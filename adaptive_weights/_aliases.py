"""The deprecated import names, kept until 0.3: the packages ``strategies`` and ``tuning`` (now
``adaptive_weights.strategies`` and ``adaptive_weights.tuning``) and the module
``adaptive_weights.train`` (now ``adaptive_weights.training``; ``adaptive_weights.train`` is the
function).

An old name must give the very same module objects as the new one: a second copy of a package
would hold registries and classes of its own (a strategy registered through one copy unknown to
the other, ``isinstance`` failing across them). So an old name never executes files under that
name: the top-level shims (adaptive_weights/_legacy/, installed as ``strategies`` and ``tuning``)
and the bare folders strategies/ and tuning/ themselves (found under the old name when Python runs
from the repository root) call :func:`redirect`, which puts the new package in the old name's
place, and :class:`AliasFinder`, first on ``sys.meta_path``, maps every submodule of an old name
to the new module object. Nothing in the library imports an old name, so a user's own
``strategies.py`` or ``tuning.py`` in the working directory only hides the alias.

The new names of the two folders come from the installation (setuptools' package-dir mapping: a
copy in a wheel, a finder of its own in an editable install). :class:`SourceTreeFinder`, last on
``sys.meta_path``, finds them beside the package when it runs from a source tree that nothing
installed maps (not installed, as benchmarks/gpu_suite.sh runs it, or installed from a wheel while
Python runs from the repository root).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["OLD_PACKAGES", "OLD_MODULES", "AliasFinder", "SourceTreeFinder", "install", "redirect"]

OLD_PACKAGES = {"strategies": "adaptive_weights.strategies", "tuning": "adaptive_weights.tuning"}
OLD_MODULES = {"adaptive_weights.train": "adaptive_weights.training"}


def _warn(old: str, new: str, stacklevel: int) -> None:
    note = (" (the name 'adaptive_weights.train' is the function train)" if old in OLD_MODULES
            else " (the same package under its old name)")
    warnings.warn(f"the import name {old!r} is deprecated and goes away in adaptive-weights 0.3: "
                  f"import {new!r} instead{note}", DeprecationWarning, stacklevel=stacklevel + 1)


def redirect(name: str) -> None:
    """Put the new package in the place of the old package ``name`` being imported (a shim's or a
    bare folder's ``__init__`` calls it); warns once, as the old name is imported once."""
    if name not in OLD_PACKAGES:
        raise ImportError(f"{name!r} is not an import name of adaptive-weights; import "
                          f"{' or '.join(repr(n) for n in OLD_PACKAGES.values())}")
    _warn(name, OLD_PACKAGES[name], stacklevel=3)  # past this function and the shim: the importing line
    sys.modules[name] = importlib.import_module(OLD_PACKAGES[name])


def _target(fullname: str) -> str | None:
    """The new name of ``fullname`` if it is an old one, else None. A submodule of an old package
    is one only while that package is the alias (not a user's own ``strategies``)."""
    if fullname in OLD_MODULES:
        return OLD_MODULES[fullname]
    top, dot, rest = fullname.partition(".")
    new = OLD_PACKAGES.get(top)
    alias = sys.modules.get(top)
    if dot and new is not None and alias is not None and alias is sys.modules.get(new):
        return f"{new}.{rest}"
    return None


class AliasFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of modules, as aliases of the new module objects."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        new = _target(fullname)
        if new is None or importlib.util.find_spec(new) is None:
            return None  # not an old name, or no such module: the usual ModuleNotFoundError
        return ModuleSpec(fullname, _AliasLoader(fullname, new))


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the new module object itself (imported first if need be)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        self._spec: Any = None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on it: give its own back
        if self.old in OLD_MODULES:
            _warn(self.old, self.new, stacklevel=2)

    def get_code(self, fullname: str) -> Any:
        """For ``python -m <old name>`` (runpy runs the new module's code)."""
        spec = importlib.util.find_spec(self.new)
        return spec.loader.get_code(self.new) if spec is not None and spec.loader is not None else None


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``adaptive_weights.strategies`` / ``.tuning`` in the folders strategies/ and tuning/
    beside the package's own folder, when that is a source tree (it holds pyproject.toml)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in OLD_PACKAGES.values():
            return None
        root = Path(__file__).resolve().parent.parent
        if not (root / "pyproject.toml").is_file():
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [str(root)])


def install() -> None:
    """Put :class:`AliasFinder` first on ``sys.meta_path`` (the path finder would otherwise load an
    old package's files a second time under the old name) and :class:`SourceTreeFinder` last
    (whatever the installation maps comes first); once."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
    if not any(isinstance(f, SourceTreeFinder) for f in sys.meta_path):
        sys.meta_path.append(SourceTreeFinder())
