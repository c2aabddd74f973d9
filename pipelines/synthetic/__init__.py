"""Synthetic action dataset that only a temporal model can solve: the embedded default.

Classes come in pairs that differ only in the direction of motion (``move_left``/``move_right``,
``move_up``/``move_down``, ``recede``/``approach``, ``rotate_ccw``/``rotate_cw``,
``disappear``/``appear``). Every video of the second class of a pair is rendered; its twin in the
first class is the exact frame reversal, so both videos hold the same multiset of frames and no
per-frame statistic separates a pair (a frame-order-agnostic model is at chance within a pair).
Random value-noise/striped backgrounds, static distractor objects and a random camera pan (which
moves background and distractors, never the class) keep it from being trivial.

Families (``family=``, :mod:`pipelines.synthetic.families`): instead of the one fixed style
above, draw each video's settings (shape, size, texture, speed, acceleration, background,
clutter, camera pan and zoom, frame size and length, noise, quantiser) from a named family's
declared ranges: ``train`` to tune a recipe on, ``heldout_*`` with disjoint ranges to judge it,
one of them drawn by independent code (:mod:`pipelines.synthetic.sprites`). Same classes and
twin pairs in every family; ``default`` is the style above, byte for byte.

Written as H.264 mp4 plus a Kinetics-format CSV, so the real Kinetics reader and the whole
preprocessing job run on it unchanged: ``{output}/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4``
and ``{output}/annotations.csv`` (``label,youtube_id,time_start,time_end,split``, all splits).

Determinism: a sample depends only on (seed, split, pair, index) and the rendering settings
(frames, size, pan, distractors), never on generation order, worker count or how many videos or
pairs are generated. Same seed → byte-identical frames:
per-pixel work is NumPy arithmetic on seeded draws (no per-pixel transcendental functions; only
per-frame angles use libm ``cos``/``sin``, so another C library could move a rare pixel by one
level). Encoding is all-intra H.264 at a constant quantiser with bit-exact muxing, in fixed
batches: mp4 bytes are identical for the same config and ffmpeg/x264 build (another build may
differ in bytes, and in decoded pixels only by codec rounding), and decoded twins remain exact
frame reversals of each other.
"""
from __future__ import annotations

import argparse
import base64
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.config import ConfigError, load_config, to_dict
from pipelines.data.twins import SYNTHETIC_TWINS
from pipelines.synthetic.drawing import _background, _draw, _random_shape

PAIRS = SYNTHETIC_TWINS  # (first, second): the second is rendered, the first reversed
CSV_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")
CSV_NAME = "annotations.csv"
PAIRS_PER_BATCH = 16  # video pairs per ffmpeg process (32 clips, ~25 MB of raw frames)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. ``videos_per_class[i]`` videos of every class go to ``splits[i]``."""

    num_pairs: int = 4
    splits: tuple[str, ...] = ("train", "val")
    videos_per_class: tuple[int, ...] = (24, 8)
    num_frames: int = 16
    height: int = 128
    width: int = 128
    fps: int = 8
    seed: int = 0
    max_distractors: int = 3
    max_pan: float = 1.5  # camera pan speed bound, pixels per frame
    qp: int = 20  # x264 constant quantiser; frames are all-intra
    # "default": the settings above; else a family of pipelines.synthetic.families.FAMILIES, which
    # draws frame size, length, pan, clutter and quantiser per video (the fields above unused)
    family: str = "default"

    def __post_init__(self) -> None:
        problems = []
        if self.family != "default":
            from pipelines.synthetic.families import FAMILIES

            if self.family not in FAMILIES:
                problems.append(f"family must be default or one of {sorted(FAMILIES)}")
        if not 1 <= self.num_pairs <= len(PAIRS):
            problems.append(f"num_pairs must be 1..{len(PAIRS)}")
        if len(self.splits) != len(self.videos_per_class) or not self.splits:
            problems.append("splits and videos_per_class need the same, non-zero length")
        if len(set(self.splits)) != len(self.splits) or not all(
            s and s.replace("-", "").replace("_", "").isalnum() for s in self.splits
        ):
            problems.append("split names must be unique and [A-Za-z0-9_-]")
        if any(n < 0 for n in self.videos_per_class) or not any(self.videos_per_class):
            problems.append("videos_per_class must be >= 0 with at least one > 0")
        if self.num_frames < 2 or self.fps < 1:
            problems.append("num_frames must be >= 2 and fps >= 1")
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            problems.append("height and width must be even and >= 16 (yuv420p)")
        if min(self.max_distractors, self.max_pan, self.seed) < 0 or not 0 <= self.qp <= 51:
            problems.append("max_distractors, max_pan and seed must be >= 0, qp 0..51")
        if problems:
            raise ConfigError("SyntheticConfig: " + "; ".join(problems))


