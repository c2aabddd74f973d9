"""Stored frames of one raw shard sample: how many there are, and the few a clip needs.

The default shard mode is a msgpack blob of JPEGs (``pipelines.shards.reader`` decodes only
the picked frames). The compact ``h264`` mode (``{key}.mp4``) is decoded with PyAV when it is
installed; it is not a dependency of this project, so without it such shards fail with an error
that says so instead of a ``KeyError``.

Training cuts a sample down to the frames its clip samples (:func:`pick_frames`) before the
shuffle buffer, and decodes them (:func:`decode_picked`) only when the clip is batched: the
buffer then holds ~0.2 MB of JPEG per clip (8 frames) instead of a decoded 1.2 MB clip or a
whole video's blob, and the decoded frames are still in cache when they are cropped.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import simplejpeg

from pipelines.shards import contract
from pipelines.shards.reader import frame_count, sample_meta


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


@dataclass(frozen=True)
class PickedFrames:
    """The stored data of just the frames one clip needs (see :func:`pick_frames`)."""

    unique: tuple[int, ...]  # stored frame numbers, ascending, each once
    order: tuple[int, ...]  # clip frame t is unique frame ``order[t]``
    jpegs: tuple[bytes, ...] = ()  # jpeg mode: the unique frames' JPEGs
    video: bytes | None = None  # h264 mode: the whole video (it cannot be cut)


def pick_frames(sample: dict[str, Any],
                sampler: Callable[[int], Sequence[int]]) -> PickedFrames:
    """The frames ``sampler(stored frame count)`` names, cut out of ``sample`` undecoded.

    The JPEG blob is unpacked once, for both the count and the cut.
    """
    if contract.FRAMES in sample:
        stored = msgpack.unpackb(sample[contract.FRAMES], raw=False)
        count, video = len(stored), None
    elif contract.VIDEO in sample:
        stored, count, video = None, stored_frame_count(sample), sample[contract.VIDEO]
    else:
        raise ValueError(f"sample {sample.get('__key__')!r} has no frames member")
    indices = list(sampler(count))
    if not indices:
        raise ValueError("no frames selected")
    unique = sorted(set(indices))
    if unique[0] < 0 or unique[-1] >= count:
        raise IndexError(f"frame {unique[0] if unique[0] < 0 else unique[-1]} asked of "
                         f"sample {sample.get('__key__')!r}, which stores {count}")
    position = {f: i for i, f in enumerate(unique)}
    return PickedFrames(tuple(unique), tuple(position[f] for f in indices),
                        tuple(stored[f] for f in unique) if stored is not None else (), video)


def _decode_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
    """JPEGs of one size decoded straight into one ``(N, H, W, 3)`` array (no stacking copy)."""
    height, width = simplejpeg.decode_jpeg_header(jpegs[0])[:2]
    out = np.empty((len(jpegs), height, width, 3), dtype=np.uint8)
    for i, data in enumerate(jpegs):
        if simplejpeg.decode_jpeg_header(data)[:2] != (height, width):
            raise ValueError(f"frame {i} of a clip is {simplejpeg.decode_jpeg_header(data)[:2]}"
                             f" (h, w), frame 0 {(height, width)}: one video has one frame size")
        simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out[i])
    return out


def decode_picked(picked: PickedFrames) -> np.ndarray:
    """uint8 RGB ``(T, H, W, 3)`` of a :class:`PickedFrames`, repeats decoded once."""
    if picked.video is not None:
        frames = _decode_mp4(picked.video, list(picked.unique))
    else:
        frames = _decode_jpegs(picked.jpegs)
    if picked.order == tuple(range(len(picked.unique))):
        return frames
    return frames[list(picked.order)]


def read_frames(sample: dict[str, Any], indices: Sequence[int]) -> np.ndarray:
    """uint8 RGB ``(len(indices), H, W, 3)``: the frames at ``indices`` (repeats allowed).

    A repeated index is decoded once.
    """
    return decode_picked(pick_frames(sample, lambda count: indices))


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
