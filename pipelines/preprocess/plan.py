"""Deterministic shard plan: which video goes into which shard, fixed before any work starts.

The plan depends only on the records, the seed and the shard size, never on timing or on which
videos turn out to be broken, so a re-run (resume) recomputes the very same plan and can skip the
shards that are already complete. Records are sorted by id and then shuffled with a seeded RNG so
every shard mixes classes (a shard of one class would make a streaming trainer's batches
single-class); shard sizes differ by at most one video.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from typing import Sequence

from pipelines.data.records import VideoRecord
from pipelines.shards.contract import shard_name

# Measured bytes per stored video (docs/architecture.md, "Measured facts"; Kinetics, 256 px):
# JPEG q90 at 8 fps ~3.0 MB, H.264 all-intra at 8 fps ~0.96 MB.
BYTES_PER_VIDEO = {"jpeg": 3.0e6, "h264": 1.0e6}
TARGET_SHARD_BYTES = 768 * 2**20
# Enough shards for a training cluster's readers (e.g. 8 nodes x 8 GPUs x 4 loader workers):
# a dataset of at least MIN_SHARDS x MIN_VIDEOS_PER_SHARD videos gets at least MIN_SHARDS shards
# when the shard size is chosen automatically (the loader splits fewer shards inside, at the
# cost of readers skipping through shared tars).
MIN_SHARDS = 256
MIN_VIDEOS_PER_SHARD = 64


@dataclass(frozen=True)
class PlannedSample:
    """One record with its sample key and class index, as a shard task receives it."""

    key: str
    video_id: str
    path: str
    label: int
    label_name: str
    time_start: float | None
    time_end: float | None
    frames_dir: bool = False


@dataclass(frozen=True)
class ShardSpec:
    """One output shard: its name and the samples that go into it, in write order."""

    index: int
    name: str
    samples: tuple[PlannedSample, ...]


def default_videos_per_shard(
    mode: str, fps_cap: float | None = 8.0, target_bytes: int = TARGET_SHARD_BYTES,
    bytes_per_video: float | None = None,
) -> int:
    """Videos per shard that give ~``target_bytes`` shards at the measured bytes per video.

    JPEG size grows with the stored frame rate, so the 8 fps measurement is scaled by the cap
    (a native-rate dataset is assumed to store ~12 fps).
    """
    if bytes_per_video is None:
        bytes_per_video = BYTES_PER_VIDEO[mode] * ((fps_cap or 12.0) / 8.0)
    return max(1, int(target_bytes // bytes_per_video))


def videos_per_shard_for(videos: int, by_size: int) -> int:
    """The automatic shard size for ``videos``: ``by_size`` (from the byte target), made smaller
    so a dataset of at least ``MIN_SHARDS x MIN_VIDEOS_PER_SHARD`` videos gets ``MIN_SHARDS``."""
    if videos >= MIN_SHARDS * MIN_VIDEOS_PER_SHARD:
        return max(1, min(by_size, math.ceil(videos / MIN_SHARDS)))
    return by_size


def plan_shards(
    samples: Sequence[PlannedSample], videos_per_shard: int, seed: int
) -> list[ShardSpec]:
    """Split ``samples`` into ``ceil(n / videos_per_shard)`` shards of near-equal size."""
    if videos_per_shard < 1:
        raise ValueError("videos_per_shard must be >= 1")
    ordered = sorted(samples, key=lambda s: (s.key, s.video_id, s.path))
    random.Random(seed).shuffle(ordered)
    count = math.ceil(len(ordered) / videos_per_shard)
    shards = []
    start = 0
    for index in range(count):
        size = len(ordered) // count + (1 if index < len(ordered) % count else 0)
        chunk = tuple(ordered[start:start + size])
        start += size
        shards.append(ShardSpec(index, shard_name(index), chunk))
    return shards


def plan_fingerprint(shards: Sequence[ShardSpec], settings: dict) -> str:
    """Hash of the plan and the output-affecting settings; resume refuses a different one."""
    body = {
        "settings": settings,
        "shards": [[s.name, [asdict(p) for p in s.samples]] for s in shards],
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_sample(
    record: VideoRecord, key: str, label: int, frames_dir: bool = False
) -> PlannedSample:
    """Attach the dataset key and class index to an annotation record.

    ``frames_dir``: the record's path is a folder of image frames (SSv1), not a video file.
    """
    return PlannedSample(key, record.video_id, record.path, label, record.label,
                         record.time_start, record.time_end, frames_dir)
