"""Budgeted-batch inference: hand-computed thresholds, real early exit, fitting on validation only."""

import math

import numpy as np
import pytest
import torch

from adaptive_weights.budgeted import (
    budgeted_inference,
    evaluate_budgeted,
    exit_confidences,
    fit_thresholds,
    geometric_exit_distribution,
    simulate_exits,
)


class FakeAnytime(torch.nn.Module):
    """Three exits; the input is a column of sample ids and every exit's logits come from a table.

    ``seen[k]`` records the ids of the rows that reached ``advance(., k)``.
    """

    num_exits = 3

    def __init__(self, probs: torch.Tensor):  # [K, num_ids, C]
        super().__init__()
        self.register_buffer("table", probs.log())
        self.seen = [[] for _ in range(self.num_exits)]

    def exit_macs(self, input_size=None):
        return [1, 2, 3]

    def stem_forward(self, x):
        return x

    def advance(self, h, k):
        ids = h[:, 0].long()
        self.seen[k].extend(ids.tolist())
        return h, self.table[k, ids]


def _p(conf, cls=0):
    """A 3-class probability vector with confidence ``conf`` on class ``cls``."""
    row = [(1 - conf) / 2] * 3
    row[cls] = conf
    return row


# ids 0..5: validation; ids 6..9: test. PROBS[k][id] = exit k's class probabilities.
PROBS = torch.tensor(
    [
        [_p(0.9), _p(0.8), _p(0.7), _p(0.6), _p(0.5), _p(0.4), _p(0.85), _p(0.5), _p(0.6), _p(0.79)],
        [_p(0.9), _p(0.9), _p(0.55), _p(0.95), _p(0.65), _p(0.6), _p(0.9), _p(0.7, 1), _p(0.6), _p(0.66)],
        [_p(0.9), _p(0.9), _p(0.9), _p(0.9), _p(0.9), _p(0.9), _p(0.9), _p(0.9), _p(0.6, 2), _p(0.9)],
    ],
    dtype=torch.float64,
)
VAL_IDS, TEST_IDS, TEST_LABELS = [0, 1, 2, 3, 4, 5], [6, 7, 8, 9], [0, 0, 2, 0]


def _lo(p):
    """Log-odds of a confidence: the unit thresholds are expressed in."""
    return math.log(p / (1 - p))


def _batch(ids, labels=None):
    x = torch.tensor(ids, dtype=torch.float64)[:, None]
    return x, torch.tensor(labels if labels is not None else [0] * len(ids))


# --- the exit distribution ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("macs", "target", "expected"),
    [
        ([1, 3], 1.5, [0.75, 0.25]),  # 3 - 2 q0 = 1.5 -> q0 = 3/4, p = 1/3
        ([1, 3], 2.0, [0.5, 0.5]),
        ([1, 2, 4], 12 / 7, [4 / 7, 2 / 7, 1 / 7]),  # p = 1/2: (4 + 4 + 4)/7
        ([1, 2, 3], 2.0, [1 / 3, 1 / 3, 1 / 3]),  # p = 1
        ([1, 2, 3], 1.0, [1.0, 0.0, 0.0]),
        ([1, 2, 3], 3.0, [0.0, 0.0, 1.0]),
        ([5], 5.0, [1.0]),
    ],
)
def test_geometric_exit_distribution(macs, target, expected):
    q = geometric_exit_distribution(macs, target)
    np.testing.assert_allclose(q, expected, atol=1e-9)
    assert float(q @ np.asarray(macs, dtype=float)) == pytest.approx(target, abs=1e-9)


