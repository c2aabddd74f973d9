"""Families of rendering settings: datasets of the same task drawn from disjoint declared ranges.

A :class:`Family` declares, for every setting that changes how a video looks, the range (or the
set of kinds) it is drawn from per video: object shape, size (diameter over the frame's short
side, 5-40 %), texture, speed and acceleration of the motion, background, clutter (static
distractors), camera pan and zoom, frame size (96-160) and length, sensor noise and compression.
``train`` is the family a recipe may be chosen on; ``heldout_*`` are the families it is judged
on. Each held-out family's ranges are disjoint from ``train``'s (no shared shape or texture kind,
non-overlapping numeric ranges; ``test_synthetic_families`` checks it), so a held-out score says
how the recipe does on videos unlike any it was tuned on.

``renderer`` says which drawing code makes the frames: ``shapes``
(:mod:`pipelines.synthetic.scenes`, the default generator's signed-distance drawing with
these ranges) or ``sprites`` (:mod:`pipelines.synthetic.sprites`, independently written: PIL
polygons, supersampled, composited as sprites). ``twins`` says how the order twin of a class is
made: ``reversal`` (the twin video is the exact frame reversal of the rendered one, as in the
default family) or ``motion`` (each twin video is its own scene whose motion is the other
class's motion played backwards; no video shares frames with another).

Speed is one unitless number per video, turned into each motion as: translation ``speed`` x the
short side per frame; rotation ``600 x speed`` degrees per frame; approach a growth by the factor
``g = 1 + 4 x speed x (T - 1)`` over the video (from ``1/sqrt(g)`` to ``sqrt(g)`` times the drawn
size); appear a fade-in over ``1 / (5 x speed)`` frames. Acceleration bends the motion's progress
``u = f + a x f x (f - 1)`` (``f`` = time fraction, ``a`` drawn in ``[-acc, acc]``: speeding up or
slowing down alike, so a reversal stays a plausible video of the twin).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

SHAPES = ("disk", "square", "diamond", "cross", "ring", "triangle", "star", "hexagon", "arrow")
TEXTURES = ("stripes", "checks", "solid", "bands", "dots", "outline")
BACKGROUNDS = ("noise", "stripes", "checks", "blobs", "gradient", "tiles")
Range = tuple[float, float]


@dataclass(frozen=True)
class Family:
    """Declared ranges (``(low, high)``, both included) and kind sets of one family."""

    name: str
    renderer: str  # "shapes" | "sprites"
    twins: str  # "reversal" | "motion"
    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    object_size: Range  # actor diameter / short side of the frame
    speed: Range  # see the module docstring
    acceleration: Range  # |a| of the progress bend, 0 <= a < 1
    clutter: tuple[int, int]  # static distractor objects
    pan: Range  # camera pan speed, pixels per frame
    zoom: Range  # camera scale at the last frame over the first (> 1 zooms in)
    frame_size: tuple[int, int]  # height and width, each drawn (even)
    frames: tuple[int, int]  # video length
    noise: Range  # Gaussian sensor noise, standard deviation in levels of 255
    qp: tuple[int, int]  # x264 constant quantiser

    def __post_init__(self) -> None:
        problems = []
        for name, known in (("shapes", SHAPES), ("textures", TEXTURES),
                            ("backgrounds", BACKGROUNDS)):
            kinds = getattr(self, name)
            if not kinds or not set(kinds) <= set(known):
                problems.append(f"{name} must be a non-empty subset of {known}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "renderer", "twins") and isinstance(value[0], (int, float)):
                if len(value) != 2 or value[0] > value[1]:
                    problems.append(f"{f.name} must be (low, high) with low <= high")
        if self.renderer not in ("shapes", "sprites") or self.twins not in ("reversal", "motion"):
            problems.append("renderer must be shapes|sprites and twins reversal|motion")
        if not (0.05 <= self.object_size[0] and self.object_size[1] <= 0.40):
            problems.append("object_size must lie in 0.05..0.40 of the frame")
        if not (96 <= self.frame_size[0] and self.frame_size[1] <= 160):
            problems.append("frame_size must lie in 96..160")
        if self.frames[0] < 4 or not 0 <= self.acceleration[0] <= self.acceleration[1] < 1:
            problems.append("frames must be >= 4 and acceleration in [0, 1)")
        if problems:
            raise ValueError(f"Family {self.name}: " + "; ".join(problems))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("train", renderer="shapes", twins="reversal",
           shapes=("disk", "square", "cross"), textures=("stripes", "solid"),
           backgrounds=("noise", "stripes"), object_size=(0.12, 0.24), speed=(0.012, 0.022),
           acceleration=(0.0, 0.3), clutter=(0, 3), pan=(0.0, 1.5), zoom=(1.0, 1.15),
           frame_size=(112, 128), frames=(14, 18), noise=(0.0, 3.0), qp=(18, 24)),
    # same drawing code, every range moved: big objects, fast, busy, zooming, long and noisy
    Family("heldout_a", renderer="shapes", twins="reversal",
           shapes=("diamond", "ring"), textures=("checks", "bands"),
           backgrounds=("checks", "blobs"), object_size=(0.26, 0.40), speed=(0.024, 0.032),
           acceleration=(0.35, 0.6), clutter=(4, 6), pan=(1.6, 2.5), zoom=(1.2, 1.35),
           frame_size=(136, 160), frames=(20, 24), noise=(4.0, 8.0), qp=(26, 30)),
    # independently written drawing code, twins made by reversed motion: small, slow, zooming out
    Family("heldout_b", renderer="sprites", twins="motion",
           shapes=("triangle", "star", "hexagon", "arrow"), textures=("dots", "outline"),
           backgrounds=("gradient", "tiles"), object_size=(0.05, 0.10), speed=(0.024, 0.034),
           acceleration=(0.35, 0.6), clutter=(4, 8), pan=(1.6, 2.2), zoom=(0.8, 0.92),
           frame_size=(96, 108), frames=(10, 12), noise=(4.0, 7.0), qp=(26, 32)),
    # the sprite renderer again: large, slow objects in long, big, zooming-in videos
    Family("heldout_c", renderer="sprites", twins="motion",
           shapes=("star", "arrow", "hexagon"), textures=("outline", "dots"),
           backgrounds=("tiles", "gradient"), object_size=(0.26, 0.36), speed=(0.006, 0.011),
           acceleration=(0.35, 0.6), clutter=(4, 6), pan=(1.6, 2.4), zoom=(1.2, 1.3),
           frame_size=(144, 160), frames=(20, 24), noise=(4.0, 6.0), qp=(25, 28)),
)}


@dataclass(frozen=True)
class Settings:
    """One video's rendering settings, drawn from a family."""

    shape: str
    texture: str
    background: str
    object_size: float
    speed: float
    acceleration: float  # signed
    clutter: int
    pan: tuple[float, float]  # (x, y) pixels per frame
    zoom: float
    height: int
    width: int
    frames: int
    noise: float
    qp: int


