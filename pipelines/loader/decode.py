"""Stored frames of one raw shard sample: how many there are, and the few a clip needs.

The default shard mode is a msgpack blob of JPEGs (``pipelines.shards.reader`` decodes only
the picked frames). The compact ``h264`` mode (``{key}.mp4``) is decoded with PyAV when it is
installed; it is not a dependency of this project, so without it such shards fail with an error
that says so instead of a ``KeyError``.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.shards import contract
from pipelines.shards.reader import decode_frames, frame_count, sample_meta


def _require_av() -> Any:
    try:
        import av  # type: ignore[import-not-found]
    except ImportError:
        raise NotImplementedError(
            "this shard stores H.264 video ('.mp4' members, the compact h264 mode); decoding it "
            "needs PyAV ('pip install av'), which is not installed. Re-run preprocessing with "
            "the default jpeg mode, or install PyAV.") from None
    return av


def stored_frame_count(sample: dict[str, Any]) -> int:
    """Frames stored for this sample (counted from the blob; mp4: the manifest's counted value)."""
    if contract.FRAMES in sample:
        return frame_count(sample[contract.FRAMES])
    if contract.VIDEO in sample:
        return int(sample_meta(sample)["num_frames"])
    raise ValueError(f"sample {sample.get('__key__')!r} has no {contract.FRAMES} or "
                     f"{contract.VIDEO} member (members: {sorted(sample)})")


def read_frames(sample: dict[str, Any], indices: Sequence[int]) -> np.ndarray:
    """uint8 RGB ``(len(indices), H, W, 3)``: the frames at ``indices`` (repeats allowed).

    A repeated index is decoded once.
    """
    unique = sorted(set(indices))
    if contract.FRAMES in sample:
        frames = decode_frames(sample[contract.FRAMES], unique)
    elif contract.VIDEO in sample:
        frames = _decode_mp4(sample[contract.VIDEO], unique)
    else:
        raise ValueError(f"sample {sample.get('__key__')!r} has no frames member")
    if len(unique) == len(indices) and list(indices) == unique:
        return frames
    position = {f: i for i, f in enumerate(unique)}
    return frames[[position[f] for f in indices]]


def _decode_mp4(data: bytes, wanted: list[int]) -> np.ndarray:
    """Decode frames in order up to the last wanted one (all-intra or short GOP: cheap)."""
    av = _require_av()
    keep = set(wanted)
    found: dict[int, np.ndarray] = {}
    decoded = 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            if decoded in keep:
                found[decoded] = frame.to_ndarray(format="rgb24")
            decoded += 1
            if decoded > wanted[-1]:
                break
    if len(found) != len(keep):
        raise ValueError(f"mp4 sample holds {decoded} frames, fewer than its counted "
                         f"num_frames (frame {wanted[-1]} wanted)")
    return np.stack([found[i] for i in wanted])
