"""One configuration for the CLI, the Python API and Ray Tune.

A run is a frozen tree of dataclasses. Its flat form uses dotted keys (``model.n``,
``strategy.gamma``, ``train.lr_milestones``); the CLI flags (``--model.n``, dashes or underscores),
YAML files (nested or flat) and a Ray Tune ``param_space`` all use exactly these keys. Overrides are
converted against the type annotations, and :meth:`RunConfig.resolve` validates everything in one
place, naming the key, the bad value and what is allowed, before any work starts.

The plug-in sections ``strategy``, ``objective`` and ``gradient`` are open: besides ``<section>.name``
their keys are the chosen plug-in's hyper-parameters (built-in or plugin), validated and completed
with defaults by that plug-in's registry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .compiled import COMPILE_MODES
from .errors import RefusedError
from .schedules import LR_SCHEDULES
from .speed import SPEEDS

__all__ = [
    "ModelConfig",
    "DataConfig",
    "SchemeConfig",
    "StrategyConfig",
    "ObjectiveConfig",
    "GradientConfig",
    "TrainConfig",
    "RunConfig",
    "PRESETS",
    "DATASET_PRESETS",
    "ARCHITECTURE_KEYS",
    "EXECUTION_KEYS",
    "MEMBER_KEYS",
    "RESUMABLE_KEYS",
    "MODEL_KEYS",
    "OPT_MODEL_KEYS",
    "NAMING_PREFIXES",
    "ROLES",
    "key_roles",
    "roles_of",
    "keys_with_role",
    "check_roles",
    "check_docs",
    "key_docs",
    "suggest_keys",
    "did_you_mean",
    "load_config_file",
    "flatten",
    "coerce_value",
    "is_run_name",
]


# ---------------------------------------------------------------- config-key roles
# Every field says once what it is for; every key list the library needs is derived from these
# roles (resume rules, report grouping, OPT matching, sweep run names). A field without exactly one
# of EXPERIMENT / EXECUTION is refused when this module is imported.
EXPERIMENT = "experiment"      # changes what a run computes: a resume may not change it
EXECUTION = "execution"        # only where or how fast a run executes: free on resume, ignored in comparisons
ARCHITECTURE = "architecture"  # fixes the network's shape or the loss's meaning (the checkpoint's tensors)
EXTENDABLE = "extendable"      # an experiment key a resume may raise (train.epochs: train longer)
MODEL = "model"                # identifies the data set and network of a setting (report grouping)
EXIT_LAYOUT = "exit_layout"    # where the exits sit: OPT runs (one exit) are matched without it
NAMING = "naming"              # shown in the default run name (default_run_name)
MEMBER = "member"              # may differ between the members of a pack (adaptive_weights.packing)
ROLES = (EXPERIMENT, EXECUTION, ARCHITECTURE, EXTENDABLE, MODEL, EXIT_LAYOUT, NAMING, MEMBER)


def _f(default: Any = dataclasses.MISSING, *roles: str, doc: str = "", factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its roles and its one-line description in the metadata
    (``field(metadata={"roles": ..., "doc": ...})``): ``train --help`` prints the description, so it
    is written here once, next to the default, and nowhere else."""
    return field(default=default, default_factory=factory, metadata={"roles": frozenset(roles), "doc": doc})


@dataclass(frozen=True)
class ModelConfig:
    """The anytime network; ``num_classes`` and ``in_channels`` come from the data. Each field's
    ``doc`` metadata is its one-line description (``adaptive-weights train --help``)."""

    arch: str = _f("resnet", EXPERIMENT, ARCHITECTURE, MODEL, NAMING,
                   doc="network: resnet (basic units, 32x32-style inputs) or imagenet-resnet (model.depth)")
    n: int = _f(3, EXPERIMENT, ARCHITECTURE, MODEL, NAMING,
                doc="resnet: residual units per resolution stage (3n units in all)")
    c: int = _f(16, EXPERIMENT, ARCHITECTURE, MODEL, NAMING,
                doc="resnet: channels of the first stage (doubled at each later stage)")
    period: int = _f(1, EXPERIMENT, ARCHITECTURE, MODEL, EXIT_LAYOUT, NAMING,
                     doc="an exit after every period-th unit (the last unit always has one)")
    depth: int = _f(50, EXPERIMENT, ARCHITECTURE, MODEL, NAMING,
                    doc="imagenet-resnet: 14, 26, 50, 101, 152 (bottlenecks) or 18, 34 (basic units)")
    unit_style: str = _f("preact", EXPERIMENT, ARCHITECTURE, MODEL,
                         doc="resnet unit: preact (BN-ReLU-conv-BN-ReLU-conv-BN) or 2017 (no ReLU before the first conv)")


