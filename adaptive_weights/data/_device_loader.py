"""A loader for small image sets that live on the training device as one uint8 tensor.

Per batch it gathers the images, pads, crops and flips them in one indexed gather and normalises
them, all as batched tensor ops on the device (after airbench / hlb-CIFAR10). The shuffle order and
every crop offset and flip of epoch ``e`` are drawn up front from a generator seeded by
``(seed, e)``, so a run resumed at any epoch or batch sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ._rng import make_generator
from ._shard import local_batch_size, shard_range

__all__ = ["DeviceLoader", "augment_batch", "draw_augmentation", "jitter_batch", "normalize"]

_TRAIN_STREAM = 0x5EED  # separates the loader's generator stream from any other use of the seed


def draw_augmentation(
    n: int, pad: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets ``[n, 2]`` (row, col) uniform in ``0..2*pad-1`` and flip flags ``[n]`` (p = 0.5).

    The offsets are the top-left corner of the crop on the padded canvas: with ``pad=4`` they lie in
    {0..7} (the authors' ``randint(8)``), i.e. shifts of -4..+3, never +4 (spec §5.1).
    """
    offsets = torch.randint(0, max(2 * pad, 1), (n, 2), generator=generator, dtype=torch.int64)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool)
    return offsets, flips


def augment_batch(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back to the input size at ``offsets``, mirror where ``flips``; uint8 stays uint8.

    One ``gather`` over the flattened padded images does crop and flip together: output pixel (i, j)
    of image b reads padded pixel (off_r[b] + i, off_c[b] + j'), with j' = W-1-j when b is flipped.
    """
    b, c, h, w = images.shape
    wp = w + 2 * pad
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # [B, H]
    j = torch.arange(w, device=images.device)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], w - 1 - j, j)  # [B, W]
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).reshape(b, c, h, w)


def jitter_batch(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """SVHN's photometric augmentation (spec §5.1): add ``brightness[b]`` (0..255 units) and clip,
    then scale every channel about its mean by ``contrast[b]`` and clip; returns float32.

    The paper's code jitters the 40x40 zero-padded canvas before cropping; here the channel mean is
    taken over the cropped image, the only difference.
    """
    x = (images.float() + brightness.view(-1, 1, 1, 1)).clamp_(0, 255)
    mu = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mu) * contrast.view(-1, 1, 1, 1) + mu).clamp_(0, 255)


def normalize(images: torch.Tensor, mean: torch.Tensor, scale: float) -> torch.Tensor:
    """``(x - mean) / scale`` in float32, ``mean`` per pixel ``[C, H, W]`` (spec §5.1: scale 128)."""
    return (images.float() - mean) / scale


class DeviceLoader:
    """Batches of a device-resident uint8 image tensor, augmented and normalised on the device.

    Args:
        images: uint8 ``[N, C, H, W]``; moved to ``device`` once (no copy if already there).
        labels: integer ``[N]``; moved to ``device`` as int64.
        batch_size: images per batch; with ``world_size > 1`` the *global* batch, split evenly across
            the processes (it must divide; see ``_shard.py``).
        shuffle: a fresh permutation every epoch (train); else the stored order (eval).
        pad: zero padding before the random crop; 0 disables cropping.
        flip: random horizontal flips with p = 0.5.
        mean: per-pixel mean ``[C, H, W]`` (in 0..255 units) subtracted after augmentation, so padded
            pixels become ``-mean / scale``.
        scale: divisor after mean subtraction.
        seed: with the epoch, determines the order and augmentation (see :meth:`set_epoch`).
        device: where the data and the batches live.
        drop_last: drop the last incomplete batch (train: steps per epoch = floor(N / B)).
        brightness: if > 0, add U(-brightness, brightness) to every image (0..255 units) and clip.
        contrast: if > 0, scale every channel about its mean by U(1 - contrast, 1 + contrast) and clip
            (SVHN: brightness 10, contrast 0.2; spec §5.1).
        rank, world_size: this process's part of every batch in a data-parallel run: all ranks draw
            the same epoch plan and each takes its slice of every batch, so the ranks' batches
            together are the one-process batch, image for image and augmentation for augmentation.

    Iterating yields ``(x float32 [B, C, H, W], y int64 [B])`` on ``device`` with no host-device sync.
    Each iteration uses the epoch set by :meth:`set_epoch` and then advances it by one, so a loop that
    forgets ``set_epoch`` still sees a new order each epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        pad: int = 0,
        flip: bool = False,
        mean: torch.Tensor | None = None,
        scale: float = 128.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        brightness: float = 0.0,
        contrast: float = 0.0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; must be >= 1")
        local_batch_size(batch_size, world_size, rank)
        if pad < 0:
            raise ValueError(f"pad={pad}; must be >= 0")
        if scale <= 0:
            raise ValueError(f"scale={scale}; must be > 0")
        if brightness < 0 or not 0 <= contrast < 1:
            raise ValueError(f"brightness={brightness}, contrast={contrast}; need brightness >= 0, 0 <= contrast < 1")
        if drop_last and len(images) < batch_size:
            raise ValueError(
                f"drop_last with {len(images)} images and batch_size={batch_size} gives no batch at all"
            )
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        if mean is None:
            mean = torch.zeros(images.shape[1:])
        if tuple(mean.shape) != tuple(images.shape[1:]):
            raise ValueError(f"mean shape {tuple(mean.shape)} must equal the image shape {tuple(images.shape[1:])}")
        self.mean = mean.to(self.device, torch.float32)
        self.batch_size, self.shuffle, self.pad, self.flip = batch_size, shuffle, pad, flip
        self.scale, self.seed, self.drop_last = float(scale), seed, drop_last
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.rank, self.world_size = rank, world_size
        self._epoch, self._start_batch = 0, 0

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    @property
    def augment(self) -> bool:
        return self.pad > 0 or self.flip

    @property
    def photometric(self) -> bool:
        return self.brightness > 0 or self.contrast > 0

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration epoch ``epoch``, starting at batch ``start_batch`` (for a mid-epoch resume).

        The order and augmentation of epoch ``e`` depend only on ``(seed, e)``; skipped batches cost
        nothing beyond drawing the epoch's random numbers (one call for the whole epoch).
        """
        if epoch < 0 or not 0 <= start_batch <= len(self):
            raise ValueError(f"set_epoch(epoch={epoch}, start_batch={start_batch}); need epoch >= 0, "
                             f"0 <= start_batch <= {len(self)}")
        self._epoch, self._start_batch = epoch, start_batch

    def _epoch_plan(self, epoch: int) -> tuple[torch.Tensor | None, ...]:
        """Permutation, crop offsets, flips, brightness and contrast factors of one epoch, drawn on
        the CPU and moved once to the device."""
        if not self.shuffle and not self.augment and not self.photometric:
            return None, None, None, None, None
        gen = make_generator(self.seed, epoch, _TRAIN_STREAM)
        n = self.num_samples
        perm = torch.randperm(n, generator=gen) if self.shuffle else None
        offsets = flips = bright = contrast = None
        if self.augment:
            offsets, flips = draw_augmentation(n, self.pad, self.flip, gen)
        if self.photometric:  # drawn after the crops, so adding it leaves their draws unchanged
            bright = (torch.rand(n, generator=gen) * 2 - 1) * self.brightness
            contrast = 1 + (torch.rand(n, generator=gen) * 2 - 1) * self.contrast
        plan = (perm, offsets, flips, bright, contrast)
        return tuple(None if t is None else t.to(self.device, non_blocking=True) for t in plan)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self._epoch, self._start_batch
        self._epoch, self._start_batch = epoch + 1, 0
        return self._batches(epoch, start)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm, offsets, flips, bright, contrast = self._epoch_plan(epoch)
        n, b = self.num_samples, self.batch_size
        for i in range(start, len(self)):
            lo, hi = shard_range(i * b, min((i + 1) * b, n), self.rank, self.world_size)
            if lo == hi:  # this rank's part of a last, small evaluation batch
                continue
            idx = perm[lo:hi] if perm is not None else slice(lo, hi)
            x, y = self.images[idx], self.labels[idx]
            if offsets is not None:
                # offsets/flips are indexed by position in the epoch (not by image), so they are
                # independent of the permutation and batch b's draws are the same however we got there.
                x = augment_batch(x, offsets[lo:hi], flips[lo:hi], self.pad)
            if bright is not None:
                x = jitter_batch(x, bright[lo:hi], contrast[lo:hi])
            yield normalize(x, self.mean, self.scale), y
