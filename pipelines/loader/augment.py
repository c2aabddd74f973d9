"""Spatial transforms of a decoded clip: TSN training crops and the paper's test crops.

Input: uint8 RGB frames ``(T, H, W, 3)`` as decoded; output: uint8 ``(T, 3, size, size)`` (the
training contract's channel-first layout), contiguous. Every transform is one crop box in
stored pixels and one bilinear resample of that box (antialiased when shrinking, PIL's
``BILINEAR`` filter); all frames of a clip get the same box and the same flip, so motion
between frames is not disturbed. uint8 end to end: normalisation happens on the device.

The resample is ``torch.nn.functional.interpolate(..., antialias=True)`` on uint8 (channels
last, its fast path): PIL's ``BILINEAR`` filter, equal to ``Image.resize`` of the cropped pixels
within 2 levels, and about 5x faster here (``benchmarks/loader.py``). ``Image.resize(box=...)``
differs only along the crop's border, where its filter also reads pixels outside the box.
Crop boxes are integers, so a box the size of the output is a plain copy. Randomness comes
only from the ``random.Random`` passed in.
"""
from __future__ import annotations

import random
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.loader.clips import ClipSettings

Box = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in stored pixels, right/bottom exclusive."""


def _reference(width: int, height: int, clip: ClipSettings) -> tuple[float, int, int]:
    """Stored pixels per reference pixel, and the frame's size once its short side is ``resize``."""
    factor = min(width, height) / clip.resize
    return factor, max(clip.resize, round(width / factor)), max(clip.resize, round(height / factor))


def _to_stored(left: float, top: float, w: float, h: float, factor: float, width: int,
               height: int) -> Box:
    l = min(max(round(left * factor), 0), width - 1)
    t = min(max(round(top * factor), 0), height - 1)
    r = min(max(round((left + w) * factor), l + 1), width)
    b = min(max(round((top + h) * factor), t + 1), height)
    return l, t, r, b


def crop_sizes(clip: ClipSettings) -> list[tuple[int, int]]:
    """TSN's multi-scale ``(w, h)`` crop candidates, in reference pixels.

    Each side is ``int(scale * resize)``, snapped to ``size`` when within 2 pixels of it (TSN's
    rule: no resample of 222 -> 224); pairs whose scale indices differ by at most ``max_distort``.
    """
    sides = [int(clip.resize * s) for s in clip.scales]
    sides = [clip.size if abs(s - clip.size) < 3 else s for s in sides]
    return [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides)
            if abs(i - j) <= clip.max_distort]


def train_crop_box(width: int, height: int, clip: ClipSettings, rng: random.Random) -> Box:
    """A TSN multi-scale crop: random ``(w, h)`` from :func:`crop_sizes`, offset from the 5
    fixed corner/centre positions (``corner_crops``) or uniformly random."""
    factor, rw, rh = _reference(width, height, clip)
    cw, ch = rng.choice(crop_sizes(clip))
    cw, ch = min(cw, rw), min(ch, rh)
    if clip.corner_crops:
        ws, hs = (rw - cw) // 4, (rh - ch) // 4
        x, y = rng.choice([(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)])
    else:
        x, y = rng.randint(0, rw - cw), rng.randint(0, rh - ch)
    return _to_stored(x, y, cw, ch, factor, width, height)


def eval_crop_boxes(width: int, height: int, clip: ClipSettings, crops: int = 1) -> list[Box]:
    """The test crops (paper Sec. 4.2, short side resized to ``resize`` first).

    ``crops=1``: the centre ``size`` x ``size`` square (``1x1``). ``crops=3``: three
    ``resize`` x ``resize`` squares covering the long side (left, centre, right; or top, centre,
    bottom for portrait frames), each later resized to ``size``.
    """
    factor, rw, rh = _reference(width, height, clip)
    if crops == 1:
        s = clip.size
        return [_to_stored(round((rw - s) / 2), round((rh - s) / 2), s, s, factor, width, height)]
    if crops == 3:
        s = clip.resize
        if rw >= rh:
            starts = [(0, 0), ((rw - s) // 2, 0), (rw - s, 0)]
        else:
            starts = [(0, 0), (0, (rh - s) // 2), (0, rh - s)]
        return [_to_stored(x, y, s, s, factor, width, height) for x, y in starts]
    raise ValueError(f"spatial crops must be 1 or 3, got {crops}")


def resample(frames: np.ndarray, box: Box, size: int) -> np.ndarray:
    """``frames[:, top:bottom, left:right]`` resized to ``size`` x ``size``: uint8
    ``(T, size, size, 3)``, the resample's own channels-last layout (no layout copy yet)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    left, top, right, bottom = box
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)[:, :, top:bottom, left:right]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.permute(0, 2, 3, 1).numpy()


def channels_first(frames: np.ndarray, *, flip: bool = False,
                   out: np.ndarray | None = None) -> np.ndarray:
    """``(T, H, W, 3)`` -> contiguous ``(T, 3, H, W)`` (into ``out`` when given), mirrored if
    ``flip``: the one layout copy, which the flip rides along for free."""
    if flip:
        frames = frames[:, :, ::-1]
    if out is None:
        out = np.empty((frames.shape[0], 3, *frames.shape[1:3]), dtype=np.uint8)
    out[...] = frames.transpose(0, 3, 1, 2)
    return out


def crop_resize(frames: np.ndarray, box: Box, size: int, *, flip: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`resample` then :func:`channels_first`: uint8 ``(T, 3, size, size)``."""
    return channels_first(resample(frames, box, size), flip=flip, out=out)


def train_params(width: int, height: int, clip: ClipSettings, rng: random.Random
                 ) -> tuple[Box, bool]:
    """The random part of training augmentation: the crop box, and whether to mirror."""
    box = train_crop_box(width, height, clip, rng)
    return box, clip.flip and rng.random() < 0.5


def train_transform(frames: np.ndarray, clip: ClipSettings, rng: random.Random, *,
                    out: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Training augmentation: multi-scale crop, resize to ``size``, random flip (if ``flip``).

    Returns ``(T, 3, size, size)`` uint8 and whether the clip was mirrored (for label swaps).
    """
    box, flipped = train_params(frames.shape[2], frames.shape[1], clip, rng)
    return crop_resize(frames, box, clip.size, flip=flipped, out=out), flipped


def eval_transform(frames: np.ndarray, clip: ClipSettings, crops: int = 1) -> np.ndarray:
    """Test crops of every frame: uint8 ``(crops, T, 3, size, size)``, no randomness."""
    boxes = eval_crop_boxes(frames.shape[2], frames.shape[1], clip, crops)
    out = np.empty((len(boxes), frames.shape[0], 3, clip.size, clip.size), dtype=np.uint8)
    for k, box in enumerate(boxes):
        crop_resize(frames, box, clip.size, out=out[k])
    return out


def flipped_label(label: int, flipped: bool, swap: Mapping[int, int] | None) -> int:
    """The label of a (possibly mirrored) clip: ``swap[label]`` when mirrored, else ``label``."""
    return swap.get(label, label) if flipped and swap else label
