"""Read shards back: list them, open them with plain ``webdataset``, decode frame blobs.

Training streams shards with ``webdataset.WebDataset``; these helpers keep the contract details
(member names, msgpack blob of JPEGs, uint8 RGB) in one place. Decoding takes the frame indices
it needs, so TSN sampling of 8 of 80 stored frames decodes 8 JPEGs, not 80.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import msgpack
import numpy as np
import simplejpeg
import webdataset as wds

from pipelines.io import Storage, is_uri
from pipelines.shards import contract


def list_shards(dataset: str, split: str) -> list[str]:
    """Sorted shard locations (paths or URIs) of ``{dataset}/{split}``; temp files excluded."""
    storage = Storage.open(dataset)
    names = [n for n in storage.list_files(split, recursive=False) if contract.is_shard_name(n)]
    return [storage.uri(f"{split}/{n}") for n in sorted(names)]


def _gopen_arrow(url: str, mode: str = "rb", bufsize: int = 8192) -> Any:
    """A ``webdataset.gopen`` handler that streams ``s3://``/``gs://`` objects via pyarrow."""
    if "r" not in mode:
        raise ValueError(f"{url}: object-store shards are read-only here")
    storage = Storage.open(url)
    return storage.fs.open_input_stream(storage.root)


def register_object_store_schemes(schemes: Iterable[str] = ("s3", "gs")) -> None:
    """Let ``webdataset.WebDataset`` open ``s3://``/``gs://`` shard URLs (no shell pipes)."""
    for scheme in schemes:
        wds.gopen_schemes[scheme] = _gopen_arrow


def open_shards(
    urls: str | Sequence[str],
    *,
    shardshuffle: int | bool = False,
    nodesplitter: Any = None,
    **kwargs: Any,
) -> wds.WebDataset:
    """``webdataset.WebDataset`` over shard paths/URIs yielding raw samples (bytes members).

    ``shardshuffle`` and ``nodesplitter`` are passed explicitly (webdataset 1.0 warns or raises
    otherwise); use ``wds.split_by_node`` for multi-rank training.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if any(is_uri(u) for u in url_list):
        register_object_store_schemes()
    return wds.WebDataset(url_list, shardshuffle=shardshuffle, nodesplitter=nodesplitter,
                          **kwargs)


def frame_count(blob: bytes) -> int:
    """Number of JPEG frames in a ``frames.msgpack`` blob."""
    return len(msgpack.unpackb(blob, raw=False))


def decode_frames(blob: bytes, indices: Sequence[int] | None = None) -> np.ndarray:
    """JPEG frames of a ``frames.msgpack`` blob as uint8 RGB ``(T, H, W, 3)``.

    ``indices`` picks (and may repeat) frames; ``None`` decodes all of them.
    """
    frames = msgpack.unpackb(blob, raw=False)
    if indices is None:
        indices = range(len(frames))
    images = [simplejpeg.decode_jpeg(frames[i], colorspace="RGB") for i in indices]
    if not images:
        raise ValueError("no frames selected")
    return np.stack(images)


def sample_meta(sample: dict[str, Any]) -> dict[str, Any]:
    """The ``json`` member of a raw sample as a dict."""
    value = sample[contract.META]
    return json.loads(value) if isinstance(value, (bytes, bytearray)) else dict(value)


def sample_label(sample: dict[str, Any]) -> int:
    """The ``cls`` member of a raw sample as an int."""
    value = sample[contract.LABEL]
    return int(value.decode("ascii")) if isinstance(value, (bytes, bytearray)) else int(value)
