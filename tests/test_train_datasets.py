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