@dataclass(frozen=True)
class DataConfig:
    """Which data set, where its files are, and the validation split (the default of CIFAR and
    SVHN: their last 5,000 training images)."""

    name: str = _f("digits", EXPERIMENT, ARCHITECTURE, MODEL, NAMING,
                   doc="data set: digits, synthetic, cifar10, cifar100, svhn or imagenet")
    root: str = _f("data", EXECUTION,
                   doc="folder holding the data set's files (digits and synthetic need none)")
    download: bool = _f(False, EXECUTION,
                        doc="fetch the official CIFAR/SVHN archive into data.root (MD5-checked) when missing")
    val_split: int | None = _f(None, EXPERIMENT,
                               doc="training images held out for validation (None: the set's default; 0: none)")
    svhn_extra: bool = _f(False, EXPERIMENT, doc="svhn: also train on extra_32x32.mat")
    augment: bool = _f(True, EXPERIMENT,
                       doc="augment the training split (the data set's crops, flips, jitter)")
    synthetic_size: int = _f(512, EXPERIMENT, doc="synthetic: training images")
    synthetic_image_size: int = _f(32, EXPERIMENT, doc="synthetic: image side in pixels")
    synthetic_classes: int = _f(10, EXPERIMENT, doc="synthetic: classes")
    image_size: int = _f(224, EXPERIMENT, doc="imagenet: crop side in pixels")
    num_workers: int = _f(4, EXECUTION, doc="imagenet: DataLoader worker processes decoding JPEGs")


@dataclass(frozen=True)
class SchemeConfig:
    """Static weights (``adaptive_weights.schemes``) and their normalisation."""

    name: str = _f("sieve", EXPERIMENT, ARCHITECTURE, NAMING, MEMBER,
                   doc="static weight scheme over the exits (const, linear, sieve, exp-lin, optimal@i, ...)")
    normalize: str = _f("last", EXPERIMENT, ARCHITECTURE, MEMBER,
                        doc="scale of the weights: last (final exit 1), sum (sum 1), log (sum log2(K+1)) or none")


