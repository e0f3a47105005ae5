"""What TensorBoard shows of a run: its custom-scalars layout refers to the run's own tags."""

from __future__ import annotations

import re

from adaptive_weights.logging import RunLogger


def _layout_and_tags(tb_dir):
    """The layout and the scalar tags as TensorBoard's own loader (which purges on resume) reads them."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for cat in layout.category for chart in cat.chart}
    return charts, list(acc.PluginTagToContent("scalars"))


ROW = {"epoch": 1, "step": 3, "lr": 0.1, **{f"{q}/exit_{k:02d}": 0.5 for q in ("train/loss", "train/prob", "val/err")
                                             for k in range(3)}}


def _log(run_dir, epochs, *, resume_epoch=0):
    logger = RunLogger(run_dir, resume_epoch=resume_epoch, tensorboard=True)
    for epoch in epochs:
        logger.log_epoch({**ROW, "epoch": epoch})
    logger.close()


def test_every_exit_of_a_quantity_shares_one_chart(tmp_path):
    _log(tmp_path, [1, 2])
    charts, tags = _layout_and_tags(tmp_path / "tb")
    assert list(charts) == ["train/prob", "train/loss", "val/err"]  # the probabilities first
    for title, regexes in charts.items():
        matched = [t for t in tags if any(re.match(r, t) for r in regexes)]
        assert matched == [f"{title}/exit_{k:02d}" for k in range(3)], (title, regexes)


def test_a_resumed_run_has_one_layout(tmp_path):
    """Resumed after epoch 1 (epoch 2 logged, then killed before its checkpoint), and resumed from a
    checkpoint inside epoch 1: the layout is written once, as every scalar is."""
    _log(tmp_path / "a", [1, 2])
    _log(tmp_path / "a", [2, 3], resume_epoch=1)
    _log(tmp_path / "b", [1])
    _log(tmp_path / "b", [1, 2], resume_epoch=0)
    for run in ("a", "b"):
        _layout_and_tags(tmp_path / run / "tb")  # unpacks exactly one layout event


def test_rewritten_hparams_replace_the_old(tmp_path):
    """A trial resumed (or, under PBT, continuing another trial's checkpoint, whose tb/ it copies)
    writes its HParams again; TensorBoard keeps the first summary of a tag it reads, so an old one
    left in tb/ would be what the HParams view shows."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from adaptive_weights.hparams import write_hparams
    from adaptive_weights.tuning import trainable

    assert trainable.write_hparams is write_hparams  # sweep trials and runs share one writer
    for gamma in (0.1, 0.3):
        write_hparams(tmp_path, {"strategy.gamma": gamma}, ["strategy.gamma"])
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["strategy.gamma"].number_value == 0.3
    assert len(acc.Tensors("_hparams_/session_start_info")) == 1


def _hparams(tb_dir) -> dict:
    """What TensorBoard's HParams view shows of a run folder: key -> number, text or bool."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    info = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def test_every_run_writes_its_hparams_with_numeric_columns(tmp_path, tiny_flat):
    """A run trained by itself (not only a sweep trial) is listed by the HParams view, with numbers
    as numbers; a key its strategy lacks is left out, never the text "None" that makes the column text."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.hparams import hparam_values
    from adaptive_weights.training import train

    train(RunConfig.from_flat({**tiny_flat, "strategy.name": "aann", "train.epochs": 1}), out_dir=tmp_path / "r")
    shown = _hparams(tmp_path / "r" / "tb")
    assert shown["strategy.name"] == "aann" and shown["model.n"] == 1.0 and shown["train.seed"] == 0.0
    assert "strategy.gamma" not in shown and "None" not in shown.values()
    assert "train.device" not in shown and "train.num_threads" not in shown  # execution keys: not the experiment
    assert hparam_values({"strategy.name": "aann", "strategy.gamma": None, "train.lr_values": [0.1, 0.01]},
                         ["strategy.name", "strategy.gamma", "strategy.rho", "train.lr_values"]) == {
        "strategy.name": "aann", "train.lr_values": "0.1, 0.01"}


def test_a_runs_own_figures_name_the_run(tmp_path, monkeypatch):
    """A probability_stack.png copied out of its run directory (or a sweep trial's, trained in a
    scratch folder called run/) still says whose it is."""
    import adaptive_weights.logging as run_logging

    titles = []
    real = run_logging.plot_probability_stack
    monkeypatch.setattr(run_logging, "plot_probability_stack",
                        lambda rows, title="": titles.append(title) or real(rows, title=title))
    logger = RunLogger(tmp_path / "run", tensorboard=False, name="cifar10-resnet3c8-sieve-aann-s0")
    logger.log_epoch(ROW)
    logger.close()
    RunLogger(tmp_path / "digits-x-s1", tensorboard=False).log_epoch(ROW)
    assert titles == ["cifar10-resnet3c8-sieve-aann-s0: probability of each exit", "digits-x-s1: probability of each exit"]
