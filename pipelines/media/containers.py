"""Which demuxers ffprobe/ffmpeg may use, so that reading one input reads only that one file.

ffprobe picks a demuxer from a file's *content*, not its name, and several demuxers open further
files through the ``file`` protocol: playlists (``hls``, ``dash``), concat scripts (``concat``,
``ffconcat``), image patterns (``image2`` with ``%d`` or globs), mov/mp4 data references. So a
protocol whitelist alone does not keep a downloaded "video" from making ffmpeg read other files
on the node. The media stage therefore accepts only the self-contained container demuxers of
:data:`DEMUXERS` -- they read one byte stream and never open another input -- and enforces that
on both commands:

- ffprobe runs with ``-protocol_whitelist file -format_whitelist <DEMUXERS>``: a playlist or
  script is refused by ffprobe *before* its demuxer reads anything (``unsupported_container``);
- ffmpeg decodes with ``-f <the demuxer ffprobe found>`` and the same two whitelists, so the
  decode cannot pick a different demuxer than the probe saw;
- the mov demuxer runs with ``enable_drefs 0`` (its default, made explicit): an mp4's external
  data references are never opened.

Folders of image frames (Something-Something V1) are the one input that needs a demuxer that
opens many files: ``image2`` is allowed only when the caller passes ``f=image2`` itself, for an
image pattern it built in a private folder (:mod:`pipelines.media.frames`).

The list covers the extensions the annotation readers accept: ``mov`` (.mp4 .m4v .mov .3gp and
the rest of the ISO family), ``matroska`` (.mkv .webm), ``avi``, ``flv``, ``mpeg`` (program
streams: .mpg .mpeg), ``mpegvideo`` (raw MPEG-1/2 video, also shipped as .mpg), ``mpegts`` (.ts),
``ogg`` (.ogv), ``asf`` (.wmv). A name is the first one of ffprobe's ``format_name``
(``mov,mp4,m4a,3gp,3g2,mj2`` is ``mov``; ``matroska,webm`` is ``matroska``).
"""
from __future__ import annotations

import re
from typing import Mapping

DEMUXERS: tuple[str, ...] = (
    "mov", "matroska", "avi", "flv", "mpeg", "mpegvideo", "mpegts", "ogg", "asf",
)
IMAGE_SEQUENCE = "image2"
PROTOCOLS = "file"

# Demuxer options pinned to their safe value (ffprobe ignores the ones its demuxer lacks).
_SAFE_OPTIONS: dict[str, dict[str, object]] = {"mov": {"enable_drefs": 0}}

# ffmpeg logs a refused demuxer as "[hls @ 0x55d9...] Format not on whitelist 'mov,...'".
_REFUSED = re.compile(r"\[([\w-]+) @ 0x[0-9a-fA-F]+\] Format not on whitelist")


def allowed(input_options: Mapping[str, object] | None = None) -> tuple[str, ...]:
    """Demuxers an input may use: :data:`DEMUXERS`, or only the one the caller forces with ``f``.

    A forced demuxer must be on the list, or be ``image2`` (a frame pattern the job built).
    """
    forced = (input_options or {}).get("f")
    if forced is None:
        return DEMUXERS
    name = str(forced)
    return (name,) if name in DEMUXERS or name == IMAGE_SEQUENCE else ()


def demuxer(format_name: str, input_options: Mapping[str, object] | None = None) -> str | None:
    """The demuxer to decode an input ffprobe reported as ``format_name`` with; None if refused."""
    name = format_name.split(",", 1)[0]
    return name if name and name in allowed(input_options) else None


def guard_options(names: tuple[str, ...], forced: str | None = None) -> dict[str, object]:
    """Input options (before ``-i``) that confine ffprobe/ffmpeg to ``names`` and local files."""
    options: dict[str, object] = {"f": forced} if forced else {}
    for name in names:
        options.update(_SAFE_OPTIONS.get(name, {}))
    options["protocol_whitelist"] = PROTOCOLS
    options["format_whitelist"] = ",".join(names)
    return options


def refused_demuxer(stderr: str) -> str | None:
    """The demuxer ffprobe detected but refused for not being on the whitelist, if it did."""
    if "Format not on whitelist" not in stderr:
        return None
    match = _REFUSED.search(stderr)
    return match.group(1) if match else "unknown"