@dataclass(frozen=True)
class StrategyConfig:
    """A registered strategy and its hyper-parameters (flat keys ``strategy.<hparam>``)."""

    name: str = _f("static", EXPERIMENT, ARCHITECTURE, NAMING, MEMBER,
                   doc="registered strategy (adaptive-weights strategies lists them)")
    params: Mapping[str, Any] = _f(dataclasses.MISSING, EXPERIMENT, NAMING, MEMBER, factory=dict,
                                   doc="hyper-parameters of the chosen plug-in")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What each exit's loss is (``adaptive_weights.objectives``) and its hyper-parameters (flat
    keys ``objective.<hparam>``); ``ce`` is plain cross-entropy."""

    name: str = _f("ce", EXPERIMENT, ARCHITECTURE, NAMING, MEMBER,
                   doc="registered objective: what each exit's loss is (adaptive-weights objectives)")
    params: Mapping[str, Any] = _f(dataclasses.MISSING, EXPERIMENT, NAMING, MEMBER, factory=dict,
                                   doc="hyper-parameters of the chosen plug-in")


@dataclass(frozen=True)
class GradientConfig:
    """How the weighted losses become gradients (``adaptive_weights.gradients``) and its
    hyper-parameters (flat keys ``gradient.<hparam>``); ``sum`` back-propagates the weighted sum."""

    name: str = _f("sum", EXPERIMENT, ARCHITECTURE, NAMING,
                   doc="registered gradient rule: how the exits' gradients combine (adaptive-weights gradients)")
    params: Mapping[str, Any] = _f(dataclasses.MISSING, EXPERIMENT, NAMING, factory=dict,
                                   doc="hyper-parameters of the chosen plug-in")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, as in the paper unless a key says otherwise. A preset (``auto``: the data
    set's recipe, ``DATASET_PRESETS``) scales its milestones with an overridden ``epochs`` (and the
    ``imagenet`` preset its rates with ``batch_size / 256``). ``lr_schedule`` is implemented in
    ``adaptive_weights.schedules``: ``step``'s ``lr_values[i]`` is the rate after ``i`` milestones
    have passed; ``cosine`` and ``onecycle`` take one peak rate, ``lr_values[0]``; each follows
    ``warmup_epochs`` of linear warm-up. ``speed`` (``adaptive_weights.speed``) fills ``compile``
    left at ``auto`` and ``channels_last``, ``cudnn_benchmark``, ``fused_sgd`` left unset once the
    device is known; ``config.json`` records the values used."""

    preset: str = _f("auto", EXPERIMENT,
                     doc="recipe filling epochs, lr_milestones and lr_values left unset (auto: the data set's)")
    epochs: int | None = _f(None, EXPERIMENT, EXTENDABLE,
                            doc="epochs to train (None: the preset's); a resume may raise it")
    lr_schedule: str = _f("step", EXPERIMENT,
                          doc="learning-rate schedule: step (the paper's), cosine or onecycle")
    lr_milestones: tuple[int, ...] | None = _f(None, EXPERIMENT,
                                               doc="step: epochs after which the next rate applies (None: the preset's)")
    lr_values: tuple[float, ...] | None = _f(None, EXPERIMENT,
                                             doc="step: the rates, one more than milestones; cosine/onecycle: the peak first")
    warmup_epochs: int = _f(0, EXPERIMENT, doc="epochs of linear learning-rate warm-up")
    batch_size: int = _f(128, EXPERIMENT,
                         doc="images per optimiser step (the global batch under data-parallel training)")
    momentum: float = _f(0.9, EXPERIMENT, doc="SGD momentum")
    nesterov: bool = _f(False, EXPERIMENT, doc="Nesterov momentum")
    label_smoothing: float = _f(0.0, EXPERIMENT, doc="label smoothing of every exit's cross-entropy")
    weight_decay: float = _f(2e-4, EXPERIMENT,
                             doc="L2 weight decay of the convolutions (a head's: times its exit's static weight; BN: none)")
    seed: int = _f(0, EXPERIMENT, NAMING, MEMBER,
                   doc="seed of the initial weights, data order, augmentation and strategy draws")
    device: str = _f("auto", EXECUTION, doc="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    amp: bool = _f(False, EXPERIMENT, doc="bfloat16 autocast on CUDA (no effect on the CPU)")
    speed: str = _f("auto", EXECUTION,
                    doc="auto (fast on a CUDA device, exact elsewhere), fast, or exact (fp32 eager); fills the "
                        "four keys below left unset")
    channels_last: bool | None = _f(None, EXECUTION,
                                    doc="channels-last memory format (None: from train.speed)")
    compile: str = _f("auto", EXECUTION,
                      doc="torch.compile the step: none, default, reduce-overhead, max-autotune (auto: from train.speed)")
    cudnn_benchmark: bool | None = _f(None, EXECUTION,
                                      doc="cuDNN's algorithm search for the convolutions (None: from train.speed)")
    fused_sgd: bool | None = _f(None, EXECUTION, doc="SGD's fused kernel (None: from train.speed)")
    compile_cache: str | None = _f(None, EXECUTION,
                                   doc="directory of compiled artefacts, yours alone (None: torch's per-user one; "
                                       "a sweep's trials share one)")
    eval_splits: tuple[str, ...] = _f(("val", "test"), EXECUTION,
                                      doc="splits evaluated every epoch (val, test)")
    checkpoint_minutes: float = _f(0.0, EXECUTION,
                                   doc="also checkpoint mid-epoch every this many minutes (0: at epoch ends only)")
    max_steps_per_epoch: int | None = _f(None, EXPERIMENT,
                                         doc="cap on the optimiser steps of an epoch (None: the whole training split)")
    num_threads: int | None = _f(None, EXECUTION, doc="CPU threads of torch (None: torch's default)")
    progress: bool = _f(True, EXECUTION, doc="print progress lines")


# Upper bounds far above any sensible run that keep absurd values from failing after the run
# directory exists: SGD converts the rate and the decay to float32 (1e308 overflows), a model of
# c 100000 asks the allocator for terabytes, and n 100000 takes hours to build. A rate up to 1e6
# stays allowed: it diverges (a DivergedError, what the tests use it for), it does not crash.
MAX_LR = 1e6
MAX_WEIGHT_DECAY = 1.0
MAX_MODEL_N = 200
MAX_MODEL_C = 1024

# name -> (epochs, milestones, lr values); the paper's recipes (tensorpack's "(e, v): v after epoch e").
PRESETS: dict[str, tuple[int, tuple[int, ...], tuple[float, ...]]] = {
    "cifar": (300, (140, 210, 250), (0.1, 0.01, 0.001, 0.0002)),
    "cifar-2017": (300, (1, 82, 123, 250), (0.01, 0.1, 0.01, 0.001, 0.0002)),
    "svhn": (60, (15, 30, 45), (0.1, 0.01, 0.001, 0.0002)),
    "svhn-2017": (25, (1, 7, 11, 20), (0.01, 0.1, 0.01, 0.001, 0.0002)),
    "imagenet": (128, (30, 60, 90, 105), (0.1, 0.01, 0.001, 0.0001, 0.00001)),
    "digits": (30, (20, 26), (0.1, 0.01, 0.001)),
    "smoke": (2, (1,), (0.05, 0.005)),
}
# train.preset auto: the recipe of the data set (smoke only for the synthetic set, which exists for tests)
DATASET_PRESETS = {"cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn", "imagenet": "imagenet",
                   "digits": "digits", "synthetic": "smoke"}

_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "scheme": SchemeConfig,
    "strategy": StrategyConfig,
    "objective": ObjectiveConfig,
    "gradient": GradientConfig,
    "train": TrainConfig,
}
# the open plug-in sections: the roles of their ``params`` field hold for every <section>.<hparam> key
OPEN_SECTIONS = ("strategy", "objective", "gradient")
_OPEN_FIELD = "params"
_NAME_ROLES = frozenset({EXECUTION, MEMBER})  # RunConfig.name only names the run directory
_NAME_DOC = "run name: the run directory's name (empty: derived from the config)"


