"""CUDA checks (skipped without a GPU; run on a GPU node with `pytest -m gpu tests/test_gpu.py`).

The training step, the device-resident loader and every strategy must run without a single
host-device synchronisation: ``torch.cuda.set_sync_debug_mode("error")`` turns any sync into an
exception.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
import torch

from adaptive_weights.config import RunConfig
from adaptive_weights.training import build_run, build_step_plugins, train, training_step

pytestmark = pytest.mark.gpu

# cuBLAS reads this when it first allocates its workspace: set before any test of the module runs
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# n=1 (3 exits): each compiled run's graphs are half the n=2 ones, so a compiling test fits its
# 80 s in benchmarks/gpu_suite.sh; 512 images of 32x32 give the 6 batches a sync test takes
CUDA_FLAT = {
    "data.name": "synthetic", "data.synthetic_size": 512, "data.synthetic_image_size": 32,
    "model.n": 1, "model.c": 8, "train.preset": "smoke", "train.epochs": 1, "train.batch_size": 64,
    "train.progress": False, "train.device": "cuda", "train.speed": "exact",  # each test names its fast keys
}


@pytest.mark.parametrize("strategy", ["static", "aann", "eg", "rwm", "avgl", "adaloss", "uniform", "quartile"])
@pytest.mark.parametrize("amp", [False, True])
def test_training_step_never_syncs(strategy, amp):
    cfg = RunConfig.from_flat({**CUDA_FLAT, "strategy.name": strategy}).resolve()
    device = torch.device("cuda")
    data, model, base_weights, strat = build_run(cfg, device)
    objective, gradient = build_step_plugins(cfg, model)
    opt = torch.optim.SGD(model.parameter_groups(2e-4, base_weights.tolist()), lr=0.05, momentum=0.9)
    strat.start_epoch(1)  # learners active
    data.train.set_epoch(0)
    batches = iter(data.train)
    x, y = next(batches)
    training_step(model, opt, strat, x, y, objective=objective, gradient=gradient, amp=amp, device=device)  # warm-up (lazy CUDA init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            x, y = next(batches)
            loss, losses, weights, logits = training_step(model, opt, strat, x, y, objective=objective, gradient=gradient, amp=amp, device=device)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert losses.device.type == "cuda" and torch.isfinite(losses).all()
    p = strat.probabilities()
    assert p.device.type == "cuda" and abs(float(p.sum()) - 1) < 1e-5


@pytest.mark.parametrize("amp,channels_last,compile_mode", [
    (False, False, "none"), (True, True, "none"),
    pytest.param(False, False, "default", marks=pytest.mark.compiles),
    pytest.param(False, False, "reduce-overhead", marks=pytest.mark.compiles)])
def test_full_run_on_cuda(tmp_path, amp, channels_last, compile_mode):
    # the schedule pinned: a longer run scales the preset's milestones, which a resume refuses
    flat = {**CUDA_FLAT, "strategy.name": "eg", "train.amp": amp, "train.channels_last": channels_last,
            "train.compile": compile_mode, "train.lr_milestones": [], "train.lr_values": [0.05]}
    summary = train(RunConfig.from_flat(flat), out_dir=tmp_path / "r", tensorboard=False)
    errs = summary["errors"]["test"]
    assert len(errs) == 3 and all(0 <= e <= 1 for e in errs)
    # resume on CUDA reads the checkpoint back with weights_only=True
    more = train(RunConfig.from_flat({**flat, "train.epochs": 2}), out_dir=tmp_path / "r", resume=True,
                 tensorboard=False)
    assert more["epochs"] == 2


@pytest.mark.compiles
def test_a_default_cuda_run_is_fast(tmp_path):
    """train.speed auto on CUDA: compiled (CUDA graphs), channels_last, cudnn.benchmark and fused SGD,
    recorded in config.json; an exact resume of it continues eagerly with the plain SGD kernel."""
    import json

    flat = {k: v for k, v in CUDA_FLAT.items() if k != "train.speed"}
    flat.update({"strategy.name": "eg", "train.lr_milestones": [], "train.lr_values": [0.05]})
    summary = train(RunConfig.from_flat(flat), out_dir=tmp_path / "r", tensorboard=False)
    used = json.loads((tmp_path / "r" / "config.json").read_text())["config"]["train"]
    assert (used["compile"], used["channels_last"], used["cudnn_benchmark"], used["fused_sgd"]) == (
        "reduce-overhead", True, True, True)
    assert all(0 <= e <= 1 for e in summary["errors"]["test"])
    more = train(RunConfig.from_flat({**flat, "train.epochs": 2, "train.speed": "exact"}), out_dir=tmp_path / "r",
                 resume=True, tensorboard=False)
    assert more["epochs"] == 2
    used = json.loads((tmp_path / "r" / "config.json").read_text())["config"]["train"]
    assert (used["compile"], used["fused_sgd"]) == ("none", False)


BUILTINS = ["static", "aann", "eg", "rwm", "avgl", "adaloss", "uniform", "quartile"]


@pytest.mark.compiles
@pytest.mark.parametrize("strategy", BUILTINS)
def test_captured_strategy_step_matches_eager(strategy):
    """The strategy's step as CUDA graphs (mode reduce-overhead) against eager, on the same 20 loss
    vectors: the same exits drawn, the same weights and state (fp32, tight tolerance)."""
    from adaptive_weights.strategies import CompiledSteps, create_strategy, get_strategy_class

    dev = torch.device("cuda")
    hp = {"warmup_epochs": 0} if "warmup_epochs" in get_strategy_class(strategy).hparams else {}
    base = torch.linspace(0.2, 1.0, 27, device=dev)
    eager, captured = (create_strategy(strategy, base, seed=3, **hp) for _ in range(2))
    steps = CompiledSteps(captured, mode="reduce-overhead")
    g = torch.Generator(device=dev).manual_seed(0)
    for t in range(20):
        losses = torch.linspace(2.0, 0.5, 27, device=dev) * torch.exp(0.3 * torch.randn(27, device=dev, generator=g))
        torch.compiler.cudagraph_mark_step_begin()
        w_captured = steps.step_weights().clone()
        steps.observe(losses)
        w_eager = eager.step_weights()
        eager.observe(losses)
        torch.testing.assert_close(w_captured, w_eager, rtol=1e-5, atol=1e-6, msg=f"step {t}")
    a, b = eager.state_dict(), captured.state_dict()
    assert a["steps"] == b["steps"] == 20
    for key, value in a["tensors"].items():
        torch.testing.assert_close(b["tensors"][key], value, rtol=1e-5, atol=1e-6, msg=key)


@contextlib.contextmanager
def deterministic_kernels():
    """Two GPU trainings agree bit for bit only if their kernels do: cuDNN's deterministic
    algorithms, no atomics where a deterministic kernel exists, and Inductor choosing kernel
    configurations without timing them (a timed choice can change a reduction's order)."""
    import torch._inductor.config as inductor_config

    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    patch = inductor_config.patch(deterministic=True) if hasattr(inductor_config, "deterministic") \
        else contextlib.nullcontext()
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with patch:
            yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2])


