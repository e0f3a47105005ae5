"""``build_data``: one config in, a train loader and evaluation loaders on the training device out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import RefusedError
from ._cifar import check_cifar, read_cifar
from ._device_loader import DeviceLoader
from ._download import download_dataset
from ._imagenet import IMAGENET_MEAN, IMAGENET_STD, ImageFolderLoader, find_image_folder
from ._small import DIGITS_SPLIT, load_digits_arrays, make_synthetic, split_digits
from ._svhn import check_svhn, read_svhn

__all__ = ["DATASET_NAMES", "DataBundle", "Loader", "build_data", "check_data", "check_known_sizes",
           "check_train_batches", "holdout_last", "pixel_mean"]

DATASET_NAMES = ("digits", "synthetic", "cifar10", "cifar100", "svhn", "imagenet")

NORMALIZE_SCALE = 128.0  # the paper's normalisation: (x - per-pixel mean) / 128
SYNTHETIC_EVAL_SIZE = 128  # default val and test size of the synthetic set
_SVHN_JITTER = (10.0, 0.2)  # brightness U(-10, 10), contrast U(0.8, 1.2)
_DEFAULT_VAL = 5000  # cifar10/100, svhn: the last 5,000 training images (spec §5.1)
# training images before the validation split is taken, for the sets whose size is fixed
_TRAIN_POOL = {"digits": DIGITS_SPLIT[0] + DIGITS_SPLIT[1], "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}
_SVHN_EXTRA = 531_131
# name -> (num_classes, pad, flip) of the device-resident sets; digits are not flip-invariant, nor is SVHN.
_AUGMENT = {"cifar10": (10, 4, True), "cifar100": (100, 4, True), "svhn": (10, 4, False), "digits": (10, 1, False)}


@runtime_checkable
class Loader(Protocol):
    """What the trainer iterates: ``(x float32 [B, C, H, W], y int64 [B])`` on the training device."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    @property
    def num_samples(self) -> int: ...

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None: ...


@dataclass
class DataBundle:
    """The loaders of one data set and the shape facts a model needs."""

    train: Loader
    eval: dict[str, Loader]  # "val" and/or "test"
    num_classes: int
    in_channels: int
    image_size: int
    name: str
    # (mean, std) in 0..255 pixel units, each broadcastable to [C, H, W]: the loaders feed the model
    # (pixels - mean) / std. A checkpoint records it (input_record) so a trained network can be
    # served raw images without its data set (adaptive_weights.loading.load_model).
    normalization: tuple[torch.Tensor, torch.Tensor] | None = None

    def input_record(self) -> dict[str, Any]:
        """What a model needs to know about its inputs, as plain values and CPU tensors (a checkpoint
        read with ``weights_only=True`` holds it): the normalisation and the shape facts."""
        if self.normalization is None:
            raise ValueError(f"data set {self.name!r}: its loaders did not record their input normalisation")
        mean, std = self.normalization
        return {"mean": mean.detach().float().cpu(), "std": std.detach().float().cpu(),
                "num_classes": int(self.num_classes), "in_channels": int(self.in_channels),
                "image_size": int(self.image_size)}


Split = tuple[np.ndarray, np.ndarray]


def holdout_last(x: np.ndarray, y: np.ndarray, n: int) -> tuple[Split, Split | None]:
    """Split off the last ``n`` training images as the validation set (``n = 0``: none)."""
    if not 0 <= n < len(x):
        raise RefusedError(f"data.val_split={n}; allowed 0..{len(x) - 1} for {len(x)} training images")
    if n == 0:
        return (x, y), None
    return (x[:-n], y[:-n]), (x[-n:], y[-n:])


def check_known_sizes(cfg: Any, batch_size: int) -> None:
    """Refuse a validation split or a batch larger than the training set where the set's size is
    known without reading a file (digits, synthetic, CIFAR, SVHN); ImageNet folders are checked by
    :func:`check_train_batches` once read. Called by ``RunConfig.resolve``, before any work."""
    if cfg.name == "synthetic":
        train = cfg.synthetic_size  # its validation set is drawn separately
    elif cfg.name in _TRAIN_POOL:
        pool = _TRAIN_POOL[cfg.name]
        default_val = DIGITS_SPLIT[1] if cfg.name == "digits" else _DEFAULT_VAL
        val = default_val if cfg.val_split is None else cfg.val_split
        if val >= pool:
            raise RefusedError(f"data.val_split: {val} leaves no training image of {cfg.name}'s {pool}; "
                               f"allowed 0 .. {pool - 1}")
        train = pool - val + (_SVHN_EXTRA if cfg.name == "svhn" and cfg.svhn_extra else 0)
    else:
        return
    _check_batch(batch_size, train, cfg.name)


