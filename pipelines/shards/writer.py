"""Stream samples one at a time into a WebDataset tar under a temporary name; rename when done.

A reader (or a resuming job) therefore never mistakes a half-written shard for a complete one:
``shard-000003.tar`` exists only after its last byte was flushed and fsynced. Memory stays at
one sample, whatever the shard size. Encoding is done here, explicitly, so no member is ever a
pickle and the byte layout does not depend on webdataset's automatic encoders.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Mapping

import msgpack
import webdataset as wds

from pipelines.shards import contract


def encode_sample(
    key: str,
    meta: Mapping[str, Any],
    label: int,
    frames: list[bytes] | None = None,
    video: bytes | None = None,
) -> dict[str, Any]:
    """The tar members of one sample as bytes: media, ``json`` and ``cls``.

    Exactly one of ``frames`` (JPEG images, stored as one msgpack list) or ``video`` (mp4 bytes).
    """
    if (frames is None) == (video is None):
        raise ValueError("give exactly one of frames or video")
    if "." in key or "/" in key or not key:
        raise ValueError(f"invalid sample key {key!r}")
    sample: dict[str, Any] = {"__key__": key}
    if frames is not None:
        sample[contract.FRAMES] = msgpack.packb(list(frames), use_bin_type=True)
    else:
        sample[contract.VIDEO] = bytes(video)  # type: ignore[arg-type]
    sample[contract.META] = json.dumps(dict(meta), ensure_ascii=False, sort_keys=True).encode()
    sample[contract.LABEL] = str(int(label)).encode("ascii")
    return sample


class ShardWriter:
    """Write one shard at ``path`` via ``path.tmp-<random>``; :meth:`commit` renames it.

    Leaving the ``with`` block without :meth:`commit` (an exception) deletes the temporary file;
    a killed process leaves it behind, and the job's resume step removes such leftovers.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp_path = f"{path}{contract.TEMP_MARKER}{uuid.uuid4().hex[:12]}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(self.temp_path, "wb")
        # mtime fixed: the same inputs give byte-identical shards.
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0)
        self.count = 0
        self.keys: list[str] = []
        self.bytes_written = 0
        self._done = False

    def write(self, sample: Mapping[str, Any]) -> int:
        """Append one encoded sample (see :func:`encode_sample`); returns its payload bytes."""
        if self._done:
            raise RuntimeError("shard already closed")
        size = self._tar.write(dict(sample))
        self.count += 1
        self.keys.append(sample["__key__"])
        self.bytes_written += size
        return size

    def commit(self) -> str:
        """Finish the tar, flush it to disk and move it to its final name."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temp_path, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (nothing at the final name is touched)."""
        if self._done:
            return
        self._done = True
        try:
            self._tar.close()
        except Exception:  # the file is being discarded anyway
            pass
        self._file.close()
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.abort()
