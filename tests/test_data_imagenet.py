"""The ImageNet folder loader on a tiny tree of JPEGs written by the test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adaptive_weights.config import DataConfig
from adaptive_weights.data import build_data
from adaptive_weights.data._imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop_box,
    random_resized_crop_box,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to decode JPEGs")

_SIZES = [(40, 30), (30, 52), (64, 64)]


@pytest.fixture
def tree(tmp_path):
    """train: 2 classes x 3 images (plus a non-image file); val: 2 images of uniform colour."""
    rng = np.random.default_rng(0)
    for label, cls in enumerate(["n01", "n02"]):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True)
        for i, (w, h) in enumerate(_SIZES):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"img{i}.JPEG", quality=95)
        (d / "notes.txt").write_text("not an image")
        v = tmp_path / "val" / cls
        v.mkdir(parents=True)
        Image.new("RGB", (50, 40), (60 + 100 * label, 128, 200)).save(v / "v.JPEG", quality=100)
    return tmp_path


def _cfg(root, **kw):
    return dataclasses.replace(DataConfig(), **{"name": "imagenet", "root": str(root), "image_size": 16,
                                                "num_workers": 0, **kw})


def test_crop_boxes():
    assert center_crop_box(100, 50, 14) == ((32, 16), (9, 1, 23, 15))  # short side round(14 / 0.875) = 16
    assert center_crop_box(40, 80, 14) == ((16, 32), (1, 9, 15, 23))
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(40, 30, rng)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        area = (right - left) * (bottom - top) / 1200
        assert 0.06 < area <= 1.0 and 0.6 < (right - left) / (bottom - top) < 1.6
    # no 99%-area box fits a 40:1 image at aspect <= 4/3: fallback is the centred 13x10 (round(10 * 4/3))
    assert random_resized_crop_box(400, 10, rng, scale=(0.99, 1.0)) == (193, 0, 206, 10)


def test_imagenet_bundle_and_eval_values(tree):
    b = build_data(_cfg(tree), batch_size=2, device="cpu", seed=0)
    assert (b.num_classes, b.in_channels, b.image_size, b.name) == (2, 3, 16, "imagenet")
    assert set(b.eval) == {"test"} and b.train.num_samples == 6 and len(b.train) == 3
    (x, y), = list(b.eval["test"])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and y.tolist() == [0, 1]
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    colour = torch.tensor([60.0, 128, 200]).view(3, 1, 1)
    # JPEG of a uniform colour decodes to within a couple of levels of it
    torch.testing.assert_close(x[0], ((colour / 255 - mean) / std).expand(3, 16, 16), atol=3 / 255 / 0.224, rtol=0)


def test_imagenet_train_is_deterministic_and_resumable(tree):
    a = build_data(_cfg(tree), batch_size=2, device="cpu", seed=5).train
    full = [list(a) for _ in range(2)]  # epochs 0 and 1
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(full[0], full[1], strict=True))
    b = build_data(_cfg(tree, num_workers=2), batch_size=2, device="cpu", seed=5).train
    b.set_epoch(1, start_batch=1)
    tail = list(b)
    assert len(tail) == 2
    for (x, y), (xr, yr) in zip(full[1][1:], tail, strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)  # workers and resume change nothing


def test_imagenet_val_split_and_errors(tree):
    b = build_data(_cfg(tree, val_split=2), batch_size=2, device="cpu", seed=0)
    assert list(b.eval) == ["val", "test"] and b.eval["val"].num_samples == 2 and b.train.num_samples == 4
    val_paths = {p for p, _ in b.eval["val"].samples}
    assert not val_paths & {p for p, _ in b.train.samples}
    (tree / "val" / "n03").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['n03'\] are not among the 2 training classes"):
        build_data(_cfg(tree), batch_size=2, device="cpu", seed=0)
