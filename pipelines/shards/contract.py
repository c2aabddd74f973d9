"""The shard contract in code: member names, shard names, sample keys, format version.

Writers and readers import these names instead of spelling strings, so the training side and
the preprocessing side cannot drift apart. See ``docs/architecture.md`` ("Shard contract").
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
_SPLIT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PART = re.compile(rf"{PARTS_DIR}/{SHARD_PREFIX}\d+\.parquet")


def check_split(name: object) -> str:
    """``name`` if it is a plain split name (``[A-Za-z0-9_-]``, 1-64 characters), else raise.

    A split becomes the folder ``{output}/{split}``: a separator, ``..``, an absolute path or any
    other character could make the job write or delete outside its output.
    """
    if not isinstance(name, str) or not _SPLIT.fullmatch(name):
        raise ValueError(f"split {str(name)[:80]!r} is not a plain name ([A-Za-z0-9_-], at most "
                         "64 characters)")
    return name


def is_owned_name(rel: str) -> bool:
    """Whether ``{split}/{rel}`` is a file the job writes (and so may delete on ``--overwrite``).

    Shards and their temporary files, manifest parts, the plan, manifest and stats (and the
    temporary names those are written under). Anything else in the folder is left alone.
    """
    base = rel.split(TEMP_MARKER, 1)[0]
    return (is_shard_name(base) or base in (PLAN, MANIFEST, STATS)
            or bool(_PART.fullmatch(base)))


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
