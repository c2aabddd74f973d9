"""Drawing primitives of the default renderer (value-noise backgrounds, textured shapes drawn
with signed distances), shared by the package's default videos and :mod:`.scenes`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a small ``(gh, gw, C)`` grid: smooth noise from arithmetic only."""
    gh, gw = grid.shape[:2]
    ys = np.linspace(0.0, gh - 1.0, height)
    xs = np.linspace(0.0, gw - 1.0, width)
    y0 = np.minimum(ys.astype(np.int64), gh - 2)
    x0 = np.minimum(xs.astype(np.int64), gw - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng: np.random.Generator, height: int, width: int, kind: int | None = None
                ) -> np.ndarray:
    """A random colour texture: multi-octave value noise, optionally with stripes or checks.

    ``kind`` (0 noise, 1 stripes, 2 checks, 3 noise with soft blobs) is drawn when not given.
    """
    noise = np.zeros((height, width, 3))
    for cells, weight in ((3, 0.5), (7, 0.3), (17, 0.2)):
        noise += weight * _upsample(rng.random((cells + 1, cells + 1, 3)), height, width)
    low, high = rng.random(3) * 0.5, 0.5 + rng.random(3) * 0.5
    texture = low + (high - low) * noise
    kind = int(rng.integers(3)) if kind is None else kind
    if kind == 3:  # soft blobs of other colours
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        for _ in range(int(rng.integers(3, 7))):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = float(rng.uniform(0.08, 0.2)) * min(height, width)
            weight = np.clip(1.2 - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r, 0, 1)[..., None]
            texture = texture * (1 - weight) + rng.random(3) * weight
    elif kind:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        period = float(rng.uniform(6, 20))
        if kind == 1:  # oriented stripes
            angle = float(rng.uniform(0, math.pi))
            phase = (xx * math.cos(angle) + yy * math.sin(angle)) // period % 2
        else:  # checks
            phase = (xx // period + yy // period) % 2
        texture = texture * (1 - 0.25 * phase[..., None]) + 0.1 * phase[..., None]
    return texture


@dataclass(frozen=True)
class _Shape:
    kind: int  # 0 disk, 1 square, 2 diamond, 3 cross, 4 ring
    radius: float
    colors: np.ndarray  # (2, 3) stripe colours
    marker: np.ndarray  # (3,)
    stripe_period: float
    stripe_angle: float
    texture: int = 0  # 0 stripes, 1 checks, 2 solid, 3 radial bands


def _random_shape(rng: np.random.Generator, radius: float) -> _Shape:
    colors = rng.random((2, 3))
    return _Shape(int(rng.integers(5)), radius, colors, 1.0 - colors[0],
                  float(rng.uniform(0.3, 0.6) * radius), float(rng.uniform(0, math.pi)))


def _signed_distance(kind: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (local units) to the shape's edge, negative inside."""
    au, av = np.abs(u), np.abs(v)
    if kind == 0:
        return np.sqrt(u * u + v * v) - r
    if kind == 1:
        return np.maximum(au, av) - 0.85 * r
    if kind == 2:
        return (au + av) * (1 / math.sqrt(2)) - 0.75 * r
    if kind == 3:
        return np.minimum(np.maximum(au - r, av - 0.35 * r), np.maximum(au - 0.35 * r, av - r))
    return np.abs(np.sqrt(u * u + v * v) - 0.65 * r) - 0.35 * r


def _texture(shape: _Shape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """0/1 pattern in the shape's own coordinates (which of its two colours a pixel takes)."""
    if shape.texture == 2:
        return np.zeros_like(u)
    along = u * math.cos(shape.stripe_angle) + v * math.sin(shape.stripe_angle)
    if shape.texture == 0:
        return along // shape.stripe_period % 2
    if shape.texture == 1:
        across = v * math.cos(shape.stripe_angle) - u * math.sin(shape.stripe_angle)
        return (along // shape.stripe_period + across // shape.stripe_period) % 2
    return np.sqrt(u * u + v * v) // (0.5 * shape.stripe_period) % 2


def _draw(frames: np.ndarray, shape: _Shape, cx: np.ndarray, cy: np.ndarray, scale: np.ndarray,
          angle: np.ndarray, alpha: np.ndarray) -> None:
    """Composite one textured shape into ``frames`` (T, H, W, 3), with per-frame pose arrays.

    The pose is applied as an inverse transform of the pixel grid, with anti-aliased edges; the
    stripes and the off-centre marker live in the shape's own coordinates so rotation shows.
    Work is done in a per-frame window around the shape (every shape fits in 1.25 radii), which
    is what keeps a video at a few milliseconds.
    """
    t, h, w, _ = frames.shape
    half = math.ceil(1.25 * shape.radius * float(scale.max())) + 2
    size = 2 * half + 1
    ox = np.floor(cx).astype(np.int64) - half
    oy = np.floor(cy).astype(np.int64) - half
    steps = np.arange(size, dtype=np.float64)
    xx = (ox[:, None] + steps)[:, None, :]
    yy = (oy[:, None] + steps)[:, :, None]
    cos = np.array([math.cos(a) for a in angle])[:, None, None]
    sin = np.array([math.sin(a) for a in angle])[:, None, None]
    s = scale[:, None, None]
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    u = (cos * dx + sin * dy) / s
    v = (cos * dy - sin * dx) / s
    coverage = np.clip(0.5 - _signed_distance(shape.kind, u, v, shape.radius) * s, 0.0, 1.0)
    coverage *= alpha[:, None, None]
    stripe = _texture(shape, u, v)[..., None]
    color = shape.colors[0] * (1 - stripe) + shape.colors[1] * stripe
    mu, mv = u - 0.55 * shape.radius, v
    marker = np.clip(0.5 - (np.sqrt(mu * mu + mv * mv) - 0.22 * shape.radius) * s, 0, 1)[..., None]
    color = color * (1 - marker) + shape.marker * marker
    for i in range(t):
        x0, y0 = max(int(ox[i]), 0), max(int(oy[i]), 0)
        x1, y1 = min(int(ox[i]) + size, w), min(int(oy[i]) + size, h)
        if x0 >= x1 or y0 >= y1:
            continue
        window = (slice(y0 - int(oy[i]), y1 - int(oy[i])), slice(x0 - int(ox[i]), x1 - int(ox[i])))
        cov = coverage[i][window][..., None]
        region = frames[i, y0:y1, x0:x1]
        region *= 1 - cov
        region += color[i][window] * cov