def class_names(config: SyntheticConfig) -> tuple[str, ...]:
    """Class names in index order: sorted, exactly as the class map sorts the Kinetics CSV."""
    return tuple(sorted(name for pair in PAIRS[: config.num_pairs] for name in pair))


# ------------------------------------------------------------------------------ rendering


def _sample_rng(config: SyntheticConfig, split: str, pair: int, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32(split.encode()), pair, index])


def _actor_motion(kind: int, rng: np.random.Generator, t: np.ndarray, h: int, w: int,
                  radius: float) -> tuple[np.ndarray, ...]:
    """Pose arrays (cx, cy, scale, angle, alpha) of the forward class of pair ``kind``."""
    n = len(t)
    frac = t / (n - 1)
    ones = np.ones(n)
    margin = 1.2 * radius
    angle0 = float(rng.uniform(0, 2 * math.pi))
    if kind in (0, 1):  # move_right / move_down: travel along one axis, slight drift on other
        along, across = (w, h) if kind == 0 else (h, w)
        travel = float(rng.uniform(0.35, 0.6)) * along
        start = float(rng.uniform(margin, along - margin - travel))
        pos = start + travel * frac
        other = float(rng.uniform(margin, across - margin)) + float(rng.uniform(-0.3, 0.3)) * t
        cx, cy = (pos, other) if kind == 0 else (other, pos)
        return cx, cy, ones, angle0 * ones, ones
    cx = float(rng.uniform(0.35, 0.65)) * w * ones
    cy = float(rng.uniform(0.35, 0.65)) * h * ones
    if kind == 2:  # approach: grows 2-3x
        s0 = float(rng.uniform(0.45, 0.6))
        scale = s0 + (s0 * float(rng.uniform(2.0, 3.0)) - s0) * frac
        return cx, cy, scale, angle0 * ones, ones
    if kind == 3:  # rotate_cw (y points down, so increasing angle turns clockwise on screen)
        step = math.radians(float(rng.uniform(8.0, 15.0)))
        return cx, cy, ones, angle0 + step * t, ones
    onset = float(rng.uniform(0, (n - 1) / 3))
    full = float(rng.uniform(2 * (n - 1) / 3, n - 1))
    return cx, cy, ones, angle0 * ones, np.clip((t - onset) / (full - onset), 0.0, 1.0)


def render_pair(config: SyntheticConfig, split: str, pair: int, index: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, H, W, 3)`` uint8 of one sample of ``PAIRS[pair][1]`` and of its twin.

    The twin (class ``PAIRS[pair][0]``) is the exact frame reversal of the first video, except in
    a family whose twins are made by reversed motion (its own scene; ``families`` says which).
    """
    (forward, _), (twin, _) = _render_videos(config, split, pair, index)
    return forward, twin


def _render_videos(config: SyntheticConfig, split: str, pair: int, index: int
                   ) -> tuple[tuple[np.ndarray, int], tuple[np.ndarray, int]]:
    """:func:`render_pair`'s two videos, each with the x264 quantiser it is encoded with."""
    if config.family != "default":
        return _render_family_pair(config, split, pair, index)
    forward, twin = _render_default_pair(config, split, pair, index)
    return (forward, config.qp), (twin, config.qp)


