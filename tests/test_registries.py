"""Models and schemes use the library's one Registry: duplicates refused, natural sort, plugins."""

import numpy as np
import pytest

from adaptive_weights.models import MODELS, AnytimeResNet, create_model, list_models, register_model
from adaptive_weights.registry import Registry
from adaptive_weights.schemes import (
    SCHEMES,
    SchemeFamily,
    is_single_exit,
    list_schemes,
    register_scheme,
    scheme_weights,
)
from adaptive_weights.strategies._api import STRATEGIES


def test_every_plug_in_kind_is_one_registry_class():
    assert all(type(r) is Registry for r in (MODELS, SCHEMES, STRATEGIES))
    assert MODELS.group == "adaptive_weights.models" and SCHEMES.group == "adaptive_weights.schemes"


def test_register_model_refuses_a_duplicate_and_a_non_model():
    with pytest.raises(ValueError, match="'resnet' is already registered"):
        register_model("resnet")(type("Other", (AnytimeResNet,), {}))
    with pytest.raises(ValueError, match="subclass of adaptive_weights.models.AnytimeNet"):
        register_model("not-a-model")(dict)


def test_a_registered_model_is_listed_naturally_and_built():
    @register_model("tiny10")
    class Tiny10(AnytimeResNet):
        """a plugin model"""

    register_model("tiny2")(type("Tiny2", (AnytimeResNet,), {}))
    try:
        assert list_models("tiny*") == ["tiny2", "tiny10"]
        assert isinstance(create_model("tiny10", n=1, c=2, num_classes=3), Tiny10)
    finally:
        MODELS.unregister("tiny10")
        MODELS.unregister("tiny2")
    assert list_models() == ["imagenet-resnet", "resnet"]


def test_a_registered_scheme_and_family_work_everywhere():
    register_scheme("ramp2", lambda k: np.arange(1, k + 1, dtype=float))
    register_scheme("first", SchemeFamily("@", "n", lambda k, t: (np.arange(k) < int(t)).astype(float),
                                          single_exit=False))
    try:
        assert scheme_weights("ramp2", 3, "none").tolist() == [1.0, 2.0, 3.0]
        assert scheme_weights("first@2", 3, "none").tolist() == [1.0, 1.0, 0.0]
        assert "first@n" in list_schemes() and "ramp2" in list_schemes()
        assert not is_single_exit("first@1") and is_single_exit("optimal@1")
        with pytest.raises(ValueError, match="already registered"):
            register_scheme("sieve", lambda k: np.ones(k))
    finally:
        SCHEMES.unregister("ramp2")
        SCHEMES.unregister("first")


@pytest.mark.parametrize("name,match", [
    ("optimal", "takes a parameter, e.g. optimal@i"),
    ("sieve:2", "'sieve' takes no parameter"),
    ("optimal@x", "must be an integer"),
    ("exp:nan", "must be > 0 and finite"),
    ("siev", "did you mean sieve"),
])
def test_bad_scheme_names_are_refused_with_the_reason(name, match):
    from adaptive_weights.errors import RefusedError

    with pytest.raises(RefusedError, match=match):
        scheme_weights(name, 4)
    assert not is_single_exit("bogus@1")
