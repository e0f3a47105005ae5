"""ImageNet from a class-per-folder tree of JPEGs, decoded with Pillow in DataLoader workers.

torchvision does not import beside this torch, so the two standard pipelines are written here with
PIL and plain tensors: train = random-resized crop (area 8%..100%, aspect 3/4..4/3) + horizontal flip;
eval = resize the short side to ``image_size / 0.875`` + centre crop. Workers return uint8 tensors;
the float conversion and mean/std normalisation happen on the device, which moves 4x fewer bytes.

Randomness: the sampler yields ``(index, epoch_key, position)``; a sample's crop is drawn from a
generator seeded by ``(seed, epoch, position)``, so a sample's crop does not depend on which worker decodes it or on earlier batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import RefusedError
from ._rng import derive_seed, make_generator
from ._shard import local_batch_size, shard_range

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderLoader",
    "center_crop_box",
    "find_image_folder",
    "random_resized_crop_box",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EXTENSIONS = (".jpg", ".jpeg", ".png")


def find_image_folder(folder: str | os.PathLike[str], classes: Sequence[str] | None = None
                      ) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, label)`` for every image under ``folder/<class>/``, labels by sorted class name.

    ``classes`` fixes the class list (use the train folder's for val); a class folder outside it is
    refused (its images would have no label in ``0..len(classes)-1``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise RefusedError(f"{folder}: class folders {unknown[:5]} are not among the {len(classes)} training classes "
                           f"(labels 0..{len(classes) - 1} come from the class folders of the training split)")
    samples = []
    for label, name in enumerate(classes):
        d = folder / name
        if d.is_dir():
            samples += [(str(p), label) for p in sorted(d.iterdir()) if p.suffix.lower() in _EXTENSIONS]
    if not samples:
        raise RefusedError(f"{folder}: no images ({', '.join(_EXTENSIONS)}) in any class folder")
    return samples, list(classes)


def random_resized_crop_box(
    width: int, height: int, rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """The usual Inception-style crop: (left, top, right, bottom) covering a random area and aspect.

    Ten tries at a box inside the image, then a centre crop clamped to the ratio range (as the common
    reference implementation does).
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_crop_box(width: int, height: int, image_size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize size (short side = round(image_size / 0.875)) and the centred ``image_size`` crop box in it."""
    short = round(image_size / 0.875)
    if width <= height:
        size = (short, max(short, round(height * short / width)))
    else:
        size = (max(short, round(width * short / height)), short)
    left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    return size, (left, top, left + image_size, top + image_size)


class _FolderDataset(Dataset):
    """Decodes one image per ``(index, sample_seed)``; returns uint8 ``[3, S, S]`` and the label."""

    def __init__(self, samples: list[tuple[str, int]], image_size: int, train: bool) -> None:
        self.samples, self.image_size, self.train = samples, image_size, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, epoch_key, position = key
        path, label = self.samples[index]
        try:
            return self._decode(path, label, epoch_key, position)
        except (OSError, ValueError, Image.DecompressionBombError) as err:  # PIL: unreadable or truncated
            raise RefusedError(f"{path}: cannot decode the image ({type(err).__name__}: {err})") from None

    def _decode(self, path: str, label: int, epoch_key: int, position: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            s = self.image_size
            if self.train:
                rng = np.random.default_rng([epoch_key, position])  # mixed by SeedSequence, in the worker
                box = random_resized_crop_box(im.width, im.height, rng)
                im = im.resize((s, s), Image.BILINEAR, box=box)
                if rng.random() < 0.5:
                    im = im.transpose(Image.FLIP_LEFT_RIGHT)
            else:
                size, box = center_crop_box(im.width, im.height, s)
                im = im.resize(size, Image.BILINEAR).crop(box)
            arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), label


class _EpochSampler(Sampler):
    """Yields ``(index, epoch_key, position)`` for one epoch from position ``skip`` on: with
    ``world_size > 1`` only the positions of rank ``rank``'s slice of every global batch of
    ``batch_size`` (``drop_last``: none of the incomplete last batch, which no rank trains on).

    A sample's random crop is seeded by ``(epoch_key, position)``; ``epoch_key`` comes from ``(seed, epoch)``.
    """

    def __init__(self, n: int, shuffle: bool, seed: int, skip: int = 0, *, batch_size: int = 1,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.epoch, self.skip = n, shuffle, seed, 0, skip
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.end = n - n % batch_size if drop_last else n

    def _positions(self) -> Iterator[int]:
        b = self.batch_size
        for lo in range(self.skip - self.skip % b, self.end, b):
            r_lo, r_hi = shard_range(lo, min(lo + b, self.end), self.rank, self.world_size)
            yield from range(max(r_lo, self.skip), r_hi)

    def __len__(self) -> int:
        return sum(1 for _ in self._positions())

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = torch.randperm(self.n, generator=make_generator(self.seed, self.epoch)).tolist() \
            if self.shuffle else range(self.n)
        epoch_key = derive_seed(self.seed, self.epoch, 1)
        for pos in self._positions():
            yield order[pos], epoch_key, pos


class ImageFolderLoader:
    """Loader protocol over a folder of JPEGs: batches of normalised float32 images on ``device``.

    Train (``train=True``): shuffled, random-resized crop + flip, last incomplete batch dropped.
    Eval: stored order, resize + centre crop, last partial batch kept. ``rank``/``world_size``: this
    process's slice of every (global) batch in a data-parallel run, as in ``DeviceLoader``.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        *,
        batch_size: int,
        train: bool,
        image_size: int = 224,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or image_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size={batch_size}, image_size={image_size}, num_workers={num_workers}: "
                             "need batch_size >= 1, image_size >= 1, num_workers >= 0")
        if train and len(samples) < batch_size:
            raise ValueError(f"{len(samples)} training images and batch_size={batch_size} give no full batch")
        self._local_batch = local_batch_size(batch_size, world_size, rank)
        self.samples, self.batch_size, self.train = samples, batch_size, train
        self.rank, self.world_size = rank, world_size
        self.image_size, self.seed, self.num_workers = image_size, seed, num_workers
        self.device = torch.device(device)
        self._dataset = _FolderDataset(samples, image_size, train)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self._epoch, self._start_batch = 0, 0

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.train else -(-n // b)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Next iteration is epoch ``epoch`` from batch ``start_batch``; skipped images are never decoded."""
        if epoch < 0 or not 0 <= start_batch <= len(self):
            raise ValueError(f"set_epoch(epoch={epoch}, start_batch={start_batch}); need epoch >= 0, "
                             f"0 <= start_batch <= {len(self)}")
        self._epoch, self._start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self._epoch, self._start_batch
        self._epoch, self._start_batch = epoch + 1, 0
        sampler = _EpochSampler(self.num_samples, self.train, self.seed, skip=start * self.batch_size,
                                batch_size=self.batch_size, drop_last=self.train, rank=self.rank,
                                world_size=self.world_size)
        sampler.epoch = epoch
        loader = DataLoader(
            self._dataset, batch_size=self._local_batch, sampler=sampler, drop_last=self.train,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield (x.float() - self._mean) / self._std, y.to(self.device, non_blocking=True)