def _render_default_pair(config: SyntheticConfig, split: str, pair: int, index: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    rng = _sample_rng(config, split, pair, index)
    n, h, w = config.num_frames, config.height, config.width
    t = np.arange(n, dtype=np.float64)
    pan = rng.uniform(-config.max_pan, config.max_pan, size=2)
    margin = math.ceil(config.max_pan * (n - 1) / 2) + 1
    offsets = np.rint(pan[None, :] * (t[:, None] - (n - 1) / 2)).astype(np.int64)
    world = _background(rng, h + 2 * margin, w + 2 * margin)
    frames = np.stack([world[margin + oy: margin + oy + h, margin + ox: margin + ox + w]
                       for ox, oy in offsets])
    size = min(h, w)
    for _ in range(int(rng.integers(config.max_distractors + 1))):
        shape = _random_shape(rng, float(rng.uniform(0.05, 0.1)) * size)
        wx, wy = rng.uniform(0, w), rng.uniform(0, h)
        _draw(frames, shape, wx - offsets[:, 0], wy - offsets[:, 1], np.ones(n),
              float(rng.uniform(0, 2 * math.pi)) * np.ones(n), np.ones(n))
    actor = _random_shape(rng, float(rng.uniform(0.09, 0.14)) * size)
    _draw(frames, actor, *_actor_motion(pair, rng, t, h, w, actor.radius))
    forward = np.rint(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)
    return forward, forward[::-1].copy()


def _render_family_pair(config: SyntheticConfig, split: str, pair: int, index: int
                        ) -> tuple[tuple[np.ndarray, int], tuple[np.ndarray, int]]:
    """:func:`_render_videos` for a family: settings drawn per video, then its renderer."""
    from pipelines.synthetic import scenes, sprites
    from pipelines.synthetic.families import FAMILIES, draw_settings

    family = FAMILIES[config.family]
    rng = _sample_rng(config, split, pair, index)
    settings = draw_settings(family, rng)
    if family.renderer == "shapes":
        forward = scenes.render(settings, pair, rng)
    else:
        forward = sprites.render(settings, pair, 1, rng)
    if family.twins == "reversal":
        return (forward, settings.qp), (forward[::-1].copy(), settings.qp)
    twin_rng = np.random.default_rng([config.seed, zlib.crc32(split.encode()), pair, index, 2])
    twin = draw_settings(family, twin_rng)
    return (forward, settings.qp), (sprites.render(twin, pair, 0, twin_rng), twin.qp)


# ------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    """One generated video with its Kinetics-style annotation."""

    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str
    frames: np.ndarray
    qp: int = 20  # the x264 quantiser it is encoded with

    @property
    def file_name(self) -> str:
        return video_file_name(self.youtube_id, self.time_start, self.time_end)


def video_file_name(youtube_id: str, time_start: int, time_end: int) -> str:
    """A video's file name in its split folder, from its CSV row (the Kinetics layout)."""
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}.mp4"


