"""Check a split's shards on the driver, before any worker starts: a job that cannot read its
shards says so in one line (naming the shard or the missing decoder), not minutes later in a
Ray worker's traceback.

Per shard: its size (not empty, whole 512-byte tar blocks, room for the end-of-archive marker),
its tar index (every member header parses and its data lies inside the file; the archive ends
with the two zero blocks a finished writer appends, so a truncated copy is caught), and its
members (each a known member of the shard contract, with a media member the loader can decode).
Then the decoder for the media the shards hold must import (``h264`` needs PyAV). A local shard
is walked header by header (seeks, not reads); an object-store shard is checked by its size,
first header and last blocks (three small reads), so checking 1,000 remote shards costs seconds.
"""
from __future__ import annotations

import importlib
import tarfile

from pipelines.io import Storage
from pipelines.shards import contract
from pipelines.shards.reader import list_shards

BLOCK = tarfile.BLOCKSIZE  # 512
KNOWN_MEMBERS = (contract.FRAMES, contract.VIDEO, contract.META, contract.LABEL)
# media member -> (module the loader decodes it with, what to tell a user who lacks it)
DECODERS = {contract.FRAMES: ("simplejpeg", "simplejpeg (JPEG frames, media.mode=jpeg)"),
            contract.VIDEO: ("av", "PyAV, 'pip install av' (H.264 '.mp4' members, media.mode=h264)")}


class ShardProblem(ValueError):
    """A shard that cannot be read, or a shard format whose decoder is missing (one line)."""


def check_shards(root: str, *splits: str) -> None:
    """Raise :class:`ShardProblem` unless every shard of ``root``'s ``splits`` is readable."""
    storage = Storage.open(root)
    media: set[str] = set()
    for split in splits:
        for url in list_shards(root, split):
            media |= _check_one(storage, f"{split}/{url.rsplit('/', 1)[-1]}", url)
    for member in sorted(media):
        module, what = DECODERS[member]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ShardProblem(f"{root}: the shards store {member!r} members, whose decoder does "
                               f"not import here: install {what} ({exc})") from None


def _check_one(storage: Storage, rel: str, url: str) -> set[str]:
    """The media members of one shard; raises :class:`ShardProblem` naming it."""
    try:
        size = storage.size(rel)
    except OSError as exc:
        raise ShardProblem(f"shard {url} cannot be read: {exc}") from None
    if size == 0:
        raise ShardProblem(f"shard {url} is empty (0 bytes): re-run jobs.preprocess for it")
    if size % BLOCK or size < 3 * BLOCK:
        raise ShardProblem(f"shard {url} is truncated or not a tar ({size} bytes is not whole "
                           f"{BLOCK}-byte tar blocks): re-run jobs.preprocess for it")
    try:
        if storage.is_local:
            names = _walk_local(storage.path(rel), size)
        else:
            names = _head_and_tail(storage, rel, size)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ShardProblem(f"shard {url} is unreadable ({exc}): re-run jobs.preprocess for "
                           "it") from None
    members = {_member(name) for name in names}
    unknown = sorted(m for m in members if m not in KNOWN_MEMBERS)
    if unknown:
        raise ShardProblem(f"shard {url} holds member types {unknown} this platform does not "
                           f"read (known: {list(KNOWN_MEMBERS)})")
    return members & set(DECODERS)


def _member(name: str) -> str:
    """``abc.frames.msgpack`` -> ``frames.msgpack`` (the key ends at the first dot)."""
    return name.split("/")[-1].partition(".")[2]


def _walk_local(path: str, size: int) -> list[str]:
    with open(path, "rb") as fh:
        fh.seek(size - 2 * BLOCK)
        if fh.read(2 * BLOCK).strip(b"\0"):
            raise ValueError("no end-of-archive marker: the file was cut short")
        fh.seek(0)
        with tarfile.open(fileobj=fh, mode="r:") as tar:
            names = []
            for info in tar:
                if info.offset_data + info.size > size:
                    raise ValueError(f"member {info.name!r} ends past the end of the file")
                names.append(info.name)
    if not names:
        raise ValueError("no members")
    return names


def _head_and_tail(storage: Storage, rel: str, size: int) -> list[str]:
    with storage.fs.open_input_file(storage.path(rel)) as fh:
        head = fh.read_at(BLOCK, 0)
        tail = fh.read_at(2 * BLOCK, size - 2 * BLOCK)
    if tail.strip(b"\0"):
        raise ValueError("no end-of-archive marker: the object was cut short")
    info = tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
    if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):  # a pax header: the name comes after it
        return []
    return [info.name]

