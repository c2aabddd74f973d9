"""The shard contract in code: member names, shard names, sample keys, format version.

Writers and readers import these names instead of spelling strings, so the training side and
the preprocessing side cannot drift apart. See ``DESIGN.md`` ("Shard contract").
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable

FORMAT_VERSION = 1

FRAMES = "frames.msgpack"  # msgpack list of JPEG images
VIDEO = "mp4"  # compact mode: H.264 all-intra / short GOP
META = "json"
LABEL = "cls"
MEDIA_MEMBERS = {"jpeg": FRAMES, "h264": VIDEO}

META_FIELDS = (
    "label", "label_name", "video_id", "source", "fps", "num_frames", "width", "height",
    "duration", "dataset", "split", "format_version",
)

SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".tar"
TEMP_MARKER = ".tmp-"  # shard-000001.tar.tmp-<hex>: a shard being written
MANIFEST = "manifest.parquet"
STATS = "stats.json"
CLASSES = "classes.json"
PARTS_DIR = "_parts"  # per-shard manifest parts; a shard is complete when tar + part exist
PLAN = "plan.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEY_LENGTH = 120


def shard_name(index: int) -> str:
    """``shard-000042.tar``: zero-padded so names sort in plan order."""
    return f"{SHARD_PREFIX}{index:06d}{SHARD_SUFFIX}"


def is_shard_name(name: str) -> bool:
    return (name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)
            and name[len(SHARD_PREFIX):-len(SHARD_SUFFIX)].isdigit())


def is_temp_name(name: str) -> bool:
    """A leftover of an interrupted writer (never a finished shard)."""
    return name.startswith(SHARD_PREFIX) and TEMP_MARKER in name


def part_name(shard: str) -> str:
    """Per-shard manifest part that marks ``shard`` complete."""
    return f"{PARTS_DIR}/{shard[:-len(SHARD_SUFFIX)]}.parquet"


def sample_key(video_id: str) -> str:
    """A WebDataset-safe key for ``video_id``: stable, without dots or path separators.

    Ids made only of ``[A-Za-z0-9_-]`` (Kinetics ``youtube_id_start_end``, SSv2 numbers, most UCF
    names once the reader drops the extension) are kept verbatim. Anything else has the offending
    characters replaced and a hash of the original id appended, so two ids that differ only in
    replaced characters (``a.b`` / ``a b``) still get different keys.
    """
    safe = _UNSAFE.sub("_", video_id)
    if safe == video_id and 0 < len(safe) <= MAX_KEY_LENGTH and not safe.startswith("__"):
        return safe
    digest = hashlib.sha1(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe[:MAX_KEY_LENGTH - 11].lstrip('_') or 'id'}_{digest}"


def assign_keys(video_ids: Iterable[str]) -> dict[str, str]:
    """Keys for a dataset's ids; raises if two distinct ids would share a key."""
    keys: dict[str, str] = {}
    owner: dict[str, str] = {}
    for vid in video_ids:
        key = sample_key(vid)
        if owner.setdefault(key, vid) != vid:
            raise ValueError(f"video ids {owner[key]!r} and {vid!r} map to the same key {key!r}")
        keys[vid] = key
    return keys