def check_roles(section: str, tp: type) -> None:
    """Refuse a config dataclass whose field lacks exactly one of EXPERIMENT / EXECUTION or names an
    unknown role (run at import for every section, so a new key cannot be left unclassified)."""
    for f in fields(tp):
        roles = f.metadata.get("roles", frozenset())
        unknown = sorted(set(roles) - set(ROLES))
        if unknown or len(roles & {EXPERIMENT, EXECUTION}) != 1:
            raise TypeError(f"config key {section}.{f.name}: declare its roles with exactly one of "
                            f"{EXPERIMENT!r}/{EXECUTION!r} (and any of {', '.join(ROLES[2:])}); got "
                            f"{sorted(roles)}")


def check_docs(section: str, tp: type) -> None:
    """Refuse a config dataclass whose field lacks its one-line description (``_f(..., doc=...)``),
    so ``train --help`` describes every key, a new one too."""
    for f in fields(tp):
        doc = f.metadata.get("doc")
        if not isinstance(doc, str) or not doc.strip() or "\n" in doc:
            raise TypeError(f"config key {section}.{f.name}: give it a one-line description (_f(..., doc=...))")


for _section, _tp in _SECTIONS.items():
    check_roles(_section, _tp)
    check_docs(_section, _tp)


def key_docs() -> dict[str, str]:
    """Every config key -> its one-line description, in declaration order; an open plug-in section's
    hyper-parameters appear as ``strategy.<hparam>``."""
    out = {"name": _NAME_DOC}
    for section, tp in _SECTIONS.items():
        for f in fields(tp):
            key = f"{section}.<hparam>" if _is_open_field(section, f.name) else f"{section}.{f.name}"
            out[key] = f.metadata["doc"]
    return out


def suggest_keys(key: str, candidates: list[str] | None = None) -> list[str]:
    """The config keys closest to a mistyped ``key`` (dashes read as underscores), best first: in
    a known section, its keys whose name is close (``train.epoch`` -> ``train.epochs``); else the
    keys close as a whole (``modl.n`` -> ``model.n``); and any key of that exact name in another
    section (``epochs`` or ``model.epochs`` -> ``train.epochs``). Empty when nothing is close."""
    import difflib

    key = key.replace("-", "_")
    if candidates is None:
        candidates = [k for k in RunConfig.valid_keys() if "<" not in k]
    section, dot, name = key.rpartition(".")
    in_section = {k.rpartition(".")[2]: k for k in candidates if dot and k.rpartition(".")[0] == section}
    if in_section:
        close = [in_section[n] for n in difflib.get_close_matches(name, list(in_section), n=2, cutoff=0.7)]
    else:
        close = difflib.get_close_matches(key, candidates, n=2, cutoff=0.8)
    same_name = [k for k in candidates if k.rpartition(".")[2] == name and k != key]
    return list(dict.fromkeys(close + same_name))[:3]


def did_you_mean(key: str, candidates: list[str] | None = None) -> str:
    """``"; did you mean 'train.epochs'?"`` for a mistyped key, or ``""``."""
    hints = suggest_keys(key, candidates)
    return f"; did you mean {' or '.join(repr(h) for h in hints)}?" if hints else ""


def key_roles() -> dict[str, frozenset[str]]:
    """Every config key -> its roles, in declaration order; an open plug-in section appears as the
    prefix ``strategy.`` (standing for every ``strategy.<hparam>`` key)."""
    out: dict[str, frozenset[str]] = {"name": _NAME_ROLES}
    for section, tp in _SECTIONS.items():
        for f in fields(tp):
            key = f"{section}." if _is_open_field(section, f.name) else f"{section}.{f.name}"
            out[key] = f.metadata["roles"]
    return out


def roles_of(key: str) -> frozenset[str]:
    """The roles of one dotted key (``strategy.gamma`` has the roles of the strategy's
    hyper-parameters); an unknown key has none."""
    roles = key_roles()
    if key in roles:
        return roles[key]
    section = key.partition(".")[0]
    return roles.get(f"{section}.", frozenset()) if section in OPEN_SECTIONS else frozenset()


def _is_open_field(section: str, name: str) -> bool:
    return section in OPEN_SECTIONS and name == _OPEN_FIELD


def keys_with_role(role: str, *, without: str | None = None) -> tuple[str, ...]:
    """Keys that have ``role`` (and not ``without``), in declaration order."""
    return tuple(k for k, r in key_roles().items() if role in r and (without is None or without not in r))


