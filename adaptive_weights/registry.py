"""A small generic name -> object registry with entry-point plugins (after timm's registries).

One class serves every plug-in kind of the library (models, schemes, strategies, objectives, gradient
rules). It imports nothing from training, so `strategies` may use it and still see only tensors.

Built-ins and third-party plugins take the same path: both are entry points of one group, loaded
lazily on the first lookup. A duplicate name is an error (registering the very same object twice is
a no-op, so a module imported both directly and through its entry point is fine); a broken plugin
gives a warning that names it and is skipped, so one bad package cannot break every run.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Entry", "Registry", "class_decorator", "natural_key"]

T = TypeVar("T")
C = TypeVar("C", bound=type)
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: `resnet8` before `resnet56`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, one-line description and origin (module or entry point)."""

    name: str
    obj: T
    description: str = ""
    origin: str = ""


class Registry(Generic[T]):
    """Names to objects, filled by `register` and by the entry points of `group`.

    `builtin_modules` are imported before the first lookup, so the built-ins are found even when the
    installed entry-point metadata is stale. `check(name, obj)` may raise to reject a bad object.
    """

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        builtin_modules: Iterable[str] = (),
        check: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = tuple(builtin_modules)
        # the packages of the built-in modules ("adaptive_weights.strategies." for
        # "adaptive_weights.strategies.builtin"), whose registrations run while the built-ins are being imported
        self._builtin_packages = tuple(f"{m.rpartition('.')[0] or m}." for m in self._builtin_modules)
        self._check = check
        self._entries: dict[str, Entry[T]] = {}
        self._seen_entry_points: set[tuple[str, str]] = set()
        self._loaded = False

    # -- writing ---------------------------------------------------------------------------------
    def register(self, name: str, obj: T, description: str = "", origin: str = "") -> T:
        """Add `obj` under `name`; a different object under an existing name raises ValueError.

        The built-in modules are imported first, so a name of a built-in is refused even before
        the first lookup (instead of taking the built-in's place and failing its import)."""
        module = getattr(obj, "__module__", None) or ""
        if not module.startswith(self._builtin_packages):  # a built-in's own import would go in a circle
            self._import_builtins()
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{self.kind} name {name!r} is invalid: use lowercase letters, digits, '_' or '-', starting with a letter"
            )
        old = self._entries.get(name)
        if old is not None:
            if old.obj is obj:
                return obj
            raise ValueError(
                f"{self.kind} {name!r} is already registered ({old.origin or _origin(old.obj)}); "
                f"refusing to override it with {origin or _origin(obj)}: pick another name"
            )
        if self._check is not None:
            self._check(name, obj)
        self._entries[name] = Entry(name, obj, description, origin or _origin(obj))
        return obj

    def unregister(self, name: str) -> None:
        """Remove `name` (tests and plugin unloading); a missing name raises ValueError."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}")
        del self._entries[name]

    # -- reading ---------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as `name`; a miss raises ValueError with close names and the full list."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The `Entry` for `name` (see `get`)."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        names = self.list()
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown {self.kind} {name!r}{hint} available: {', '.join(names) or 'none'}")

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell-style `pattern` (`e*`, `*rwm*`), naturally sorted."""
        self._ensure_loaded()
        return sorted(fnmatch.filter(self._entries, pattern), key=natural_key)

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        """The entries of `list(pattern)`, in the same order."""
        return [self._entries[name] for name in self.list(pattern)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    # -- plugins ---------------------------------------------------------------------------------
    def load_entry_points(self) -> list[str]:
        """Import built-in modules and every not-yet-seen entry point of `group`; return new names.

        Safe to call again after installing a package at run time (it rescans the environment).
        A plugin that fails to import, is not accepted by `check`, or clashes with a registered name
        is skipped with a warning naming it.
        """
        self._loaded = True
        before = set(self._entries)
        try:
            self._import_builtins()
        except BaseException:
            self._loaded = False  # every later lookup fails the same way, none sees half the built-ins
            raise
        if self.group is not None:
            importlib.invalidate_caches()
            for ep in importlib.metadata.entry_points(group=self.group):
                key = (ep.name, ep.value)
                if key in self._seen_entry_points:
                    continue
                self._seen_entry_points.add(key)
                try:
                    obj = ep.load()
                    self.register(ep.name, obj, _doc_line(obj), origin=f"entry point {ep.name} = {ep.value}")
                except Exception as err:  # noqa: BLE001 - a plugin may fail in any way; skip it loudly
                    warnings.warn(
                        f"skipping {self.kind} plugin {ep.name!r} ({ep.value}) from entry-point group "
                        f"{self.group!r}: {type(err).__name__}: {err}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return sorted(set(self._entries) - before, key=natural_key)

    def _import_builtins(self) -> None:
        """Import the built-in modules (a module already being imported is not imported again)."""
        for module in self._builtin_modules:
            importlib.import_module(module)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load_entry_points()


def class_decorator(registry: Registry) -> Callable[..., Callable[[C], C]]:
    """The ``@register_<kind>(name, description=...)`` class decorator of `registry`.

    The description defaults to the first line of the class docstring and is also set as the
    class attribute ``description`` (listings print it).
    """

    def register(name: str, *, description: str = "") -> Callable[[C], C]:
        def deco(cls: C) -> C:
            doc = description or _doc_line(cls)
            registry.register(name, cls, doc)
            cls.description = doc
            return cls

        return deco

    return register


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _doc_line(obj: Any) -> str:
    return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
