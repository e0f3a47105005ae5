"""Bad data files are refused when read, naming the file: labels out of range, unsafe or truncated
pickles, unreadable SVHN files, ImageNet class folders outside the training classes."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from conftest_data import write_fake_cifar, write_fake_svhn

from adaptive_weights.data import UnsafePickleError, find_image_folder, read_cifar, read_svhn
from adaptive_weights.data._cifar import CIFAR_LAYOUTS
from adaptive_weights.errors import RefusedError


def _rewrite_python_batch(folder, stem: str, key: bytes, bad: int) -> None:
    batch = pickle.loads((folder / stem).read_bytes())
    labels = list(batch[key])
    labels[2] = bad
    batch[key] = labels
    (folder / stem).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("name, bad", [("cifar10", 12), ("cifar10", -100), ("cifar10", -1), ("cifar100", 100),
                                       ("cifar100", -1)])
def test_cifar_python_labels_out_of_range_are_refused_naming_the_file(tmp_path, name, bad):
    write_fake_cifar(tmp_path, name, "python")
    layout = CIFAR_LAYOUTS[(name, "python")]
    stem = layout.train_files[-1]
    _rewrite_python_batch(tmp_path / layout.folder, stem, layout.label_key, bad)
    high = 9 if name == "cifar10" else 99
    with pytest.raises(RefusedError, match=rf"{stem}: label {bad} at position 2 is outside the allowed range "
                                           rf"0\.\.{high}"):
        read_cifar(tmp_path, name)


@pytest.mark.parametrize("name, bad", [("cifar10", 12), ("cifar10", 255), ("cifar100", 100)])
def test_cifar_binary_labels_out_of_range_are_refused_naming_the_file(tmp_path, name, bad):
    write_fake_cifar(tmp_path, name, "binary")
    layout = CIFAR_LAYOUTS[(name, "binary")]
    path = tmp_path / layout.folder / layout.test_files[0]
    raw = np.fromfile(path, np.uint8).reshape(-1, layout.label_bytes + 3072)
    raw[1, layout.label_bytes - 1] = bad
    raw.tofile(path)
    with pytest.raises(RefusedError, match=rf"{path.name}: label {bad} at position 1 is outside"):
        read_cifar(tmp_path, name)


@pytest.mark.parametrize("bad", [11, -1])
def test_svhn_labels_out_of_range_are_refused_naming_the_file(tmp_path, bad):
    from scipy.io import loadmat, savemat

    write_fake_svhn(tmp_path, "train", 12)
    write_fake_svhn(tmp_path, "test", 5)
    mat = loadmat(tmp_path / "test_32x32.mat")
    y = mat["y"].astype(np.int16)
    y[3] = bad
    savemat(tmp_path / "test_32x32.mat", {"X": mat["X"], "y": y})
    with pytest.raises(RefusedError, match=rf"test_32x32.mat: label {bad} at position 3 is outside the allowed "
                                           r"range 0\.\.10"):
        read_svhn(tmp_path)


def test_truncated_svhn_file_is_refused_naming_it(tmp_path):
    write_fake_svhn(tmp_path, "train", 12)
    write_fake_svhn(tmp_path, "test", 5)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(RefusedError, match="test_32x32.mat: not a readable MATLAB file"):
        read_svhn(tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unpickling_errors_name_the_file(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", "python")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"data_batch_2: refusing to unpickle global (posix|os|nt)\.system"):
        read_cifar(tmp_path, "cifar10")
    good = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2)
    (folder / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(RefusedError, match=r"data_batch_2: not a readable pickle, truncated or corrupt"):
        read_cifar(tmp_path, "cifar10")


def test_imagenet_val_class_outside_the_training_classes_is_refused(tmp_path):
    from PIL import Image

    for split, cls in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "zebra")):
        (tmp_path / split / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "0.png")
    _, classes = find_image_folder(tmp_path / "train")
    with pytest.raises(RefusedError, match=r"val: class folders \['zebra'\] are not among the 2 training classes "
                                           r"\(labels 0\.\.1"):
        find_image_folder(tmp_path / "val", classes)