# The derived lists (nothing else in the library spells a key list out).
ARCHITECTURE_KEYS = keys_with_role(ARCHITECTURE)
EXECUTION_KEYS = keys_with_role(EXECUTION)
RESUMABLE_KEYS = EXECUTION_KEYS + keys_with_role(EXTENDABLE)  # may differ on resume
# the data set first, so that settings sort by data set
MODEL_KEYS = tuple(sorted(keys_with_role(MODEL), key=lambda k: not k.startswith("data.")))
OPT_MODEL_KEYS = tuple(k for k in MODEL_KEYS if EXIT_LAYOUT not in roles_of(k))
NAMING_PREFIXES = keys_with_role(NAMING)  # ``strategy.`` stands for every hyper-parameter
MEMBER_KEYS = keys_with_role(MEMBER)  # ``strategy.``: every hyper-parameter; all else is shared in a pack

_HELP_HINT = "`adaptive-weights train --help` lists every key"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# a run name is one directory name (results/runs/<name>, a sweep's runs/<name>): never a path
_RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_run_name(name: Any) -> bool:
    """Whether ``name`` has the form of a run name: letters, digits, '.', '_' and '-', starting
    with a letter or digit, so it is one path component and never ``..``."""
    return isinstance(name, str) and _RUN_NAME_RE.fullmatch(name) is not None and len(name) <= 255


_EVAL_SPLITS = ("val", "test")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def coerce_value(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (a CLI string, a YAML scalar, a Tune sample) to annotation ``tp``.

    Raises ``ValueError`` naming the key, the value and the expected type.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(key, value, inner[0])
    if origin is tuple:
        elem = args[0] if args else str
        if isinstance(value, str):
            items = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(coerce_value(key, v.strip() if isinstance(v, str) else v, elem) for v in items)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise TypeError
        if tp is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float):
                if not value.is_integer():
                    raise TypeError
                return int(value)
            return int(str(value).strip())
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        raise RefusedError(f"{key}: expected {_type_name(tp)}, got {value!r}") from None
    return value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys (a mapping under ``strategy`` stays flat too)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_key(key: str) -> str:
    """A dotted key as it is read: dashes are underscores (``--train.batch-size``), except in the
    strategy name of a sweep file's ``sweep.per_strategy.<name>.<key>``: a name is kept as
    registered (``round-robin``)."""
    parts = [part.replace("-", "_") for part in str(key).split(".")]
    if len(parts) >= 3 and parts[:2] == ["sweep", "per_strategy"]:
        parts[2] = str(key).split(".")[2]
    return ".".join(parts)


class _DuplicateKey(ValueError):
    """A mapping key written twice in a config or sweep file."""