def test_geometric_exit_distribution_rejects_unreachable_targets():
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        geometric_exit_distribution([1, 3], 0.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        geometric_exit_distribution([3, 1], 2)


# --- threshold fitting ----------------------------------------------------------------------------
def test_fit_thresholds_by_hand():
    # Target 2 on costs [1, 2, 3]: q = 1/3 each, so 2 of the 6 samples leave at every exit.
    # Exit 0 conf 0.9 0.8 0.7 0.6 0.5 0.4 -> T0 = 0.8 (ids 0, 1 leave).
    # Exit 1 conf of ids 2..5: 0.55 0.95 0.65 0.6 -> T1 = 0.65 (ids 3, 4 leave). T2 = -inf.
    val = PROBS[:, VAL_IDS]
    t = fit_thresholds(val, [1, 2, 3], 2.0, kind="probs")
    assert t[:2] == pytest.approx([_lo(0.8), _lo(0.65)], abs=1e-5) and t[2] == -math.inf
    assert fit_thresholds(val.log(), [1, 2, 3], 2.0) == pytest.approx(t, abs=1e-5)  # from logits
    assert simulate_exits(exit_confidences(val, "probs"), t).tolist() == [0, 0, 2, 1, 1, 2]
    # Target 1 (first exit's cost): everyone leaves at exit 0; target 3: nobody leaves early.
    t1 = fit_thresholds(val, [1, 2, 3], 1.0, kind="probs")
    assert (
        t1[0] == pytest.approx(_lo(0.4), abs=1e-5)
        and simulate_exits(exit_confidences(val, "probs"), t1).tolist() == [0] * 6
    )
    assert fit_thresholds(val, [1, 2, 3], 3.0, kind="probs")[:2] == [math.inf, math.inf]


def test_fit_thresholds_rejects_bad_input():
    with pytest.raises(ValueError, match="exits"):
        fit_thresholds(PROBS[:, VAL_IDS], [1, 2], 1.5, kind="probs")
    with pytest.raises(ValueError, match="kind"):
        fit_thresholds(PROBS[:, VAL_IDS], [1, 2, 3], 2.0, kind="margin")
    with pytest.raises(ValueError, match="target_avg_macs"):
        fit_thresholds(PROBS[:, VAL_IDS], [1, 2, 3], 4.0, kind="probs")


def test_confidence_does_not_saturate():
    # float32 softmax gives p = 1.0 for both samples; their log-odds 40 - log 2 and 50 - log 2 differ
    logits = torch.tensor([[[40.0, 0.0, 0.0], [50.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    assert logits.softmax(-1)[0, :, 0].tolist() == [1.0, 1.0]
    conf = exit_confidences(logits)
    assert conf[0].tolist() == pytest.approx([40 - math.log(2), 50 - math.log(2)], abs=1e-5)
    assert conf[1].tolist() == pytest.approx([math.log(1 / 2)] * 2, abs=1e-6)  # p = 1/3
    # half the samples should leave at exit 0 (target 2 on costs [1, 3]): exactly one does
    t = fit_thresholds(logits, [1, 3], 2.0)
    assert simulate_exits(conf, t).tolist() == [1, 0]


# --- early exit -----------------------------------------------------------------------------------
def test_budgeted_inference_never_runs_exits_after_a_sample_left():
    model = FakeAnytime(PROBS)
    x, _ = _batch(TEST_IDS)
    out = budgeted_inference(model, x, [_lo(0.8), _lo(0.65), -math.inf])
    # id 6: 0.85 >= 0.8 -> exit 0 (class 0). id 7: 0.5, then 0.7 -> exit 1 (class 1).
    # id 8: 0.6, 0.6 -> exit 2 (class 2). id 9: 0.79 < 0.8, then 0.66 -> exit 1 (class 0).
    assert out.exits.tolist() == [0, 1, 2, 1]
    assert out.predictions.tolist() == [0, 1, 2, 0]
    assert out.macs.tolist() == [1, 2, 3, 2]
    assert model.seen == [[6, 7, 8, 9], [7, 8, 9], [8]]
    # the same exits as thresholding every exit's confidence computed in full
    full = exit_confidences(PROBS[:, TEST_IDS], "probs")
    assert simulate_exits(full, [_lo(0.8), _lo(0.65), -math.inf]).tolist() == [0, 1, 2, 1]


def test_budgeted_inference_stops_when_the_batch_is_empty():
    model = FakeAnytime(PROBS)
    out = budgeted_inference(model, _batch([6, 7])[0], [-9.0, -9.0, -math.inf])
    assert out.exits.tolist() == [0, 0] and model.seen == [[6, 7], [], []]
    with pytest.raises(ValueError, match="one per exit"):
        budgeted_inference(model, _batch([6])[0], [0.5, -math.inf])


def test_evaluate_budgeted_fits_on_validation_only():
    model = FakeAnytime(PROBS)
    val_loader = [_batch([0, 1, 2]), _batch([3, 4, 5])]
    test_loader = [_batch([6, 7], TEST_LABELS[:2]), _batch([8, 9], TEST_LABELS[2:])]
    model.train()
    (res,) = evaluate_budgeted(model, val_loader, test_loader, [2.0])
    assert model.training  # mode restored
    assert res["thresholds"][:2] == pytest.approx([_lo(0.8), _lo(0.65)], abs=1e-5)
    assert res["val_avg_macs"] == pytest.approx(2.0)  # (1 + 1 + 2 + 2 + 3 + 3) / 6
    # test: exits 0, 1, 2, 1; predictions 0, 1, 2, 0 vs labels 0, 0, 2, 0
    assert res["accuracy"] == 0.75
    assert res["avg_macs"] == 2.0  # (1 + 2 + 3 + 2) / 4
    assert res["exit_histogram"] == [1, 2, 1]
    # validation ran every exit on every sample; test rows stopped at their exits
    assert model.seen[0] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert model.seen[2] == [0, 1, 2, 3, 4, 5, 8]


def test_real_anytime_resnet_skips_units_after_each_exit():
    from adaptive_weights.models import AnytimeResNet

    torch.manual_seed(0)
    model = AnytimeResNet(1, 4, num_classes=5, input_size=8).eval()
    assert model.num_exits == 3 and list(model.exit_units) == [0, 1, 2]
    x = torch.randn(16, 3, 8, 8)
    rows = [0] * len(model.units)
    hooks = [
        unit.register_forward_pre_hook(lambda _m, args, i=i: rows.__setitem__(i, rows[i] + args[0].shape[0]))
        for i, unit in enumerate(model.units)
    ]
    with torch.no_grad():
        full = model(x)  # [K, B, C]
    conf = exit_confidences(full)
    thresholds = fit_thresholds(full, model.exit_macs(), float(np.mean(model.exit_macs())))
    rows[:] = [0] * len(rows)
    out = budgeted_inference(model, x, thresholds)
    for h in hooks:
        h.remove()
    exits = simulate_exits(conf, thresholds)
    assert out.exits.tolist() == exits.tolist()
    assert 0 < int((exits == 0).sum()) < 16  # some leave early, some do not
    # unit k belongs to exit k's segment: it ran on exactly the samples that had not left before
    assert rows == [int((exits >= k).sum()) for k in range(3)]
    chosen = full[exits, torch.arange(16)].argmax(-1)
    assert out.predictions.tolist() == chosen.tolist()
    assert out.macs.tolist() == [model.exit_macs()[e] for e in exits.tolist()]


def test_budgeted_macs_are_those_of_the_images_given():
    """A net built for 32x32 inputs and run on 8x8 ones spends the 8x8 MACs, as anytime() counts.

    At 8x8, n=1, c=4, 3 -> 5 classes: stem 3*4*9*64 = 6,912; unit 0 2*4*4*9*64 = 18,432; units 1
    and 2 13,824 each; heads 4*5, 8*5, 16*5 -> exits cost 25,364, 39,228 and 53,132.
    """
    from adaptive_weights.models import AnytimeResNet

    torch.manual_seed(0)
    model = AnytimeResNet(1, 4, num_classes=5).eval()  # input_size 32
    x = torch.randn(6, 3, 8, 8)
    assert [cost for _, cost, _ in model.anytime(x)] == [25_364, 39_228, 53_132]
    out = budgeted_inference(model, x, [math.inf, math.inf, -math.inf])  # everyone at the last exit
    assert out.macs.tolist() == [53_132] * 6
    loader = [(x, torch.zeros(6, dtype=torch.long))]
    (res,) = evaluate_budgeted(model, loader, loader, [53_132])  # the last exit's cost at 8x8
    assert res["avg_macs"] == res["val_avg_macs"] == 53_132 and res["exit_histogram"] == [0, 0, 6]
