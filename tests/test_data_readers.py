"""Readers of the official file formats, the restricted unpickler, splits and ``build_data``."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from conftest_data import write_fake_cifar, write_fake_svhn

from adaptive_weights.config import DataConfig
from adaptive_weights.data import (
    DIGITS_SPLIT,
    DataBundle,
    Loader,
    UnsafePickleError,
    build_data,
    load_digits_arrays,
    make_synthetic,
    read_cifar,
    read_svhn,
    safe_pickle_load,
    split_digits,
)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_read_cifar_both_formats(tmp_path, name, fmt):
    expected = write_fake_cifar(tmp_path, name, fmt, per_batch=4)
    got = read_cifar(tmp_path, name)
    assert [a.shape for a in got] == [(20, 3, 32, 32), (20,), (4, 3, 32, 32), (4,)]
    assert got[0].dtype == np.uint8 and got[1].dtype == np.int64
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # channel-major rows: pixel (c, r, col) of image i is row byte c*1024 + r*32 + col; fake rows are
    # (7 i + batch offset + byte) % 256, and the second train image of the first file has offset 0.
    assert got[0][1, 2, 3, 4] == (7 + 2 * 1024 + 3 * 32 + 4) % 256


def test_cifar100_binary_uses_fine_label_byte(tmp_path):
    write_fake_cifar(tmp_path, "cifar100", "binary", per_batch=4, seed=3)
    raw = np.fromfile(tmp_path / "cifar-100-binary" / "train.bin", np.uint8).reshape(-1, 2 + 3072)
    _, train_y, _, _ = read_cifar(tmp_path, "cifar100")
    np.testing.assert_array_equal(train_y, raw[:, 1])
    assert not np.array_equal(train_y, raw[:, 0])  # coarse byte differs (0..19 vs 0..99) for this seed


def test_read_cifar_prefers_python_and_reports_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*--data.download"):
        read_cifar(tmp_path, "cifar10")
    with pytest.raises(ValueError, match="'cifar5'"):
        read_cifar(tmp_path, "cifar5")
    write_fake_cifar(tmp_path, "cifar10", "binary", seed=1)
    py = write_fake_cifar(tmp_path, "cifar10", "python", seed=2)
    np.testing.assert_array_equal(read_cifar(tmp_path, "cifar10")[1], py[1])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(tmp_path, "cifar10", "python")
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle global (posix|os|nt)\.system"):
        safe_pickle_load(folder / "data_batch_3")
    with pytest.raises(pickle.UnpicklingError, match="malicious"):
        read_cifar(tmp_path, "cifar10")
    assert not marker.exists()
    (folder / "x").write_bytes(pickle.dumps(eval, protocol=4))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_pickle_load(folder / "x")


def test_safe_pickle_loads_python2_style_numpy_pickles(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 5):
        data = pickle.dumps({b"data": arr, b"labels": [1, 2, 3], b"name": "x"}, protocol=protocol)
        # the official files (Python 2, numpy 1) name numpy.core.multiarray
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (tmp_path / "b").write_bytes(data)
        out = safe_pickle_load(tmp_path / "b")
        np.testing.assert_array_equal(out[b"data"], arr)
        assert out[b"labels"] == [1, 2, 3] and out[b"name"] == "x"


def test_read_svhn_layout_and_label_ten_is_zero(tmp_path):
    tx, ty = write_fake_svhn(tmp_path / "svhn", "train", 23, seed=1)
    sx, sy = write_fake_svhn(tmp_path / "svhn", "test", 11, seed=2)
    files = read_svhn(tmp_path)
    assert set(files) == {"train", "test"}
    np.testing.assert_array_equal(files["train"][0], tx)
    np.testing.assert_array_equal(files["train"][1], ty)
    np.testing.assert_array_equal(files["test"][1], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    assert files["train"][0].shape == (23, 3, 32, 32) and files["train"][0].flags.c_contiguous
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat"):
        read_svhn(tmp_path, extra=True)


def test_digits_arrays_and_fixed_split():
    x, y = load_digits_arrays()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.uint8 and x.max() == 255
    # sklearn digit 0, row 0 is [0, 0, 5, 13, 9, 1, 0, 0] (0..16) -> round(v * 255 / 16)
    np.testing.assert_array_equal(x[0, 0, 0], [0, 0, 80, 207, 143, 16, 0, 0])
    splits = split_digits(x, y)
    assert [len(splits[k][0]) for k in ("train", "val", "test")] == list(DIGITS_SPLIT)
    again = split_digits(x, y)
    np.testing.assert_array_equal(splits["test"][0], again["test"][0])
    no_val = split_digits(x, y, 0)
    assert "val" not in no_val and len(no_val["train"][0]) == 1497
    np.testing.assert_array_equal(no_val["test"][1], splits["test"][1])  # the test set never moves
    with pytest.raises(ValueError, match="val_split=1497"):
        split_digits(x, y, 1497)


def _rows(x):
    return {r.tobytes() for r in x.reshape(len(x), -1)}


def test_digits_splits_are_disjoint():
    x, y = load_digits_arrays()
    s = split_digits(x, y)
    # sklearn digits contain a few exact duplicate images; compare by index instead of content
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(s["val"][0], x[perm[1197:1497]])
    np.testing.assert_array_equal(s["test"][0], x[perm[1497:]])
    assert len(set(perm[1197:1497]) & set(perm[1497:])) == 0


def test_synthetic_is_deterministic_and_class_conditional():
    x1, y1 = make_synthetic(200, image_size=8, num_classes=4, seed=0)
    x2, y2 = make_synthetic(200, image_size=8, num_classes=4, seed=0)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (200, 3, 8, 8) and x1.dtype == np.uint8 and set(y1.tolist()) == {0, 1, 2, 3}
    # nearest class mean (from another sample set) classifies far above chance: the set is learnable
    xt, yt = make_synthetic(200, image_size=8, num_classes=4, sample_seed=9)
    means = np.stack([x1[y1 == k].mean(0) for k in range(4)]).reshape(4, -1)
    pred = ((xt.reshape(200, 1, -1) - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yt).mean() > 0.9
    assert not np.array_equal(xt, x1)
    with pytest.raises(ValueError, match="num_classes=1"):
        make_synthetic(4, num_classes=1)


def _cfg(**kw):
    return dataclasses.replace(DataConfig(), **kw)


def test_build_data_cifar_splits_and_mean(tmp_path):
    train_x, train_y, test_x, test_y = write_fake_cifar(tmp_path, "cifar10", "python", per_batch=4)
    b = build_data(_cfg(name="cifar10", root=str(tmp_path), val_split=6), batch_size=4, device="cpu", seed=0)
    assert isinstance(b, DataBundle) and isinstance(b.train, Loader)
    assert (b.num_classes, b.in_channels, b.image_size, b.name) == (10, 3, 32, "cifar10")
    assert b.train.num_samples == 14 and len(b.train) == 3  # drop_last: floor(14 / 4)
    assert b.eval["val"].num_samples == 6 and len(b.eval["val"]) == 2  # eval keeps the partial batch
    assert b.eval["test"].num_samples == 4
    # validation = the last 6 training images, in order; the mean uses the 14 training images only
    torch.testing.assert_close(b.eval["val"].images, torch.from_numpy(train_x[-6:]))
    torch.testing.assert_close(b.eval["test"].images, torch.from_numpy(test_x))
    torch.testing.assert_close(b.train.mean, torch.from_numpy(train_x[:14].mean(0, dtype=np.float64)).float())
    x, y = next(iter(b.eval["val"]))
    torch.testing.assert_close(x, (torch.from_numpy(train_x[-6:-2]).float() - b.train.mean) / 128)
    torch.testing.assert_close(y, torch.from_numpy(train_y[-6:-2]))
    assert not _rows(train_x[-6:]) & _rows(test_x)


def test_build_data_default_val_split_is_5000(tmp_path):
    write_fake_cifar(tmp_path, "cifar100", "binary", per_batch=4)
    with pytest.raises(ValueError, match="val_split=5000; allowed 0..19"):
        build_data(_cfg(name="cifar100", root=str(tmp_path)), batch_size=4, device="cpu", seed=0)
    b = build_data(_cfg(name="cifar100", root=str(tmp_path), val_split=0), batch_size=4, device="cpu", seed=0)
    assert set(b.eval) == {"test"} and b.train.num_samples == 20 and b.num_classes == 100


def test_build_data_svhn_extra_and_no_flip(tmp_path):
    tx, _ = write_fake_svhn(tmp_path, "train", 20, seed=1)
    write_fake_svhn(tmp_path, "test", 7, seed=2)
    ex, _ = write_fake_svhn(tmp_path, "extra", 9, seed=3)
    b = build_data(_cfg(name="svhn", root=str(tmp_path), val_split=5, svhn_extra=True), batch_size=4,
                   device="cpu", seed=0)
    assert b.train.num_samples == 15 + 9 and b.eval["val"].num_samples == 5 and b.eval["test"].num_samples == 7
    torch.testing.assert_close(b.eval["val"].images, torch.from_numpy(tx[-5:]))  # val from train file only
    torch.testing.assert_close(b.train.images[15:], torch.from_numpy(ex))
    assert (b.train.pad, b.train.flip) == (4, False)
    plain = build_data(_cfg(name="svhn", root=str(tmp_path), val_split=5), batch_size=4, device="cpu", seed=0)
    assert plain.train.num_samples == 15


def test_build_data_digits_and_synthetic():
    d = build_data(_cfg(name="digits"), batch_size=100, device="cpu", seed=0)
    assert (d.num_classes, d.in_channels, d.image_size) == (10, 1, 8)
    assert (d.train.num_samples, d.eval["val"].num_samples, d.eval["test"].num_samples) == (1197, 300, 300)
    assert (d.train.pad, d.train.flip, len(d.train), len(d.eval["test"])) == (1, False, 11, 3)
    s = build_data(_cfg(name="synthetic", synthetic_size=64, synthetic_image_size=16, synthetic_classes=3,
                        augment=False), batch_size=16, device="cpu", seed=0)
    assert (s.num_classes, s.in_channels, s.image_size, s.train.num_samples) == (3, 3, 16, 64)
    assert (s.train.pad, s.train.flip) == (0, False)
    x, y = next(iter(s.train))
    assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_build_data_rejects_unknown_name():
    with pytest.raises(ValueError, match="'mnist'.*digits, synthetic, cifar10, cifar100, svhn, imagenet"):
        build_data(_cfg(name="mnist"), batch_size=4, device="cpu", seed=0)
