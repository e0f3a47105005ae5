"""Gradient rules: the mathematics of gradient equilibrium and of the TorchJD aggregators, measured
with autograd on tiny nets."""

from __future__ import annotations

import sys

import pytest
import torch

from adaptive_weights.errors import RefusedError
from adaptive_weights.gradients import create_gradient_rule, describe_gradient_rules, list_gradient_rules
from adaptive_weights.models import AnytimeResNet
from adaptive_weights.objectives import create_objective


def _net(**kw) -> AnytimeResNet:
    torch.manual_seed(0)
    return AnytimeResNet(n=1, c=4, num_classes=3, input_size=8, **kw)  # 3 units; an exit after each


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)


def _stage_params(model: AnytimeResNet) -> list[list[torch.nn.Parameter]]:
    """Trunk stage s: the units between exit s-1 and exit s (the stem belongs to stage 0)."""
    starts = [0] + [u + 1 for u in model.exit_units[:-1]]
    stages = [[p for i in range(a, u + 1) for p in model.units[i].parameters()]
              for a, u in zip(starts, model.exit_units, strict=True)]
    stages[0] = list(model.stem.parameters()) + stages[0]
    return stages


def _grads(params) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params]


def test_ge_gives_each_stage_the_mean_of_its_exits_gradients_and_leaves_heads_alone():
    model = _net()
    x, y = _batch()
    weights = torch.tensor([0.5, 2.0, 1.0])
    k_total = model.num_exits
    # reference: each exit's own weighted-loss gradient, by plain autograd
    params = list(model.parameters())
    per_exit = []
    for k in range(k_total):
        losses = create_objective("ce")(model(x), y)
        per_exit.append(torch.autograd.grad(weights[k] * losses[k], params, allow_unused=True))
    index = {id(p): i for i, p in enumerate(params)}

    def reference(p, exits):
        parts = [per_exit[j][index[id(p)]] for j in exits]
        return torch.stack([torch.zeros_like(p) if g is None else g for g in parts])

    rule = create_gradient_rule("ge", model)
    model.zero_grad(set_to_none=True)
    logits = rule.forward_fn()(x)
    assert torch.allclose(logits, model(x))  # the forward is unchanged
    loss = rule.backward(weights, create_objective("ce")(logits, y)).detach()
    assert loss.item() == pytest.approx(float((weights * create_objective("ce")(model(x), y)).sum().detach()), rel=1e-6)
    for s, stage in enumerate(_stage_params(model)):
        downstream = range(s, k_total)
        for p in stage:
            assert torch.allclose(p.grad, reference(p, downstream).mean(0), rtol=1e-4, atol=1e-7), f"stage {s}"
        if s < k_total - 1:  # the plain sum differs (so the test can tell the two apart)
            assert not torch.allclose(stage[0].grad, reference(stage[0], downstream).sum(0), rtol=1e-3)
    for k, head in enumerate(model.heads):
        for p in head.parameters():
            assert torch.allclose(p.grad, reference(p, [k])[0], rtol=1e-5, atol=1e-7)


def _linear_losses(model: AnytimeResNet, rows: list[torch.Tensor]) -> torch.Tensor:
    """Losses L_k = <a_k, stem weight>: the Jacobian on the trunk is exactly the rows a_k."""
    w = model.stem[0].weight
    return torch.stack([(w * a.view_as(w)).sum() for a in rows])


def _conflicting_rows(model: AnytimeResNet) -> tuple[torch.Tensor, torch.Tensor]:
    n = model.stem[0].weight.numel()
    g = torch.Generator().manual_seed(3)
    g1 = torch.randn(n, generator=g, dtype=torch.float32)
    g2 = -0.6 * g1 + 0.8 * torch.randn(n, generator=g)
    assert torch.dot(g1, g2) < 0
    return g1, g2