def _youtube_id(config: SyntheticConfig, split: str, pair: int, index: int, side: int) -> str:
    """An 11-character URL-safe id like YouTube's (some start with ``-``, as in Kinetics)."""
    digest = hashlib.blake2b(f"{config.seed}/{split}/{pair}/{index}/{side}".encode(),
                             digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def pair_samples(config: SyntheticConfig, split: str, pair: int, index: int
                 ) -> tuple[Sample, Sample]:
    """The rendered sample and its reversed twin, with ids and Kinetics-style times."""
    forward, backward = _render_videos(config, split, pair, index)
    times = np.random.default_rng([config.seed, zlib.crc32(split.encode()), pair, index, 1])
    out = []
    for side, (frames, qp) in ((1, forward), (0, backward)):
        duration = math.ceil(len(frames) / config.fps)
        start = int(times.integers(0, 600))
        out.append(Sample(PAIRS[pair][side], _youtube_id(config, split, pair, index, side),
                          start, start + duration, split, frames, qp))
    return out[0], out[1]


def iter_samples(config: SyntheticConfig, split: str) -> Iterator[Sample]:
    """All samples of ``split`` in a fixed order: pair, index, then rendered before twin."""
    count = config.videos_per_class[config.splits.index(split)]
    for pair in range(config.num_pairs):
        for index in range(count):
            yield from pair_samples(config, split, pair, index)


def make_arrays(config: SyntheticConfig, split: str, *, channels_first: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(videos, labels)`` of a split without encoding anything (tests, learnability checks).

    ``videos`` is uint8 ``(N, T, H, W, 3)``, or ``(N, T, 3, H, W)`` (the training contract's clip
    layout) with ``channels_first``; memory is N·T·H·W·3 bytes (default train split: 151 MB).
    ``labels`` is int64 in :func:`class_names` order (the order the class map gives the CSV).
    """
    names = class_names(config)
    samples = list(iter_samples(config, split))
    shape = (0, config.num_frames, config.height, config.width, 3)
    videos = np.stack([s.frames for s in samples]) if samples else np.zeros(shape, np.uint8)
    labels = np.array([names.index(s.label) for s in samples], dtype=np.int64)
    if channels_first:
        videos = np.ascontiguousarray(videos.transpose(0, 1, 4, 2, 3))
    return videos, labels


# ------------------------------------------------------------------------------ writing


def encode_mp4s(videos: Sequence[np.ndarray], paths: Sequence[str | Path], *, fps: int,
                qp: int = 20, timeout: float | None = None) -> None:
    """Encode same-sized RGB clips ``(T, H, W, 3)`` to all-intra H.264 mp4 files.

    One ffmpeg process serves the whole batch (its segment muxer cuts a new file every T frames,
    exact because every frame is a keyframe): starting ffmpeg costs ~45 ms here, encoding a
    128² clip ~8 ms. Files appear under their final names only when the batch succeeded
    (staging folder beside the first target, then rename). Argv list, no shell; absolute paths so
    a name starting with ``-`` is never read as an option.
    """
    import ffmpeg

    if not videos or len(videos) != len(paths):
        raise ValueError("encode_mp4s needs one path per video and at least one video")
    shape = videos[0].shape
    if len(shape) != 4 or shape[3] != 3 or any(v.shape != shape for v in videos):
        raise ValueError(f"videos must share one (T, H, W, 3) shape, got {shape} and others")
    frames, height, width, _ = shape
    targets = [Path(p).absolute() for p in paths]
    staging = Path(tempfile.mkdtemp(prefix=".encode-", dir=targets[0].parent))
    limit = timeout if timeout is not None else 60.0 + 2.0 * len(videos)
    codec = dict(vcodec="libx264", pix_fmt="yuv420p", g=1, qp=qp, preset="veryfast",
                 threads=1, fflags="+bitexact", map_metadata=-1, **{"flags:v": "+bitexact"})
    if len(videos) == 1:
        output = dict(filename=str(staging / "000000.mp4"), format="mp4")
    else:  # '%' in the folder must not be read as part of the segment pattern
        output = dict(filename=str(staging).replace("%", "%%") + "/%06d.mp4", format="segment",
                      segment_format="mp4", reset_timestamps=1,
                      segment_frames=",".join(str(frames * k) for k in range(1, len(videos))))
    stream = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                     framerate=fps)
        .output(**output, **codec)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .overwrite_output()
    )
    try:
        proc = stream.run_async(pipe_stdin=True, pipe_stdout=True, pipe_stderr=True)
        try:
            _, err = proc.communicate(b"".join(np.ascontiguousarray(v).tobytes()
                                               for v in videos), timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"ffmpeg took more than {limit:.0f}s encoding {targets[0]}, "
                               "…") from None
        written = sorted(staging.iterdir())
        if proc.returncode != 0 or len(written) != len(videos):
            raise RuntimeError(f"ffmpeg failed encoding {targets[0]} (+{len(videos) - 1}): "
                               f"{err.decode(errors='replace')[-500:]}")
        for produced, target in zip(written, targets):
            os.replace(produced, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def encode_mp4(frames: np.ndarray, path: str | Path, *, fps: int, qp: int = 20) -> None:
    """Encode one RGB clip ``(T, H, W, 3)`` to an all-intra H.264 mp4 (see :func:`encode_mp4s`)."""
    encode_mp4s([frames], [path], fps=fps, qp=qp)


def _write_batch(config: SyntheticConfig, root: Path,
                 job: tuple[str, list[tuple[int, int]]]) -> list[Sample]:
    """Render and encode a batch of pairs of one split; returns the samples without frames."""
    split, items = job
    samples = [s for pair, index in items for s in pair_samples(config, split, pair, index)]
    groups: dict[tuple, list[Sample]] = {}  # one ffmpeg per frame shape and quantiser
    for s in samples:
        groups.setdefault((s.frames.shape, s.qp), []).append(s)
    for (_, qp), group in groups.items():
        encode_mp4s([s.frames for s in group], [root / split / s.file_name for s in group],
                    fps=config.fps, qp=qp)
    return [dataclasses.replace(s, frames=np.empty(0, np.uint8)) for s in samples]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_dataset(config: SyntheticConfig, output: str | Path, *, workers: int = 1) -> Path:
    """Render, encode and annotate the dataset under ``output``; returns the CSV path.

    Existing files of the same names are overwritten (same config → same bytes). ``workers``
    threads overlap rendering with ffmpeg; it does not change the output.
    """
    root = Path(output).absolute()
    for split in config.splits:
        (root / split).mkdir(parents=True, exist_ok=True)
    jobs = []  # fixed batches (never sized by ``workers``), so bytes do not depend on it
    for split, count in zip(config.splits, config.videos_per_class):
        items = [(pair, index) for pair in range(config.num_pairs) for index in range(count)]
        jobs += [(split, items[i: i + PAIRS_PER_BATCH])
                 for i in range(0, len(items), PAIRS_PER_BATCH)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        written = [s for batch in pool.map(lambda j: _write_batch(config, root, j), jobs)
                   for s in batch]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((s.label, s.youtube_id, s.time_start, s.time_end, s.split) for s in written)
    csv_path = root / CSV_NAME
    _write_text(csv_path, buffer.getvalue())
    meta = {"generator": "pipelines.synthetic", "config": to_dict(config),
            "classes": list(class_names(config)), "annotations": CSV_NAME,
            "videos": len(written)}
    _write_text(root / "synthetic.json", json.dumps(meta, indent=2) + "\n")
    return csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.synthetic",
        description="Generate the synthetic temporal-order video dataset (mp4 + Kinetics CSV).",
    )
    parser.add_argument("--output", required=True, help="dataset root to write")
    parser.add_argument("--config", help="YAML file with SyntheticConfig keys")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="encoding threads (output is identical for any value)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    try:
        config = load_config(SyntheticConfig, args.config, args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    began = time.perf_counter()
    csv_path = write_dataset(config, args.output, workers=args.workers)
    videos = 2 * config.num_pairs * sum(config.videos_per_class)
    seconds = time.perf_counter() - began
    print(f"wrote {videos} videos of {2 * config.num_pairs} classes to {csv_path.parent} in "
          f"{seconds:.1f}s ({seconds / max(videos, 1):.3f}s/video)", file=sys.stderr)
    print(csv_path)
    return 0

