"""The ``sprites`` renderer: drawing code written apart from the shapes renderer.

A held-out family must not share drawing code with the family a recipe was tuned on, or a model
could learn the renderer's habits (its edge profile, its noise spectrum) instead of the motion.
This one shares none of :mod:`pipelines.synthetic.scenes`' pixels: scenes are PIL images — a
linear-gradient or tiled backdrop with rectangles and ellipses as clutter; the actor is a polygon
(triangle, star, hexagon, arrow) drawn 4x supersampled and downscaled with a Lanczos filter,
textured with dots or an outline, placed each frame by one affine warp (rotation, scale,
sub-pixel position) and alpha-composited; the camera is a moving, zooming crop box resampled by
PIL. Only the settings (:mod:`pipelines.synthetic.families`) and the final noise are common.

Twins are made by reversed motion (``twins: motion``): a video of the first class of a pair is
its own scene whose pose over time is the forward class's pose played backwards
(:func:`pose` with ``side=0`` is ``side=1`` reversed), so no two videos share a frame.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from pipelines.synthetic.families import Settings, add_noise, progress

SUPERSAMPLE = 4


def _polygon(shape: str, radius: float) -> list[tuple[float, float]]:
    """Vertices around the origin (the first vertex points along +x)."""
    if shape == "star":
        return [((radius if k % 2 == 0 else 0.45 * radius) * math.cos(k * math.pi / 5),
                 (radius if k % 2 == 0 else 0.45 * radius) * math.sin(k * math.pi / 5))
                for k in range(10)]
    if shape == "arrow":
        r = radius
        return [(r, 0), (0.1 * r, 0.7 * r), (0.1 * r, 0.3 * r), (-r, 0.3 * r), (-r, -0.3 * r),
                (0.1 * r, -0.3 * r), (0.1 * r, -0.7 * r)]
    corners = {"triangle": 3, "hexagon": 6}[shape]
    return [(radius * math.cos(2 * math.pi * k / corners),
             radius * math.sin(2 * math.pi * k / corners)) for k in range(corners)]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def sprite(settings: Settings, diameter: int, rng: np.random.Generator) -> Image.Image:
    """The actor as an RGBA image ``diameter`` pixels wide, anti-aliased by supersampling."""
    big = diameter * SUPERSAMPLE
    centre, radius = big / 2, 0.48 * big
    points = [(centre + x, centre + y) for x, y in _polygon(settings.shape, radius)]
    fill, accent = _colour(rng), _colour(rng)
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon(points, fill=fill + (255,))
    if settings.texture == "outline":
        draw.line(points + points[:1], fill=accent + (255,), width=max(1, big // 10),
                  joint="curve")
    else:  # dots inside the polygon
        mask = Image.new("L", (big, big), 0)
        ImageDraw.Draw(mask).polygon(points, fill=255)
        dots = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        dot_draw, size = ImageDraw.Draw(dots), big / 10
        for x, y in rng.uniform(0, big, (int(rng.integers(6, 12)), 2)):
            dot_draw.ellipse((x - size, y - size, x + size, y + size), fill=accent + (255,))
        image.alpha_composite(Image.composite(dots, Image.new("RGBA", dots.size), mask))
    tip_x, tip_y = points[0]  # a notch at the first vertex, so a turn shows
    notch = big / 9
    draw.ellipse((tip_x - 2.2 * notch, tip_y - notch, tip_x - 0.2 * notch, tip_y + notch),
                 fill=accent + (255,))
    return image.resize((diameter, diameter), Image.LANCZOS)


def backdrop(settings: Settings, height: int, width: int, rng: np.random.Generator
             ) -> Image.Image:
    """The static scene: a gradient or tiles, then rectangles and ellipses as clutter."""
    if settings.background == "gradient":
        a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
        angle = float(rng.uniform(0, 2 * math.pi))
        yy, xx = np.mgrid[0:height, 0:width]
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        image = Image.fromarray((a + (b - a) * ramp[..., None]).astype(np.uint8), "RGB")
    else:  # tiles, each a shade of one base colour
        image = Image.new("RGB", (width, height))
        draw, tile = ImageDraw.Draw(image), int(rng.integers(10, 24))
        base = np.array(_colour(rng))
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                shade = np.clip(base + rng.integers(-40, 41, 3), 0, 255)
                draw.rectangle((x, y, x + tile, y + tile), fill=tuple(int(c) for c in shade))
    draw = ImageDraw.Draw(image)
    short = min(height, width)
    for _ in range(settings.clutter):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.02, 0.07, 2) * short
        box = (x - rx, y - ry, x + rx, y + ry)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=_colour(rng))
    return image


def pose(pair: int, side: int, settings: Settings, rng: np.random.Generator
         ) -> tuple[np.ndarray, ...]:
    """Per-frame (x, y, scale, angle in radians, opacity) of class ``PAIRS[pair][side]``.

    Side 1 is the forward motion; side 0 is the same draws played backwards in time.
    """
    n, h, w = settings.frames, settings.height, settings.width
    u, flat, short = progress(settings, n), np.ones(n), min(h, w)
    x = float(rng.uniform(0.35, 0.65)) * w * flat
    y = float(rng.uniform(0.35, 0.65)) * h * flat
    scale, opacity = flat.copy(), flat.copy()
    angle = float(rng.uniform(0, 2 * math.pi)) + 0 * flat
    bob = float(rng.uniform(0.0, 0.02)) * short * np.sin(2 * math.pi * u
                                                         + float(rng.uniform(0, 2 * math.pi)))
    if pair in (0, 1):  # right / down, with a small bob across the motion
        travel = settings.speed * short * (n - 1)
        if pair == 0:
            x, y = x[0] - travel / 2 + travel * u, y + bob
        else:
            x, y = x + bob, y[0] - travel / 2 + travel * u
    elif pair == 2:  # approach
        scale = (1 + 4 * settings.speed * (n - 1)) ** (u - 0.5)
    elif pair == 3:  # clockwise on screen (y down: a growing angle)
        angle = angle + math.radians(600 * settings.speed) * (n - 1) * u
    else:  # appear
        fade = min(n - 1.0, 1 / (5 * settings.speed))
        onset = float(rng.uniform(0, n - 1 - fade))
        opacity = np.clip((np.arange(n) - onset) / fade, 0.0, 1.0)
    arrays = (x, y, scale, angle, opacity)
    return arrays if side == 1 else tuple(a[::-1].copy() for a in arrays)


def _place(actor: Image.Image, size: tuple[int, int], x: float, y: float, scale: float,
           angle: float, opacity: float) -> Image.Image:
    """The actor warped onto a transparent layer of ``size``: centre at (x, y), turned, scaled."""
    c = actor.width / 2
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # inverse map, output pixel -> actor pixel: R(-angle) (p - centre) / scale + c
    matrix = (cos, sin, c - cos * x - sin * y, -sin, cos, c + sin * x - cos * y)
    layer = actor.transform(size, Image.AFFINE, matrix, resample=Image.BILINEAR)
    if opacity < 1:
        alpha = layer.getchannel("A").point(lambda a: int(round(a * opacity)))
        layer.putalpha(alpha)
    return layer


def render(settings: Settings, pair: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames ``(T, H, W, 3)`` of one video of class ``PAIRS[pair][side]``."""
    n, h, w = settings.frames, settings.height, settings.width
    smallest = min(1.0, settings.zoom)
    my = math.ceil(h / 2 / smallest - h / 2 + abs(settings.pan[1]) * (n - 1) / 2) + 2
    mx = math.ceil(w / 2 / smallest - w / 2 + abs(settings.pan[0]) * (n - 1) / 2) + 2
    world = backdrop(settings, h + 2 * my, w + 2 * mx, rng)
    actor = sprite(settings, max(4, round(settings.object_size * min(h, w))), rng)
    x, y, scale, angle, opacity = pose(pair, side, settings, rng)
    frames = np.empty((n, h, w, 3))
    for i in range(n):
        zoom = settings.zoom ** (i / (n - 1))
        cx = world.width / 2 + settings.pan[0] * (i - (n - 1) / 2)
        cy = world.height / 2 + settings.pan[1] * (i - (n - 1) / 2)
        half_w, half_h = w / 2 / zoom, h / 2 / zoom
        view = world.resize((w, h), Image.BILINEAR,
                            box=(cx - half_w, cy - half_h, cx + half_w, cy + half_h))
        frame = Image.alpha_composite(view.convert("RGBA"), _place(
            actor, (w, h), float(x[i]), float(y[i]), float(scale[i]), float(angle[i]),
            float(opacity[i])))
        frames[i] = np.asarray(frame.convert("RGB"), dtype=np.float64) / 255.0
    return add_noise(frames, settings, rng)
