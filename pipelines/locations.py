"""Local paths and ``scheme://`` URIs for small files (annotations, class lists).

Large data (videos, shards) goes through :class:`pipelines.preprocess.storage.Storage`; this is
the one reader for the small text files that may sit either on disk or behind an fsspec URI.
"""
from __future__ import annotations

import re
from pathlib import Path

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def has_scheme(location: str) -> bool:
    """True for ``s3://…``, ``gs://…``, ``file://…``: anything fsspec should open."""
    return bool(URI.match(location))


def read_bytes(location: str | Path) -> bytes:
    """Whole file at a local path or an fsspec URI (raises ``OSError`` when unreadable)."""
    target = str(location)
    if has_scheme(target):
        import fsspec

        with fsspec.open(target, "rb") as fh:
            return fh.read()
    return Path(target).read_bytes()
