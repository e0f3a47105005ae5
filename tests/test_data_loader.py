"""The device-resident loader: exact augmentation semantics (spec §5.1), batching and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptive_weights.data import DeviceLoader, augment_batch, draw_augmentation
from adaptive_weights.data._rng import make_generator


def _reference(img: np.ndarray, off_r: int, off_c: int, flip: bool, pad: int, mean: np.ndarray, scale: float):
    """Spec §5.1 for one image, literally: zero canvas, paste, crop, flip, then (x - mean) / scale."""
    c, h, w = img.shape
    canvas = np.zeros((c, h + 2 * pad, w + 2 * pad), np.float64)
    canvas[:, pad:pad + h, pad:pad + w] = img
    crop = canvas[:, off_r:off_r + h, off_c:off_c + w]
    if flip:
        crop = crop[:, :, ::-1]
    return (crop - mean) / scale


def test_augment_batch_hand_computed():
    img = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)  # rows 1..4, 5..8, 9..12, 13..16
    out = augment_batch(img, torch.tensor([[0, 0]]), torch.tensor([False]), pad=1)
    expected = [[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]  # shifted down-right, zeros in
    assert out.dtype == torch.uint8 and out[0, 0].tolist() == expected
    out = augment_batch(img, torch.tensor([[2, 1]]), torch.tensor([True]), pad=1)
    assert out[0, 0].tolist() == [[8, 7, 6, 5], [12, 11, 10, 9], [16, 15, 14, 13], [0, 0, 0, 0]]
    centred = augment_batch(img.expand(2, 3, 4, 4), torch.tensor([[1, 1], [1, 1]]), torch.tensor([False, True]), 1)
    assert torch.equal(centred[0], img[0].expand(3, 4, 4)) and torch.equal(centred[1], img[0].flip(-1).expand(3, 4, 4))


def test_draw_augmentation_ranges():
    offsets, flips = draw_augmentation(4000, 4, True, make_generator(0))
    assert offsets.min() == 0 and offsets.max() == 7  # shifts -4..+3: never an offset of 8
    assert torch.bincount(offsets.flatten(), minlength=8).min() > 800  # uniform: 1000 expected per value
    assert 0.45 < flips.float().mean() < 0.55
    _, no_flip = draw_augmentation(100, 4, False, make_generator(0))
    assert not no_flip.any()


def _loader(n=24, c=3, s=8, **kw):
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n)  # labels double as image ids
    mean = images.double().mean(0).float()
    defaults = dict(batch_size=5, shuffle=True, pad=2, flip=True, mean=mean, seed=3, drop_last=True)
    return DeviceLoader(images, labels, **{**defaults, **kw})


@pytest.mark.parametrize("flip", [True, False])
def test_loader_matches_the_literal_spec(flip):
    loader = _loader(flip=flip)
    perm, offsets, flips, *_ = loader._epoch_plan(4)
    loader.set_epoch(4)
    seen = 0
    for b, (x, y) in enumerate(loader):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (5, 3, 8, 8)
        for k in range(5):
            pos = b * 5 + k
            assert y[k] == perm[pos]
            ref = _reference(loader.images[y[k]].numpy(), *offsets[pos].tolist(), bool(flips[pos]), 2,
                             loader.mean.numpy().astype(np.float64), 128.0)
            np.testing.assert_allclose(x[k].numpy(), ref, rtol=0, atol=1e-6)
            seen += 1
    assert seen == 20 and bool(flips.any()) == flip


def test_padded_pixels_are_minus_mean_over_128():
    images = torch.full((16, 3, 8, 8), 200, dtype=torch.uint8)
    mean = torch.linspace(10, 80, 3 * 8 * 8).view(3, 8, 8)
    loader = DeviceLoader(images, torch.zeros(16), batch_size=16, shuffle=True, pad=4, flip=True, mean=mean)
    _, offsets, flips, *_ = loader._epoch_plan(0)
    x, _ = next(iter(loader))
    pad_value, image_value = -mean / 128, (200 - mean) / 128
    assert offsets.max() == 7
    for k in range(16):
        r, c = offsets[k].tolist()
        inside = torch.zeros(8, 8, dtype=torch.bool)  # where the pasted image lands in the crop
        inside[max(0, 4 - r):min(8, 12 - r), max(0, 4 - c):min(8, 12 - c)] = True
        if flips[k]:
            inside = inside.flip(-1)
        torch.testing.assert_close(x[k], torch.where(inside, image_value, pad_value))
    assert (offsets != 4).any()


def test_epoch_is_a_permutation_and_epochs_differ():
    loader = _loader(n=27)  # drop_last: 5 batches of 5, two images left out
    assert len(loader) == 5 and loader.num_samples == 27
    ids0 = torch.cat([y for _, y in loader])
    ids1 = torch.cat([y for _, y in loader])  # auto-advanced to epoch 1
    assert len(ids0) == 25 and len(set(ids0.tolist())) == 25
    assert not torch.equal(ids0, ids1)
    left_out = [set(range(27)) - set(ids.tolist()) for ids in (ids0, ids1)]
    assert all(len(s) == 2 for s in left_out)


def test_same_seed_same_batches_other_seed_other_batches():
    a, b, c = list(_loader()), list(_loader()), list(_loader(seed=4))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][1], c[0][1]) and not torch.equal(a[0][0], c[0][0])


def test_set_epoch_and_start_batch_resume_exactly():
    straight = _loader()
    epochs = [[(x.clone(), y.clone()) for x, y in straight] for _ in range(3)]  # epochs 0, 1, 2
    resumed = _loader()
    resumed.set_epoch(2, start_batch=3)
    tail = list(resumed)
    assert len(tail) == len(straight) - 3 == 1
    for (x, y), (xr, yr) in zip(epochs[2][3:], tail, strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    again = list(resumed)  # after a resumed epoch the next iteration is the full epoch 3
    fresh = _loader()
    fresh.set_epoch(3)
    assert len(again) == 4 and all(torch.equal(p[0], q[0]) for p, q in zip(again, fresh, strict=True))
    with pytest.raises(ValueError, match="start_batch=5"):
        resumed.set_epoch(0, start_batch=5)


def test_eval_loader_keeps_order_and_partial_batch():
    loader = _loader(n=12, shuffle=False, pad=0, flip=False, drop_last=False)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [5, 5, 2]
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(12))
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x, (loader.images.float() - loader.mean) / 128)
    assert torch.equal(torch.cat([x for x, _ in loader]), x)  # eval batches do not change by epoch


def test_loader_validates_arguments():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="no batch"):
        DeviceLoader(images, torch.zeros(4), batch_size=5, drop_last=True)
    with pytest.raises(ValueError, match=r"mean shape \(3, 2, 2\)"):
        DeviceLoader(images, torch.zeros(4), batch_size=2, mean=torch.zeros(3, 2, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu_and_never_sync():
    cpu = _loader()
    gpu = _loader(device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any host-device sync inside the loop raises
    try:
        out = [(x, y) for x, y in gpu]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for (xc, yc), (xg, yg) in zip(cpu, out, strict=True):
        assert xg.device.type == "cuda" and torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-6)


def test_svhn_photometric_jitter_matches_its_definition():
    """Brightness then per-channel contrast, clipped to 0..255; the crops are unchanged by it."""
    from adaptive_weights.data import DeviceLoader
    from adaptive_weights.data._device_loader import jitter_batch

    x = torch.tensor([[[[0, 100], [200, 250]]]], dtype=torch.uint8)  # 1 image, 1 channel, 2x2
    out = jitter_batch(x, torch.tensor([10.0]), torch.tensor([1.2]))
    b = torch.tensor([10.0, 110.0, 210.0, 255.0])  # +10, 260 clipped to 255
    expected = ((b - b.mean()) * 1.2 + b.mean()).clamp(0, 255).view(1, 1, 2, 2)
    torch.testing.assert_close(out, expected)

    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16)
    plain = DeviceLoader(images, labels, batch_size=16, shuffle=True, pad=1, seed=3)
    jittered = DeviceLoader(images, labels, batch_size=16, shuffle=True, pad=1, seed=3, brightness=10, contrast=0.2)
    (xp, yp), (xj, yj) = next(iter(plain)), next(iter(jittered))
    assert torch.equal(yp, yj)  # same order
    assert not torch.equal(xp, xj)
    # each jittered image is the plain crop under an increasing per-image map (brightness, clip,
    # contrast > 0, clip): sorting a channel's plain pixels sorts its jittered pixels too
    for k in range(4):
        a, c = xp[k, 0].flatten(), xj[k, 0].flatten()
        assert torch.all(c[a.argsort()].diff() >= -1e-5)
    with pytest.raises(ValueError, match="contrast=1.5"):
        DeviceLoader(images, labels, batch_size=4, contrast=1.5)
