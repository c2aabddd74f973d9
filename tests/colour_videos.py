"""A dataset any model learns in a few steps: the class is the colour of a noisy clip.

For the operations tests, which need models of clearly different skill on held-out videos
(the synthetic temporal dataset takes minutes of training to learn). Real H.264 files made by
ffmpeg's lavfi ``color`` source with per-video hue jitter and temporal noise, in the Kinetics
layout (``{split}/{id}_{start:06d}_{end:06d}.mp4`` + an annotations CSV).
"""
from __future__ import annotations

import csv
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200),
           "yellow": (210, 200, 40)}


def _encode(path: Path, rgb: tuple[int, int, int], size: int, seconds: int) -> None:
    colour = "0x{:02x}{:02x}{:02x}".format(*rgb)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c={colour}:s={size}x{size}:d={seconds}:r=8", "-vf",
                    "noise=alls=30:allf=t", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    f"file:{path}"], check=True)


def write_colour_dataset(root: Path, per_class: dict[str, int], *, size: int = 32,
                         seconds: int = 2, seed: int = 0) -> Path:
    """Videos under ``root`` and ``root/annotations.csv``; returns the CSV path."""
    rng = random.Random(seed)
    rows, jobs = [], []
    for split, count in per_class.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for label, base in COLOURS.items():
            for i in range(count):
                vid = f"{label[:3]}{split[:2]}{i:03d}{rng.randrange(10**6):06d}"
                rgb = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in base)
                jobs.append((root / split / f"{vid}_000000_{seconds:06d}.mp4", rgb))
                rows.append((label, vid, 0, seconds, split))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda job: _encode(job[0], job[1], size, seconds), jobs))
    path = root / "annotations.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("label", "youtube_id", "time_start", "time_end", "split"))
        writer.writerows(rows)
    return path
