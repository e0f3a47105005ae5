"""CUDA checks (skipped without a GPU; run on a GPU node with `pytest -m gpu tests/test_gpu.py`).

The training step, the device-resident loader and every strategy must run without a single
host-device synchronisation: ``torch.cuda.set_sync_debug_mode("error")`` turns any sync into an
exception.
"""

from __future__ import annotations

import pytest
import torch

from adaptive_weights.config import RunConfig
from adaptive_weights.train import build_run, train, training_step

pytestmark = pytest.mark.gpu

CUDA_FLAT = {
    "data.name": "synthetic", "data.synthetic_size": 512, "data.synthetic_image_size": 32,
    "model.n": 2, "model.c": 8, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 64,
    "train.progress": False, "train.device": "cuda",
}


@pytest.mark.parametrize("strategy", ["static", "aann", "eg", "rwm", "avgl", "adaloss", "uniform", "quartile"])
@pytest.mark.parametrize("amp", [False, True])
def test_training_step_never_syncs(strategy, amp):
    cfg = RunConfig.from_flat({**CUDA_FLAT, "strategy.name": strategy}).resolve()
    device = torch.device("cuda")
    data, model, base_weights, strat = build_run(cfg, device)
    opt = torch.optim.SGD(model.parameter_groups(2e-4, base_weights.tolist()), lr=0.05, momentum=0.9)
    strat.start_epoch(1)  # learners active
    data.train.set_epoch(0)
    batches = iter(data.train)
    x, y = next(batches)
    training_step(model, opt, strat, x, y, amp=amp, device=device)  # warm-up (lazy CUDA init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            x, y = next(batches)
            loss, losses, weights, logits = training_step(model, opt, strat, x, y, amp=amp, device=device)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert losses.device.type == "cuda" and torch.isfinite(losses).all()
    p = strat.probabilities()
    assert p.device.type == "cuda" and abs(float(p.sum()) - 1) < 1e-5


@pytest.mark.parametrize("amp,channels_last,compile_model", [(False, False, False), (True, True, False),
                                                            (False, False, True)])
def test_full_run_on_cuda(tmp_path, amp, channels_last, compile_model):
    flat = {**CUDA_FLAT, "strategy.name": "eg", "train.amp": amp, "train.channels_last": channels_last,
            "train.compile": compile_model}
    summary = train(RunConfig.from_flat(flat), out_dir=tmp_path / "r", tensorboard=False)
    errs = summary["errors"]["test"]
    assert len(errs) == 6 and all(0 <= e <= 1 for e in errs)
    # resume on CUDA reads the checkpoint back with weights_only=True
    more = train(RunConfig.from_flat({**flat, "train.epochs": 2}), out_dir=tmp_path / "r", resume=True,
                 tensorboard=False)
    assert more["epochs"] == 2