def check_train_batches(bundle: DataBundle, batch_size: int) -> None:
    """Refuse a training set that holds no full batch (the train loader drops the last, partial one)."""
    if len(bundle.train) == 0:
        _check_batch(batch_size, bundle.train.num_samples, bundle.name)


def _check_batch(batch_size: int, train_images: int, name: str) -> None:
    if batch_size > train_images:
        raise RefusedError(f"train.batch_size: {batch_size} is more than the {train_images} training images of "
                           f"{name} (every step takes one full batch); allowed 1 .. {train_images}")


def pixel_mean(x: np.ndarray) -> torch.Tensor:
    """Per-pixel mean ``[C, H, W]`` (float64 accumulation, float32 result) of uint8 images ``[N, C, H, W]``."""
    return torch.from_numpy(x.mean(axis=0, dtype=np.float64).astype(np.float32))


def _small_splits(cfg: Any) -> tuple[dict[str, Split], int]:
    """The uint8 splits (``train``, ``val``?, ``test``) of a 32x32-style set and its class count."""
    name, root = cfg.name, Path(cfg.root)
    if name == "digits":
        x, y = load_digits_arrays()
        return split_digits(x, y, cfg.val_split), 10
    if name == "synthetic":
        shape = {"image_size": cfg.synthetic_image_size, "num_classes": cfg.synthetic_classes}
        n_val = SYNTHETIC_EVAL_SIZE if cfg.val_split is None else cfg.val_split
        if n_val < 0:
            raise ValueError(f"val_split={n_val}; must be >= 0")
        splits = {"train": make_synthetic(cfg.synthetic_size, sample_seed=1, **shape),
                  "test": make_synthetic(SYNTHETIC_EVAL_SIZE, sample_seed=3, **shape)}
        if n_val:
            splits["val"] = make_synthetic(n_val, sample_seed=2, **shape)
        return splits, cfg.synthetic_classes
    if cfg.download:
        download_dataset(name, root, extra=cfg.svhn_extra)
    val_n = _DEFAULT_VAL if cfg.val_split is None else cfg.val_split
    if name == "svhn":
        files = read_svhn(root, extra=cfg.svhn_extra)
        (train, val) = holdout_last(*files["train"], val_n)  # validation from the official train file only
        if cfg.svhn_extra:
            train = (np.concatenate([train[0], files["extra"][0]]), np.concatenate([train[1], files["extra"][1]]))
        test = files["test"]
    else:
        train_x, train_y, test_x, test_y = read_cifar(root, name)
        train, val = holdout_last(train_x, train_y, val_n)
        test = (test_x, test_y)
    splits = {"train": train, "test": test}
    if val is not None:
        splits["val"] = val
    return splits, _AUGMENT[name][0]