def _refuse_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {key!r} is written twice")
        out[key] = value
    return out


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``, refusing a mapping key written twice (YAML would keep the last, and a
    grid axis written twice would silently lose one of its values), naming both lines."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # the keys as written (a merged <<: key may be overridden)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # yaml refuses it itself
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(f"the key {key!r} is written twice (lines {seen[key]} and {line})")
            seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # a SafeLoader: plain data only


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file (nested sections or flat dotted keys) into flat dotted keys.

    A run directory's ``config.json`` (which wraps the config with version information) is
    accepted too, so ``--config results/runs/x/config.json`` reproduces a run.
    """
    path = Path(path)
    if not path.is_file():
        raise RefusedError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RefusedError(f"config file {str(path)!r} is not UTF-8 text (a YAML or JSON file?): {err}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_refuse_duplicate_pairs)
        else:
            data = _load_yaml(text) or {}
    except _DuplicateKey as err:
        raise RefusedError(f"config file {str(path)!r}: {err}; a second value would silently replace the first "
                           "(a list there is a grid axis): keep one") from None
    except (json.JSONDecodeError, ValueError) as err:
        raise RefusedError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    except Exception as err:  # yaml.YAMLError and its subclasses
        raise RefusedError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(data, Mapping):
        raise RefusedError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    if "config" in data and isinstance(data["config"], Mapping):
        data = data["config"]
    return {config_key(k): v for k, v in flatten(data).items()}


@dataclass(frozen=True)
class RunConfig:
    """A whole run. ``name`` names the run directory (empty: derived from the config)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""

    # ----------------------------------------------------------------- flat form
    def to_flat(self) -> dict[str, Any]:
        """Dotted keys -> plain JSON-friendly values (tuples become lists)."""
        out: dict[str, Any] = {"name": self.name}
        for section in _SECTIONS:
            obj = getattr(self, section)
            for f in fields(obj):
                value = getattr(obj, f.name)
                if _is_open_field(section, f.name):
                    out.update({f"{section}.{k}": _plain(v) for k, v in sorted(value.items())})
                else:
                    out[f"{section}.{f.name}"] = _plain(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Nested sections, as written to ``config.json``."""
        nested: dict[str, Any] = {"name": self.name}
        for key, value in self.to_flat().items():
            if "." in key:
                section, sub = key.split(".", 1)
                nested.setdefault(section, {})[sub] = value
        return nested

    @classmethod
    def valid_keys(cls) -> list[str]:
        keys = ["name"]
        for section, tp in _SECTIONS.items():
            keys += [f"{section}.{f.name}" for f in fields(tp) if not _is_open_field(section, f.name)]
        return keys + [f"{section}.<hyper-parameter of the chosen {section}>" for section in OPEN_SECTIONS]

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Apply dotted-key overrides on ``base`` (default config); unknown keys are an error."""
        base = base or cls()
        sections: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
        open_params = {s: dict(getattr(base, s).params) for s in OPEN_SECTIONS}
        name = base.name
        for raw_key, value in flat.items():
            key = str(raw_key).replace("-", "_")
            if key == "name":
                name = coerce_value(key, value, str)
                continue
            section, _, sub = key.partition(".")
            if section not in _SECTIONS or not sub:
                hint = did_you_mean(key) or f"; the sections are name, {', '.join(_SECTIONS)}"
                raise RefusedError(f"unknown config key {raw_key!r}{hint} ({_HELP_HINT})")
            if section in OPEN_SECTIONS and sub != "name":
                if sub == _OPEN_FIELD:
                    raise RefusedError(f"{key}: give hyper-parameters as {section}.<name> keys")
                open_params[section][sub] = value
                continue
            types_ = typing.get_type_hints(_SECTIONS[section])
            if sub not in types_:
                valid = [k for k in cls.valid_keys() if k.startswith(section + ".")]
                hint = did_you_mean(key) or f"; valid keys in {section}: {', '.join(valid)}"
                raise RefusedError(f"unknown config key {raw_key!r}{hint} ({_HELP_HINT})")
            sections[section][sub] = coerce_value(key, value, types_[sub])
        for section, params in open_params.items():
            if "name" in sections[section] and sections[section]["name"] != getattr(base, section).name:
                # hyper-parameters of the previous plug-in do not carry over to another one
                params = {k: v for k, v in params.items() if k in _given(flat, section)}
            sections[section][_OPEN_FIELD] = params
        return cls(
            name=name,
            **{s: replace(getattr(base, s), **kw) for s, kw in sections.items()},
        )

    def with_train_execution(self, **values: Any) -> RunConfig:
        """A copy with train *execution* keys replaced by values the library chose itself (what
        ``train.speed`` fills): a resolved config stays resolved, since such a key changes nothing
        that validation checks. Any other key is refused: its copy must be resolved again."""
        bad = sorted(k for k in values if f"train.{k}" not in EXECUTION_KEYS)
        if bad:
            raise ValueError(f"with_train_execution: {bad} are not execution keys of train")
        copy = replace(self, train=replace(self.train, **values))
        if self.__dict__.get("_resolved"):
            object.__setattr__(copy, "_resolved", True)
        return copy

    # ----------------------------------------------------------------- validation
    def resolve(self) -> RunConfig:
        """Validate every key and fill defaults (preset, schedule, plug-in hyper-parameters, run name).

        Returns the resolved config that a run records; raises :class:`RefusedError` naming the
        first bad key. This is the one validation: the result is marked resolved, so ``train()``
        and the plug-ins' construction take it as it is (resolving it again returns it unchanged;
        a copy made with ``dataclasses.replace`` is a new, unresolved config).
        """
        if self.__dict__.get("_resolved"):
            return self

        from .data import DATASET_NAMES, check_known_sizes
        from .models import list_models
        from .schemes import NORMALIZATIONS, is_single_exit, scheme_weights

        m, d, s, t = self.model, self.data, self.scheme, self.train
        _choice("model.arch", m.arch, list_models())
        for key, value in (("model.n", m.n), ("model.c", m.c), ("model.period", m.period)):
            _positive(key, value)
        for key, value, most in (("model.n", m.n, MAX_MODEL_N), ("model.c", m.c, MAX_MODEL_C)):
            if value > most:  # refused here, not by the allocator (or hours of building) after the run dir exists
                raise RefusedError(f"{key}: expected at most {most} (ResNet-1202 has n 200; the paper's widths "
                                   f"are c 16-64), got {value}")
        _choice("model.unit_style", m.unit_style, ("preact", "2017"))
        _choice("data.name", d.name, DATASET_NAMES)
        if d.val_split is not None and d.val_split < 0:
            raise RefusedError(f"data.val_split: expected >= 0 or None, got {d.val_split}")
        for key, value in (("data.synthetic_size", d.synthetic_size),
                           ("data.synthetic_image_size", d.synthetic_image_size),
                           ("data.synthetic_classes", d.synthetic_classes), ("data.image_size", d.image_size)):
            _positive(key, value)
        if d.num_workers < 0:
            raise RefusedError(f"data.num_workers: expected >= 0, got {d.num_workers}")
        _choice("scheme.normalize", s.normalize, NORMALIZATIONS)
        try:
            scheme_weights(s.name, _num_exits(m), s.normalize)
        except ValueError as err:
            raise RefusedError(f"scheme.name: {err}") from None
        train = _resolve_train(t, d.name)
        check_known_sizes(d, train.batch_size)

        if is_single_exit(s.name) and self.strategy.name != "static":
            raise RefusedError(
                f"strategy.name: {self.strategy.name!r} cannot sample among the exits of the single-exit "
                f"scheme {s.name!r}; OPT runs use strategy 'static'"
            )
        plugins = {section: _resolve_plugin(section, getattr(self, section).name, getattr(self, section).params)
                   for section in OPEN_SECTIONS}
        if self.name and not is_run_name(self.name):
            raise RefusedError(f"name: {self.name!r} must be letters, digits, '.', '_' or '-', starting with a letter "
                               "or digit (it names the run's directory, never a path)")
        resolved = replace(self, train=train, **plugins)
        if not resolved.name:
            resolved = replace(resolved, name=default_run_name(resolved))
        object.__setattr__(resolved, "_resolved", True)
        return resolved


def _num_exits(m: ModelConfig) -> int:
    """The exit slots of the model section (its period's placement), without building the model."""
    from .models import count_units, exit_positions

    try:
        units = count_units(m.arch, n=m.n, depth=m.depth)
    except ValueError as err:
        raise RefusedError(f"model.{'depth' if 'depth' in str(err) else 'n'}: {err}") from None
    if m.period > units:
        raise RefusedError(f"model.period: {m.period} is more than the model's {units} units")
    return len(exit_positions(units, m.period))


def _resolve_train(t: TrainConfig, dataset: str) -> TrainConfig:
    """Check the train section and fill its schedule from the preset (``auto``: the data set's)."""
    _choice("train.preset", t.preset, ["auto", *PRESETS])
    preset = DATASET_PRESETS[dataset] if t.preset == "auto" else t.preset
    _choice("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    if not _DEVICE_RE.fullmatch(t.device):
        raise RefusedError(f"train.device: got {t.device!r}; allowed: auto, cpu, mps, cuda or cuda:<index>")
    _choice("train.speed", t.speed, SPEEDS)
    _choice("train.compile", t.compile, ("auto", *COMPILE_MODES))
    if t.compile_cache is not None and not t.compile_cache.strip():
        raise RefusedError("train.compile_cache: expected a directory, got an empty string (leave it unset for "
                           "torch's own cache)")
    for split in t.eval_splits:
        _choice("train.eval_splits", split, _EVAL_SPLITS)
    _positive("train.batch_size", t.batch_size)
    for key, value in (("train.max_steps_per_epoch", t.max_steps_per_epoch), ("train.num_threads", t.num_threads)):
        if value is not None:
            _positive(key, value)
    if not 0 <= t.seed < 2**63:
        raise RefusedError(f"train.seed: expected an integer in 0 .. 2**63-1, got {t.seed}")
    if not 0 <= t.momentum < 1:
        raise RefusedError(f"train.momentum: expected 0 <= momentum < 1, got {t.momentum}")
    if t.nesterov and t.momentum == 0:
        raise RefusedError("train.nesterov: Nesterov momentum needs train.momentum > 0, got 0")
    if not (math.isfinite(t.weight_decay) and 0 <= t.weight_decay <= MAX_WEIGHT_DECAY):
        raise RefusedError(f"train.weight_decay: expected a finite number in [0, {MAX_WEIGHT_DECAY:g}], got "
                           f"{t.weight_decay}")
    if not t.checkpoint_minutes >= 0:  # inf: only at epoch ends
        raise RefusedError(f"train.checkpoint_minutes: expected >= 0, got {t.checkpoint_minutes}")
    if not 0 <= t.label_smoothing < 1:
        raise RefusedError(f"train.label_smoothing: expected 0 <= label_smoothing < 1, got {t.label_smoothing}")
    if t.warmup_epochs < 0:
        raise RefusedError(f"train.warmup_epochs: expected >= 0, got {t.warmup_epochs}")

    epochs, milestones, values = PRESETS[preset]
    if t.epochs is not None:
        _positive("train.epochs", t.epochs)
        if t.lr_milestones is None and t.epochs != epochs:
            milestones, values = scaled_steps(milestones, values, epochs, t.epochs)
        epochs = t.epochs
    if t.warmup_epochs >= epochs:
        raise RefusedError(f"train.warmup_epochs: {t.warmup_epochs} leaves no epoch after the warm-up of a "
                           f"{epochs}-epoch run")
    if preset == "imagenet":  # spec §5.2: the base rate 0.1 is for batch 256, scaled linearly
        values = tuple(v * t.batch_size / 256 for v in values)
    if t.lr_schedule != "step":
        if t.lr_milestones:
            raise RefusedError(f"train.lr_milestones: the {t.lr_schedule} schedule has no milestones, got "
                               f"{list(t.lr_milestones)}; only train.lr_schedule step uses them")
        if t.lr_values is not None and len(t.lr_values) != 1:
            raise RefusedError(f"train.lr_values: the {t.lr_schedule} schedule takes one peak rate, got "
                               f"{list(t.lr_values)}")
        milestones, values = (), (t.lr_values or values)[:1]
    else:
        milestones = t.lr_milestones if t.lr_milestones is not None else milestones
        if list(milestones) != sorted(set(milestones)) or any(e < 1 for e in milestones):
            raise RefusedError(f"train.lr_milestones: expected increasing epochs >= 1, got {list(milestones)}")
        if t.lr_values is not None and len(t.lr_values) != len(milestones) + 1:
            raise RefusedError(
                f"train.lr_values: need {len(milestones) + 1} values for {len(milestones)} milestones "
                f"{list(milestones)}, got {len(t.lr_values)}: {list(t.lr_values)}")
        values = tuple(t.lr_values if t.lr_values is not None else values)[: len(milestones) + 1]
        if len(values) < len(milestones) + 1:
            raise RefusedError(
                f"train.lr_values: need {len(milestones) + 1} values for {len(milestones)} milestones, "
                f"got {list(values)}")
    if not all(math.isfinite(v) and 0 < v <= MAX_LR for v in values):
        scaled = " (the imagenet preset scales its rates by train.batch_size / 256)" if preset == "imagenet" else ""
        raise RefusedError(f"train.lr_values: expected positive finite learning rates of at most {MAX_LR:g}, "
                           f"got {list(values)}{scaled}")
    return replace(t, preset=preset, epochs=epochs, lr_milestones=tuple(milestones), lr_values=tuple(values))


def scaled_steps(milestones: tuple[int, ...], values: tuple[float, ...], epochs: int,
                 new_epochs: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A preset's step schedule shrunk or stretched from ``epochs`` to ``new_epochs``: each
    milestone moves to ``floor(m * new_epochs / epochs)``, but at least one epoch after the one
    before it (epoch 1 for the first), so every rate kept gets an epoch at least; the milestones
    that then land at or past the run's end go, with the rates after them: the preset's last and
    smallest rates are the ones a short run has no room for. cifar at 2 epochs: 0.1 for epoch 1,
    then 0.01 (merging the milestones that landed in one epoch once gave 0.1, then 0.0002: a
    500-fold drop that left the second epoch learning next to nothing)."""
    kept_milestones: list[int] = []
    kept_values = [values[0]]
    for milestone, after in zip(milestones, values[1:], strict=True):
        moved = max(math.floor(milestone * new_epochs / epochs), kept_milestones[-1] + 1 if kept_milestones else 1)
        if moved >= new_epochs:
            break
        kept_milestones.append(moved)
        kept_values.append(after)
    return tuple(kept_milestones), tuple(kept_values)


def default_run_name(cfg: RunConfig) -> str:
    """``digits-resnet3c16-sieve-aann-s0``: readable and unique across a typical grid."""
    m = cfg.model
    arch = f"{m.arch}{m.n}c{m.c}" if m.arch == "resnet" else f"{m.arch}{m.depth}"
    if m.period != 1:
        arch += f"p{m.period}"
    plugins = ""
    for section in OPEN_SECTIONS:  # objective and gradient rule only when not the default
        chosen = getattr(cfg, section)
        hp = "".join(f"-{k}{_plain(v)}" for k, v in sorted(chosen.params.items())
                     if v != _default_of(section, chosen.name, k))
        if section == "strategy" or hp or chosen.name != getattr(RunConfig(), section).name:
            plugins += f"-{chosen.name}{hp}"
    name = f"{cfg.data.name}-{arch}-{cfg.scheme.name}{plugins}-s{cfg.train.seed}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("@", "at").replace(":", "_"))  # a run name (is_run_name)


def plugin_class(section: str, name: str) -> Any:
    """The registered class behind ``<section>.name`` of an open section (its ``hparams`` declare
    the section's other keys); an unknown name raises ValueError listing the registered ones."""
    if section == "strategy":
        from .strategies import get_strategy_class

        return get_strategy_class(name)
    if section == "objective":
        from .objectives import get_objective_class

        return get_objective_class(name)
    from .gradients import get_gradient_rule_class

    return get_gradient_rule_class(name)


def _resolve_plugin(section: str, name: str, params: Mapping[str, Any]) -> Any:
    """The section's config with the plug-in's full validated hyper-parameters."""
    try:
        cls = plugin_class(section, name)
        resolved = cls.validate_hparams(dict(params))
    except ValueError as err:
        raise RefusedError(f"{section}: {err}") from None
    return _SECTIONS[section](name=name, params=resolved)


def _default_of(section: str, name: str, key: str) -> Any:
    hp = plugin_class(section, name).hparams.get(key)
    return None if hp is None else hp.default


def _given(flat: Mapping[str, Any], section: str) -> set[str]:
    return {str(k).replace("-", "_").split(".", 1)[1] for k in flat if str(k).startswith(f"{section}.")}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def _choice(key: str, value: Any, allowed: typing.Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise RefusedError(f"{key}: got {value!r}; allowed: {', '.join(map(str, allowed))}")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RefusedError(f"{key}: expected a positive integer, got {value!r}")
