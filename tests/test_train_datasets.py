"""Tiny end-to-end runs on the real on-disk formats: CIFAR-10 (python and binary batches),
CIFAR-100, and SVHN's .mat files (with ``extra``), through the CLI's training path."""

from __future__ import annotations

import json

import pytest
from conftest_data import write_fake_cifar, write_fake_svhn

from adaptive_weights.cli import main

RUN = ["--model.n", "1", "--model.c", "4", "--train.preset", "smoke", "--train.epochs", "1",
       "--train.batch-size", "8", "--train.progress", "false", "--train.num-threads", "1"]


@pytest.mark.parametrize("name,fmt", [("cifar10", "python"), ("cifar10", "binary"), ("cifar100", "python")])
def test_cifar_run_from_official_files(tmp_path, name, fmt):
    write_fake_cifar(tmp_path / "data", name, fmt, per_batch=8)  # 40 train (8 of them val), 8 test
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data.name", name, "--data.root", str(tmp_path / "data"),
                 "--data.val-split", "8", *RUN]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == (10 if name == "cifar10" else 100)
    assert len(summary["errors"]["test"]) == 3 and len(summary["errors"]["val"]) == 3
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 4  # (40 - 8) / 8 training batches, the validation images held out


def test_svhn_run_from_official_mat_files(tmp_path):
    root = tmp_path / "data"
    write_fake_svhn(root, "train", 24)
    write_fake_svhn(root, "test", 10, seed=1)
    write_fake_svhn(root, "extra", 16, seed=2)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data.name", "svhn", "--data.root", str(root),
                 "--data.val-split", "8", "--data.svhn-extra", "true", *RUN]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 4  # (24 - 8 + 16) / 8: extra joins the training set
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == 10


def test_missing_files_name_the_folder(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--data.name", "cifar10",
                 "--data.root", str(tmp_path / "nowhere"), *RUN]) != 0
    assert "nowhere" in capsys.readouterr().err


def test_imagenet_folder_run_with_a_bottleneck_net(tmp_path):
    """A class-per-folder JPEG tree through the DataLoader path and the ImageNet anytime ResNet."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("val", 2)):
        for label in ("n01", "n02"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"img{i}.JPEG", quality=90)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data.name", "imagenet", "--data.root", str(tmp_path / "data"),
                 "--data.image-size", "32", "--data.num-workers", "0", "--model.arch", "imagenet-resnet",
                 "--model.depth", "14", "--model.period", "2", *RUN]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == 2 and summary["exit_units"] == [1, 3]
    assert summary["errors"]["val"] is None and len(summary["errors"]["test"]) == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1  # 12 training images, batch 8, last partial batch dropped
