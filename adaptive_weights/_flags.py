"""Flags shared by every subcommand, defined once: ``-q/--quiet`` and the config-key flags that
commands other than ``train`` take (``evaluate``, ``opt``), with their deprecated old spellings.

One flag style: a config key is the dotted flag that ``train`` takes (``--train.device``,
``--train.num_threads``, dashes or underscores), whatever the command. Older spellings that some
commands had (``opt --device --threads``, ``evaluate --device``) still work until 0.3; each prints
one warning on stderr naming the new flag. :data:`DEPRECATED_FLAGS` is the one table of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["DEPRECATED_FLAGS", "add_quiet", "add_config_flag", "config_flag", "deprecation_message"]

# canonical config key -> the old flags that mean it (hidden from --help, warned about when used)
DEPRECATED_FLAGS: dict[str, tuple[str, ...]] = {
    "train.device": ("--device",),
    "train.num_threads": ("--threads",),
}


def add_quiet(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``-q/--quiet`` (``args.quiet``): no progress bars or progress lines; results still print."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or progress lines (results and errors still print)")
    return parser


def config_flag(key: str) -> str:
    """The canonical flag of config key ``key``: ``train.num_threads`` -> ``--train.num_threads``."""
    return f"--{key}"


def deprecation_message(old: str, key: str) -> str:
    return (f"warning: {old} is deprecated and goes away in adaptive-weights 0.3; use {config_flag(key)} "
            "(every command spells a config key as train does)")


class _DeprecatedFlag(argparse.Action):
    """An old spelling: stores into the canonical key's destination and warns once per parse."""

    def __init__(self, option_strings: Sequence[str], dest: str, key: str = "", **kwargs: Any) -> None:
        self.key = key
        self.warned = False
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if not self.warned:
            print(deprecation_message(option_string or self.option_strings[0], self.key), file=sys.stderr)
            self.warned = True
        setattr(namespace, self.dest, values)


def add_config_flag(parser: argparse.ArgumentParser, key: str, *, dest: str, help: str, **kwargs: Any) -> None:
    """Config key ``key`` as ``--section.key`` (and with dashes for underscores), stored in
    ``args.<dest>``, plus its deprecated old spellings from :data:`DEPRECATED_FLAGS`."""
    canonical = config_flag(key)
    spellings = list(dict.fromkeys([canonical, canonical.replace("_", "-")]))
    parser.add_argument(*spellings, dest=dest, help=help, **kwargs)
    for old in DEPRECATED_FLAGS.get(key, ()):
        parser.add_argument(old, dest=dest, action=_DeprecatedFlag, key=key, help=argparse.SUPPRESS,
                            **{k: v for k, v in kwargs.items() if k != "default"})