def _build_device(cfg: Any, batch_size: int, device: torch.device | str, seed: int, shard: dict[str, int]) -> DataBundle:
    splits, num_classes = _small_splits(cfg)
    train_x, train_y = splits["train"]
    _check_batch(batch_size, len(train_x), cfg.name)
    # Mean over the images the model trains on (not val, never test); the paper's code used train + test,
    # a difference far below the noise of a run, but no statistic here comes from held-out data.
    mean = pixel_mean(train_x)
    if cfg.name == "synthetic":
        pad, flip = max(1, cfg.synthetic_image_size // 8), False
    else:
        pad, flip = _AUGMENT[cfg.name][1:]
    if not cfg.augment:
        pad, flip = 0, False

    # SVHN's photometric jitter (the paper's; its smooth random deformation is not implemented)
    brightness, contrast = _SVHN_JITTER if cfg.name == "svhn" and cfg.augment else (0.0, 0.0)

    def loader(split: Split, train: bool) -> DeviceLoader:
        return DeviceLoader(
            torch.from_numpy(split[0]), torch.from_numpy(split[1]), batch_size=batch_size, shuffle=train,
            pad=pad if train else 0, flip=flip and train, mean=mean, scale=NORMALIZE_SCALE, seed=seed,
            device=device, drop_last=train, brightness=brightness if train else 0.0,
            contrast=contrast if train else 0.0, **shard,
        )

    evals = {k: loader(splits[k], train=False) for k in ("val", "test") if k in splits}
    return DataBundle(loader(splits["train"], train=True), evals, num_classes,
                      in_channels=train_x.shape[1], image_size=train_x.shape[-1], name=cfg.name,
                      normalization=(mean, torch.full((1, 1, 1), NORMALIZE_SCALE)))


def _build_imagenet(cfg: Any, batch_size: int, device: torch.device | str, seed: int,
                    shard: dict[str, int]) -> DataBundle:
    """``root/train`` and ``root/val`` (or ``root/imagenet/...``); the official val folder is the "test" split.

    ``val_split = k > 0`` holds out ``k`` training images chosen by a fixed seed-0 permutation (a "last k"
    of a class-sorted folder would be one class); the default is none.
    """
    root = _imagenet_root(cfg.root)
    train, classes = find_image_folder(root / "train")
    test, _ = find_image_folder(root / "val", classes)
    val_n = cfg.val_split or 0
    if not 0 <= val_n < len(train):
        raise RefusedError(f"data.val_split={cfg.val_split}; allowed 0..{len(train) - 1} for {len(train)} training images")
    val = None
    if val_n:
        perm = np.random.default_rng(0).permutation(len(train))
        val = [train[i] for i in sorted(perm[:val_n])]
        train = [train[i] for i in sorted(perm[val_n:])]

    def loader(samples: list[tuple[str, int]], is_train: bool) -> ImageFolderLoader:
        return ImageFolderLoader(samples, batch_size=batch_size, train=is_train, image_size=cfg.image_size,
                                 seed=seed, device=device, num_workers=cfg.num_workers, **shard)

    evals = {"test": loader(test, False)}
    if val is not None:
        evals = {"val": loader(val, False), **evals}
    return DataBundle(loader(train, True), evals, len(classes), in_channels=3,
                      image_size=cfg.image_size, name="imagenet",
                      normalization=(torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255,
                                     torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255))


def _imagenet_root(root: str) -> Path:
    """``root``, or ``root/imagenet`` when the class folders are there."""
    path = Path(root)
    if not (path / "train").is_dir() and (path / "imagenet" / "train").is_dir():
        return path / "imagenet"
    return path


def check_data(cfg: Any) -> None:
    """Refuse a data set (``cfg``: a ``DataConfig``) whose files are not under ``data.root`` or do
    not load, before anything starts that would read them (a sweep checks every data config of its
    grid before Ray starts). Cheap: CIFAR's test files are read, SVHN's variable lists, ImageNet's
    two folders looked at; digits and synthetic need no file, and a set that ``data.download``
    fetches is fetched by the run itself."""
    try:
        _check_files(cfg)
    except (FileNotFoundError, RefusedError) as err:
        raise RefusedError(f"data.root: {err}") from None


def _check_files(cfg: Any) -> None:
    if cfg.name in ("digits", "synthetic") or (cfg.download and cfg.name != "imagenet"):
        return
    if cfg.name == "imagenet":
        root = _imagenet_root(cfg.root)
        for split in ("train", "val"):
            folder = root / split
            if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
                raise FileNotFoundError(f"imagenet not found: expected class folders in {folder} "
                                        "(pass --data.root to point at the folder holding train/ and val/)")
    elif cfg.name == "svhn":
        check_svhn(cfg.root, extra=cfg.svhn_extra)
    else:
        check_cifar(cfg.root, cfg.name)


def build_data(cfg: Any, *, batch_size: int, device: torch.device | str, seed: int, rank: int = 0,
               world_size: int = 1) -> DataBundle:
    """Loaders for ``cfg.name`` (a ``DataConfig``): train shuffled and augmented, eval plain.

    ``rank``/``world_size``: in a data-parallel run every loader yields this process's slice of each
    global batch of ``batch_size`` (which must divide by ``world_size``; see ``_shard.py``).

    The 32x32 sets (and digits, synthetic) are read once, split, and moved to ``device`` as uint8;
    ImageNet is decoded by DataLoader workers. ``seed`` with the epoch fixes order and augmentation.
    """
    if cfg.name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {cfg.name!r}; allowed: {', '.join(DATASET_NAMES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; must be >= 1")
    shard = {"rank": rank, "world_size": world_size}
    if cfg.name == "imagenet":
        if cfg.download:
            raise ValueError("download=True for imagenet: ILSVRC cannot be downloaded automatically (it needs "
                             "a registered account); place train/ and val/ class folders under data.root")
        return _build_imagenet(cfg, batch_size, device, seed, shard)
    return _build_device(cfg, batch_size, device, seed, shard)