def test_pcgrad_on_two_conflicting_exits_is_the_projection_formula():
    model = _net(exits=[1, 2])
    g1, g2 = _conflicting_rows(model)
    rule = create_gradient_rule("pcgrad", model)
    model.zero_grad(set_to_none=True)
    rule.backward(torch.ones(2), _linear_losses(model, [g1, g2]))
    # Yu et al. 2020: g_i <- g_i - (g_i.g_j / |g_j|^2) g_j when g_i.g_j < 0; the update sums them
    p1 = g1 - torch.dot(g1, g2) / torch.dot(g2, g2) * g2
    p2 = g2 - torch.dot(g2, g1) / torch.dot(g1, g1) * g1
    got = model.stem[0].weight.grad.flatten()
    assert torch.allclose(got, p1 + p2, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(got, g1 + g2, rtol=1e-2)
    # the projected update no longer conflicts with either exit
    assert torch.dot(got, g1) >= -1e-5 and torch.dot(got, g2) >= -1e-5


def test_mgda_on_two_exits_is_the_min_norm_point_of_the_segment():
    model = _net(exits=[1, 2])
    g1, g2 = _conflicting_rows(model)
    rule = create_gradient_rule("mgda", model, epsilon=1e-9, max_iters=1000)
    model.zero_grad(set_to_none=True)
    rule.backward(torch.ones(2), _linear_losses(model, [g1, g2]))
    a = (torch.dot(g2 - g1, g2) / torch.dot(g1 - g2, g1 - g2)).clamp(0, 1)  # Sener & Koltun 2018, Alg. 1
    assert torch.allclose(model.stem[0].weight.grad.flatten(), a * g1 + (1 - a) * g2, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", ["upgrad", "cagrad"])
def test_conflict_averse_rules_do_not_increase_any_exit_loss_to_first_order(name):
    model = _net(exits=[1, 2])
    g1, g2 = _conflicting_rows(model)
    rule = create_gradient_rule(name, model)
    model.zero_grad(set_to_none=True)
    rule.backward(torch.ones(2), _linear_losses(model, [g1, g2]))
    got = model.stem[0].weight.grad.flatten()
    assert got.norm() > 0
    if name == "upgrad":  # in the dual cone of the rows (Quinton & Rey 2024, Thm. 1)
        assert torch.dot(got, g1) >= -1e-4 and torch.dot(got, g2) >= -1e-4
    else:  # Liu et al. 2021: on the ball |d - g0| = c |g0| around the mean row, a better worst case than g0
        g0 = (g1 + g2) / 2
        assert (got - g0).norm().item() == pytest.approx(0.5 * g0.norm().item(), rel=1e-3)
        assert min(torch.dot(got, g1), torch.dot(got, g2)) > min(torch.dot(g0, g1), torch.dot(g0, g2))


@pytest.mark.parametrize("name", ["pcgrad", "upgrad", "mgda", "cagrad"])
def test_an_exit_with_weight_zero_is_no_row_of_the_jacobian(name):
    # round-robin's step: exit 1 does not train. The trunk update must be the rule's update of the
    # two exits that do (as a zero row it made MGDA's and CAGrad's update 0 and shrank UPGrad's mean)
    two = _net(exits=[1, 2])
    g1, g2 = _conflicting_rows(two)
    torch.manual_seed(5)
    create_gradient_rule(name, two).backward(torch.ones(2), _linear_losses(two, [g1, g2]))
    expected = two.stem[0].weight.grad.flatten()
    assert expected.norm() > 0
    three = _net()
    rule = create_gradient_rule(name, three)
    torch.manual_seed(5)
    rule.backward(torch.tensor([1.0, 0.0, 1.0]), _linear_losses(three, [g1, g1 + g2, g2]))
    assert torch.allclose(three.stem[0].weight.grad.flatten(), expected, rtol=1e-4, atol=1e-6)
    # no exit that reaches the chosen units trains this step: their gradient is 0, as with `sum`
    last = create_gradient_rule(name, three, scope="last-group")
    three.zero_grad(set_to_none=True)
    x, y = _batch()
    last.backward(torch.tensor([1.0, 0.0, 0.0]), create_objective("ce")(three(x), y))
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in last.shared)


def test_torchjd_rules_leave_the_heads_with_their_own_gradient_and_scope_limits_the_rows():
    model = _net()
    x, y = _batch()
    weights = torch.tensor([1.0, 0.5, 2.0])
    ce = create_objective("ce")
    model.zero_grad(set_to_none=True)
    (weights * ce(model(x), y)).sum().backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    rule = create_gradient_rule("upgrad", model, scope="last-group")
    # last group: units of the final width; only the exits placed there are Jacobian rows
    assert [id(p) for p in rule.shared] == [id(p) for p in model.units[2].parameters()]
    assert rule.first_row == 2
    model.zero_grad(set_to_none=True)
    rule.backward(weights, ce(rule.forward_fn()(x), y))
    for name, p in model.named_parameters():
        if name.startswith(("heads.", "stem.", "units.0.", "units.1.")):
            assert torch.allclose(p.grad, plain[name], rtol=1e-5, atol=1e-7), name
    # one row: UPGrad's mean of one projected row is that row
    for name, p in model.units[2].named_parameters():
        assert torch.allclose(p.grad, plain[f"units.2.{name}"], rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize("name,hparams,match", [
    ("pcgrad", {"scope": "head"}, r"scope='head' is not allowed; choose one of trunk, last-group"),
    ("cagrad", {"c": -1}, r"c=-1 is out of range; allowed: \[0, 10\]"),
    ("mgda", {"max_iters": 0}, r"max_iters=0 is out of range"),
    ("ge", {"scope": "trunk"}, r"gradient rule 'ge': unknown hyper-parameter\(s\) scope; allowed: none"),
])
def test_bad_hyper_parameters_are_refused_by_name(name, hparams, match):
    with pytest.raises(RefusedError, match=match):
        create_gradient_rule(name, _net(), **hparams)


def test_a_missing_solver_is_refused_naming_the_extra(monkeypatch):
    from adaptive_weights.gradients import _torchjd

    def missing(name):
        raise ImportError("UPGrad requires ['quadprog'] to be installed")

    monkeypatch.setattr(_torchjd, "_torchjd", missing)
    with pytest.raises(RefusedError, match=r"'upgrad' needs TorchJD.*quadprog.*adaptive-weights\[multitask\]"):
        create_gradient_rule("upgrad", _net())


def test_a_missing_torchjd_is_refused_naming_the_extra(monkeypatch):
    """TorchJD is the ``multitask`` extra: its rules are refused when it is missing, the others work."""
    monkeypatch.setitem(sys.modules, "torchjd", None)  # as if not installed: importing it fails
    for name in ("pcgrad", "upgrad", "mgda", "cagrad"):
        with pytest.raises(RefusedError, match=rf"'{name}' needs TorchJD.*pip install 'adaptive-weights\[multitask\]'"):
            create_gradient_rule(name, _net())
    create_gradient_rule("ge", _net())


def test_listing_shows_every_rule_with_hyper_parameters_and_grids():
    assert list_gradient_rules() == ["cagrad", "ge", "mgda", "pcgrad", "sum", "upgrad"]
    text = describe_gradient_rules()
    assert "c              float default 0.5    range [0, 10]  grid [0.2, 0.5, 0.8]" in text
    assert "scope          str   default trunk  choices {trunk|last-group}" in text


def test_a_hyper_parameter_named_like_a_method_of_the_base_is_refused_at_registration():
    """It would become an instance attribute replacing the method: every step failed later."""
    from adaptive_weights.gradients import GRADIENT_RULES, GradientRule
    from adaptive_weights.strategies import HParam

    shadow = type("Shadow", (GradientRule,), {"hparams": {"backward": HParam(1.0)}})
    with pytest.raises(ValueError, match=r"\['backward'\] shadow attributes of GradientRule"):
        GRADIENT_RULES.register("test-shadow", shadow)
    assert "test-shadow" not in list_gradient_rules()