@pytest.mark.compiles
@pytest.mark.parametrize("strategy", ["eg", "adaloss"])  # each run compiles the network: two strategies
def test_compiled_run_matches_eager_run(tmp_path, strategy):
    """train.compile=reduce-overhead against none: per-exit losses, weights and strategy state after
    2 epochs (eg's learning frozen in the first), fp32; then an exact resume in the fast mode: the
    straight run's directory is copied at its epoch-1 checkpoint and resumed, so both continue from
    the same state (two separately trained first epochs would also compare the GPU's run-to-run
    reproducibility). (Every built-in's captured step is compared with eager by
    test_captured_strategy_step_matches_eager.)"""
    import json

    flat = {**CUDA_FLAT, "strategy.name": strategy, "train.epochs": 2, "data.synthetic_size": 256}
    fast_flat = {**flat, "train.compile": "reduce-overhead"}

    def keep_epoch_1(row, ckpt):
        if row["epoch"] == 1:
            shutil.copytree(tmp_path / "fast", tmp_path / "resumed", ignore=shutil.ignore_patterns(".lock"))

    with deterministic_kernels():
        train(RunConfig.from_flat(flat), out_dir=tmp_path / "eager", tensorboard=False)
        train(RunConfig.from_flat(fast_flat), out_dir=tmp_path / "fast", report=keep_epoch_1, tensorboard=False)
        resumed = train(RunConfig.from_flat(fast_flat), out_dir=tmp_path / "resumed", resume=True,
                        tensorboard=False)

    def rows(d):
        return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]

    for ra, rb in zip(rows(tmp_path / "eager"), rows(tmp_path / "fast"), strict=True):
        for key in ra:
            if key.startswith(("train/loss/", "train/weight/", "train/prob/")):
                assert rb[key] == pytest.approx(ra[key], rel=2e-3, abs=1e-4), key
    assert resumed["epochs"] == 2 and len(rows(tmp_path / "resumed")) == 2
    sa = torch.load(tmp_path / "fast" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    sb = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    assert sa["steps"] == sb["steps"]
    for key, value in sa["tensors"].items():
        torch.testing.assert_close(sb["tensors"][key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.compiles
def test_a_pack_trains_on_cuda_with_the_fast_default(tmp_path):
    """A pack of two members under train.speed auto on CUDA: the packed forward compiled with CUDA
    graphs, channels_last, fused SGD; both members finish with finite errors and record the fast keys."""
    import json

    from adaptive_weights.packing import train_packed

    flat = {k: v for k, v in CUDA_FLAT.items() if k != "train.speed"}
    cfgs = [RunConfig.from_flat({**flat, "name": f"m{i}", "train.seed": i, "strategy.name": s})
            for i, s in enumerate(["eg", "static"])]
    summaries = train_packed(cfgs, out_dirs=[tmp_path / "m0", tmp_path / "m1"], tensorboard=False)
    for i, summary in enumerate(summaries):
        assert summary["status"] == "completed" and all(0 <= e <= 1 for e in summary["errors"]["test"])
        used = json.loads((tmp_path / f"m{i}" / "config.json").read_text())["config"]["train"]
        assert (used["compile"], used["channels_last"], used["fused_sgd"]) == ("reduce-overhead", True, True)
