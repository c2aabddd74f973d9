"""Raw videos (a path or bytes) → the evaluation views of one video, as the shards' evaluation.

A raw video is decoded with the same media settings the training shards were made with (the
export's ``media``), packed as a shard sample, and handed to the loader's ``eval_views``: the
frames the model scores are the ones the evaluation of a preprocessed copy would score.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import shutil
import tempfile
from dataclasses import fields
from typing import Any

import msgpack
import numpy as np

from pipelines.loader.clips import ClipSettings
from pipelines.loader.views import eval_views
from pipelines.media.decode import DecodeOptions, process_video
from pipelines.shards import contract

BASE64_PREFIX = "base64:"


class VideoInputError(ValueError):
    """One input that cannot be turned into a clip (the message is the per-video error)."""


def decode_options(media: dict[str, Any]) -> DecodeOptions:
    """The export's recorded preprocessing settings (unknown keys from other versions ignored)."""
    known = {f.name for f in fields(DecodeOptions)}
    return DecodeOptions(**{k: v for k, v in (media or {}).items() if k in known})


def require_ffmpeg() -> None:
    """The packaged model decodes video with the ffmpeg/ffprobe binaries: fail early if absent."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"this model decodes video with {' and '.join(missing)}, not found on "
                           "PATH: install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)")


def _as_bytes(item: Any) -> bytes | None:
    """Raw bytes for a bytes input or a ``base64:...`` string; None for a path."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str) and item.startswith(BASE64_PREFIX):
        try:
            return base64.b64decode(item[len(BASE64_PREFIX):], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VideoInputError(f"invalid base64 video: {exc}") from None
    return None


def _decode_whole(path: str, options: DecodeOptions) -> Any:
    """The video decoded so that its stored frames span all of it.

    Preprocessing keeps at most ``max_frames`` frames and cuts the rest with a manifest warning;
    a prediction must not score only a long video's beginning, so a cut video is decoded again
    at the frame rate that fits its whole duration into ``max_frames`` (the sampler then spreads
    its segments over the whole video, as it does over a shorter one).
    """
    info, result = process_video(path, options)
    if result.ok and "cut at max_frames" in result.warning and info.duration > 0:
        fps = 0.95 * options.max_frames / info.duration
        _, result = process_video(path, dataclasses.replace(options, fps_cap=fps))
        if result.ok and "cut at max_frames" in result.warning:  # a duration that lied
            raise VideoInputError(f"{result.warning}: the video is longer than its container "
                                  "says; refusing to score only its beginning")
    if not result.ok:
        raise VideoInputError(f"{result.reason}: {result.detail}"[:500])
    return result


def clip_views(item: Any, clip: ClipSettings, options: DecodeOptions,
               protocol: str = "1x1") -> np.ndarray:
    """uint8 ``(V, T, 3, S, S)`` for one input; :class:`VideoInputError` says why not."""
    data = _as_bytes(item)
    if data is None and not isinstance(item, str):
        raise VideoInputError(f"expected a video path, bytes or 'base64:...', got "
                              f"{type(item).__name__}")
    with tempfile.TemporaryDirectory(prefix="tsi-predict-") as tmp:
        path = item
        if data is not None:
            path = os.path.join(tmp, "video")
            with open(path, "wb") as fh:
                fh.write(data)
        result = _decode_whole(path, options)
    sample: dict[str, Any] = {"__key__": "input"}
    if options.mode == "h264":
        sample[contract.VIDEO] = result.video
    else:
        sample[contract.FRAMES] = msgpack.packb(result.frames, use_bin_type=True)
    return eval_views(sample, clip, protocol)
