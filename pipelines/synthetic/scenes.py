"""The ``shapes`` renderer: the default generator's drawing with a family's settings.

Signed-distance shapes and value-noise backgrounds of :mod:`pipelines.synthetic`, with what the
default leaves fixed drawn per video (:class:`pipelines.synthetic.families.Settings`): the
actor's shape, texture, size, speed and acceleration; the background kind; clutter drawn into the
scene; a camera that pans and zooms by resampling the scene (bilinear, sub-pixel); frame size,
length and sensor noise. The actor moves in screen coordinates, so the camera moves everything
but the class. The twin of a video is its exact frame reversal (``twins: reversal``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from pipelines.synthetic.drawing import _background, _draw, _random_shape, _Shape
from pipelines.synthetic.families import Settings, add_noise, progress

SHAPE_KINDS = {"disk": 0, "square": 1, "diamond": 2, "cross": 3, "ring": 4}
TEXTURE_KINDS = {"stripes": 0, "checks": 1, "solid": 2, "bands": 3}
BACKGROUND_KINDS = {"noise": 0, "stripes": 1, "checks": 2, "blobs": 3}


def _shape(rng: np.random.Generator, settings: Settings, radius: float) -> _Shape:
    return dataclasses.replace(_random_shape(rng, radius), kind=SHAPE_KINDS[settings.shape],
                               texture=TEXTURE_KINDS[settings.texture])


def camera(world: np.ndarray, settings: Settings) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` seen by a camera panning across and zooming into ``world``.

    Frame ``i`` is centred at the world's centre plus ``pan x (i - (T-1)/2)`` and magnified by
    ``zoom ** (i / (T-1))``; pixels are bilinear samples of the world.
    """
    n, h, w = settings.frames, settings.height, settings.width
    wh, ww = world.shape[:2]
    frames = np.empty((n, h, w, 3))
    for i in range(n):
        scale = settings.zoom ** (i / (n - 1))
        shift = i - (n - 1) / 2
        ys = (wh - 1) / 2 + settings.pan[1] * shift + (np.arange(h) - (h - 1) / 2) / scale
        xs = (ww - 1) / 2 + settings.pan[0] * shift + (np.arange(w) - (w - 1) / 2) / scale
        y0 = np.clip(np.floor(ys).astype(np.int64), 0, wh - 2)
        x0 = np.clip(np.floor(xs).astype(np.int64), 0, ww - 2)
        fy = np.clip(ys - y0, 0, 1)[:, None, None]
        fx = np.clip(xs - x0, 0, 1)[None, :, None]
        top = world[y0][:, x0] * (1 - fx) + world[y0][:, x0 + 1] * fx
        bottom = world[y0 + 1][:, x0] * (1 - fx) + world[y0 + 1][:, x0 + 1] * fx
        frames[i] = top * (1 - fy) + bottom * fy
    return frames


def _margins(settings: Settings) -> tuple[int, int]:
    """World border (y, x) the camera may see beyond the frame: pan travel and zoom-out."""
    n, smallest = settings.frames, min(1.0, settings.zoom)
    out = []
    for size, pan in ((settings.height, settings.pan[1]), (settings.width, settings.pan[0])):
        out.append(math.ceil(size / 2 / smallest - size / 2 + abs(pan) * (n - 1) / 2) + 2)
    return out[0], out[1]


def motion(kind: int, settings: Settings, rng: np.random.Generator, radius: float
           ) -> tuple[np.ndarray, ...]:
    """Pose arrays (cx, cy, scale, angle, alpha) of the forward class of pair ``kind``."""
    n, h, w = settings.frames, settings.height, settings.width
    u, ones, short = progress(settings, n), np.ones(n), min(h, w)
    angle0 = float(rng.uniform(0, 2 * math.pi))
    if kind in (0, 1):  # move_right / move_down
        along, across = (w, h) if kind == 0 else (h, w)
        travel = settings.speed * short * (n - 1)
        start = float(rng.uniform(0.4, 0.6)) * along - travel / 2
        margin = min(1.2 * radius, across / 2)
        other = float(rng.uniform(margin, across - margin)) * ones
        pos = start + travel * u
        cx, cy = (pos, other) if kind == 0 else (other, pos)
        return cx, cy, ones, angle0 * ones, ones
    cx = float(rng.uniform(0.35, 0.65)) * w * ones
    cy = float(rng.uniform(0.35, 0.65)) * h * ones
    if kind == 2:  # approach: grows by g, centred on the drawn size
        growth = 1 + 4 * settings.speed * (n - 1)
        return cx, cy, growth ** (u - 0.5), angle0 * ones, ones
    if kind == 3:  # rotate_cw (y points down: increasing angle turns clockwise on screen)
        turn = math.radians(600 * settings.speed) * (n - 1)
        return cx, cy, ones, angle0 + turn * u, ones
    fade = min(n - 1.0, 1 / (5 * settings.speed))  # appear
    onset = float(rng.uniform(0, n - 1 - fade))
    return cx, cy, ones, angle0 * ones, np.clip((np.arange(n) - onset) / fade, 0.0, 1.0)


def render(settings: Settings, pair: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames ``(T, H, W, 3)`` of one video of ``PAIRS[pair][1]`` under ``settings``."""
    n, h, w, short = settings.frames, settings.height, settings.width, min(settings.height,
                                                                          settings.width)
    my, mx = _margins(settings)
    world = _background(rng, h + 2 * my, w + 2 * mx, BACKGROUND_KINDS[settings.background])
    one = np.ones(1)
    for _ in range(settings.clutter):  # static distractors, part of the scene the camera sees
        shape = _shape(rng, settings, float(rng.uniform(0.04, 0.08)) * short)
        _draw(world[None], shape, rng.uniform(0, w + 2 * mx, 1), rng.uniform(0, h + 2 * my, 1),
              one, rng.uniform(0, 2 * math.pi, 1), one)
    frames = camera(world, settings)
    actor = _shape(rng, settings, settings.object_size * short / 2)
    _draw(frames, actor, *motion(pair, settings, rng, actor.radius))
    return add_noise(frames, settings, rng)