def draw_settings(family: Family, rng: np.random.Generator) -> Settings:
    """A video's settings, uniform in every declared range (kinds uniformly among the set)."""
    def pick(kinds: tuple[str, ...]) -> str:
        return kinds[int(rng.integers(len(kinds)))]

    def between(bounds: Range) -> float:
        return float(rng.uniform(bounds[0], bounds[1]))

    def whole(bounds: tuple[int, int]) -> int:
        return int(rng.integers(bounds[0], bounds[1] + 1))

    def even(bounds: tuple[int, int]) -> int:
        return 2 * int(rng.integers(math.ceil(bounds[0] / 2), bounds[1] // 2 + 1))

    shape, texture = pick(family.shapes), pick(family.textures)
    background = pick(family.backgrounds)
    pan_speed, pan_angle = between(family.pan), float(rng.uniform(0, 2 * math.pi))
    acceleration = between(family.acceleration) * (1 if rng.random() < 0.5 else -1)
    return Settings(
        shape=shape, texture=texture, background=background,
        object_size=between(family.object_size), speed=between(family.speed),
        acceleration=acceleration, clutter=whole(family.clutter),
        pan=(pan_speed * math.cos(pan_angle), pan_speed * math.sin(pan_angle)),
        zoom=between(family.zoom), height=even(family.frame_size), width=even(family.frame_size),
        frames=whole(family.frames), noise=between(family.noise), qp=whole(family.qp))


def progress(settings: Settings, n: int) -> np.ndarray:
    """The motion's progress 0 → 1 over ``n`` frames, bent by the signed acceleration."""
    f = np.arange(n, dtype=np.float64) / (n - 1)
    return f + settings.acceleration * f * (f - 1)


def add_noise(frames: np.ndarray, settings: Settings, rng: np.random.Generator) -> np.ndarray:
    """Float frames in 0..1 with sensor noise, as uint8 (the last step of every renderer)."""
    noisy = frames + rng.normal(0.0, settings.noise / 255.0, size=frames.shape)
    return np.rint(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)
