"""The generic registry, the strategy registry functions and the CLI listing."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import warnings

import pytest
import torch

from adaptive_weights import strategies
from adaptive_weights.strategies import (
    STRATEGIES,
    HParam,
    Registry,
    RewardLearner,
    SamplingStrategy,
    Strategy,
    create_strategy,
    describe_strategies,
    get_strategy_class,
    list_strategies,
    register_strategy,
)
from adaptive_weights.strategies.builtin import EGStrategy, RWMStrategy

BUILTINS = ["aann", "adaloss", "avgl", "eg", "quartile", "round-robin", "rwm", "static", "uniform", "warmup"]


def test_generic_registry_duplicates_lookup_and_natural_sort() -> None:
    reg: Registry[object] = Registry("model")
    objs = {n: object() for n in ("resnet56", "resnet8", "resnet110", "densenet")}
    for n, o in objs.items():
        reg.register(n, o, description=f"the {n}")
    assert reg.list() == ["densenet", "resnet8", "resnet56", "resnet110"]
    assert reg.list("resnet*") == ["resnet8", "resnet56", "resnet110"]
    assert reg.list("*net1?0") == ["resnet110"] and reg.list("vgg*") == []
    assert reg.get("resnet8") is objs["resnet8"] and reg.entry("resnet8").description == "the resnet8"
    reg.register("resnet8", objs["resnet8"])  # the same object again: a no-op
    with pytest.raises(ValueError, match="'resnet8' is already registered"):
        reg.register("resnet8", object())
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'; did you mean resnet56, resnet8.*available: densenet"):
        reg.get("resnet5")
    with pytest.raises(ValueError, match="invalid"):
        reg.register("ResNet", object())
    reg.unregister("densenet")
    assert "densenet" not in reg


def test_a_builtin_name_is_refused_before_the_first_lookup_and_builtins_never_half_load(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user class registered as a built-in's name before any lookup replaced the built-in and made
    the built-in module's import fail, after which lookups saw a half-loaded registry without a word."""
    pkg = tmp_path / "aw_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "builtin.py").write_text("from ._impl import Later, Shared\n")
    (pkg / "_impl.py").write_text(  # registers while its package's built-in module imports it
        "import aw_test_holder\nclass Shared: pass\naw_test_holder.REG.register('shared', Shared)\n"
        "class Later: pass\naw_test_holder.REG.register('later', Later)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    holder = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "aw_test_holder", holder)

    def fresh() -> Registry[object]:
        for mod in [m for m in sys.modules if m.startswith("aw_test_pkg")]:
            del sys.modules[mod]
        holder.REG = Registry("thing", builtin_modules=("aw_test_pkg.builtin",))
        return holder.REG

    try:
        reg = fresh()
        with pytest.raises(ValueError, match="'shared' is already registered"):
            reg.register("shared", object())
        assert reg.list() == ["later", "shared"] and reg.get("shared").__module__ == "aw_test_pkg._impl"
        reg = fresh()  # a built-in's own module imported first (no circular import through the registry)
        importlib.import_module("aw_test_pkg._impl")
        assert reg.list() == ["later", "shared"]
        # a built-in module that fails to import fails every lookup, not only the first
        broken: Registry[object] = Registry("thing", builtin_modules=("aw_test_missing",))
        for _ in range(2):
            with pytest.raises(ModuleNotFoundError, match="aw_test_missing"):
                broken.list()
    finally:
        for mod in [m for m in sys.modules if m.startswith("aw_test_pkg")]:
            del sys.modules[mod]


def test_builtins_listed_and_resolved() -> None:
    assert list_strategies() == BUILTINS or set(BUILTINS) <= set(list_strategies())
    assert list_strategies("a*") == ["aann", "adaloss", "avgl"]
    assert get_strategy_class("eg") is EGStrategy and EGStrategy.name == "eg"
    for name in BUILTINS:
        assert STRATEGIES.entry(name).description  # one line for the CLI


def test_builtins_found_without_entry_point_metadata() -> None:
    """Stale or missing metadata (a fresh process whose entry-point scan finds nothing): importing
    adaptive_weights.strategies.builtin on first lookup still registers every built-in."""
    code = ("import importlib.metadata as m; m.entry_points = lambda **kw: []; "
            "from adaptive_weights import strategies; print(','.join(strategies.list_strategies()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().split(",") == BUILTINS


def test_own_entry_points_reregistering_builtins_is_not_a_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(STRATEGIES, "_seen_entry_points", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert STRATEGIES.load_entry_points() == []
    assert get_strategy_class("rwm") is RWMStrategy


def test_subclass_of_a_builtin_registers_under_a_new_name() -> None:
    try:
        sub = register_strategy("test_eg_variant")(type("EGVariant", (EGStrategy,), {}))
        assert sub.name == "test_eg_variant" and EGStrategy.name == "eg"
        assert create_strategy("test_eg_variant", torch.ones(3)).spec()["name"] == "test_eg_variant"
    finally:
        STRATEGIES.unregister("test_eg_variant")


def test_unknown_strategy_lists_what_exists() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'rmw'; did you mean rwm\?.*available: aann, adaloss, avgl, eg"):
        create_strategy("rmw", torch.ones(3))
    with pytest.raises(ValueError, match="unknown strategy"):
        strategies.validate_hparams("nope", {})


def test_register_strategy_decorator_and_duplicate_name_is_an_error() -> None:
    try:
        @register_strategy("test_tmp_const", description="always the final exit")
        class Const(Strategy):
            hparams = {"scale": HParam(1.0, float, 0.0, 10.0, (1.0, 2.0), "multiplier")}

            def step_weights(self) -> torch.Tensor:
                return self.base * self.scale

        assert "test_tmp_const" in list_strategies("test_*")
        s = create_strategy("test_tmp_const", torch.tensor([1.0, 2.0]), scale=3)
        assert torch.equal(s.step_weights(), torch.tensor([3.0, 6.0])) and s.spec() == {"name": "test_tmp_const", "scale": 3.0}
        assert "test_tmp_const  [feedback: none]  always the final exit" in describe_strategies("test_*")
        with pytest.raises(ValueError, match="already registered"):
            register_strategy("test_tmp_const")(type("Other", (Strategy,), {}))
        with pytest.raises(ValueError, match="already registered"):
            register_strategy("eg")(type("MyEG", (Strategy,), {}))
    finally:
        STRATEGIES.unregister("test_tmp_const")
    assert get_strategy_class("eg") is EGStrategy


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (types.SimpleNamespace(), "must be a subclass of adaptive_weights.strategies.Strategy"),
        (type("BadFeedback", (Strategy,), {"feedback": "partial"}), "feedback 'partial'"),
        (type("Shadow", (Strategy,), {"hparams": {"observe": HParam(1.0)}}), "shadow Strategy attributes"),
        (type("Seeded", (Strategy,), {"hparams": {"seed": HParam(1.0)}}), r"\['seed'\] shadow"),
        # the machinery's names come from built instances, so none is missing from a hand list
        (type("Draws", (SamplingStrategy,), {"hparams": {"draws": HParam(1.0), "drawn_p": HParam(1.0)}}),
         r"\['drawn_p', 'draws'\] shadow"),
        (type("Sums", (RewardLearner,), {"hparams": {**RewardLearner.hparams, "reward_sum": HParam(1.0)}}),
         r"\['reward_sum'\] shadow"),
        (type("LogW", (EGStrategy,), {"hparams": {**RewardLearner.hparams, "log_w": HParam(1.0)}}),
         r"\['log_w'\] shadow"),
        # methods of the library's bases below Strategy (an hparam named so replaced the method)
        (type("Learn", (RewardLearner,), {"hparams": {**RewardLearner.hparams, "learn": HParam(1.0)}}),
         r"\['learn'\] shadow"),
        (type("Draw", (SamplingStrategy,), {"hparams": {"draw": HParam(1.0)}}), r"\['draw'\] shadow"),
    ],
)
def test_registration_rejects_bad_classes(obj, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        STRATEGIES.register("test_bad", obj)
    assert "test_bad" not in list_strategies()


def test_describe_strategies_lists_every_hparam_with_default_range_and_grid() -> None:
    text = describe_strategies()
    for name in list_strategies():
        assert f"\n{name}  [feedback: " in f"\n{text}"
        for key in get_strategy_class(name).hparams:
            assert key in text
    eg = describe_strategies("eg").splitlines()
    assert eg[0].startswith("eg  [feedback: bandit]  exponentiated gradient")
    gamma = next(line for line in eg if line.strip().startswith("gamma"))
    assert "float" in gamma and "default 0.3" in gamma and "range (0, 1]" in gamma and "grid [0.1, 0.2, 0.3, 0.4]" in gamma
    assert "(no hyper-parameters)" in describe_strategies("static")
    assert describe_strategies("zzz*") == ""


def test_in_place_update_is_refused_because_it_could_not_be_reverted() -> None:
    class InPlace(Strategy):
        state_tensors = ("score",)

        def setup(self) -> None:
            self.score = torch.zeros(self.K)

        def step_weights(self) -> torch.Tensor:
            return self.base

        def update(self, losses: torch.Tensor) -> None:
            self.score += losses

    s = InPlace(torch.ones(3))
    with pytest.raises(RuntimeError, match="modified 'score' in place"):
        s.observe(torch.ones(3))


def test_an_entry_point_named_like_a_builtin_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from adaptive_weights.strategies.builtin import AANNStrategy

    clash = EntryPoint(name="aann", value="adaptive_weights.strategies.builtin:EGStrategy", group=strategies.ENTRY_POINT_GROUP)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda **kw: [clash])
    monkeypatch.setattr(STRATEGIES, "_seen_entry_points", set())
    with pytest.warns(RuntimeWarning, match=r"skipping strategy plugin 'aann' \(adaptive_weights.strategies.builtin:EGStrategy\).*already registered"):
        assert STRATEGIES.load_entry_points() == []
    assert get_strategy_class("aann") is AANNStrategy and EGStrategy.name == "eg"
