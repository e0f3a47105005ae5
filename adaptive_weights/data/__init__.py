"""Data sets and loaders: CIFAR-10/100, SVHN, ImageNet folders, sklearn digits and a synthetic set.

Nothing is read or downloaded at import time; :func:`build_data` does the work for a config::

    bundle = build_data(cfg.data, batch_size=128, device="cuda", seed=0)
    for epoch in range(epochs):
        bundle.train.set_epoch(epoch)           # order + augmentation = f(seed, epoch): exact resume
        for x, y in bundle.train: ...           # float32 [B, C, H, W], int64 [B], already on the device
        for split, loader in bundle.eval.items(): ...   # "val" (tuning, choices) and "test" (reporting)

The 32x32 sets live on the device as uint8 and are augmented there (spec §5.1: 4-pixel zero pad,
random crop with offsets 0..7, flip except for SVHN and digits, ``(x - mean) / 128`` with the per-pixel
mean of the training split). ImageNet folders are decoded by DataLoader workers with Pillow.
"""

from ._build import (
    DATASET_NAMES,
    DataBundle,
    Loader,
    build_data,
    check_data,
    check_known_sizes,
    check_train_batches,
    holdout_last,
    pixel_mean,
)
from ._cifar import read_cifar
from ._device_loader import DeviceLoader, augment_batch, draw_augmentation, normalize
from ._download import DATASET_SOURCES, DownloadError, RemoteFile, download_dataset
from ._imagenet import ImageFolderLoader, find_image_folder
from ._safe_pickle import RestrictedUnpickler, UnsafePickleError, safe_pickle_load
from ._small import DIGITS_SPLIT, load_digits_arrays, make_synthetic, split_digits
from ._svhn import read_svhn

__all__ = [
    "DATASET_NAMES",
    "DATASET_SOURCES",
    "DIGITS_SPLIT",
    "DataBundle",
    "DeviceLoader",
    "DownloadError",
    "ImageFolderLoader",
    "Loader",
    "RemoteFile",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "augment_batch",
    "build_data",
    "check_data",
    "check_known_sizes",
    "check_train_batches",
    "download_dataset",
    "draw_augmentation",
    "find_image_folder",
    "holdout_last",
    "load_digits_arrays",
    "make_synthetic",
    "normalize",
    "pixel_mean",
    "read_cifar",
    "read_svhn",
    "safe_pickle_load",
    "split_digits",
]
