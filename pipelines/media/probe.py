"""ffprobe a video under a timeout and return typed facts, or a rejection reason as a value.

ffprobe reads only the one local file: it runs with ``-protocol_whitelist file`` and a
``-format_whitelist`` of the container demuxers in :mod:`pipelines.media.containers`, so a
playlist, concat script or image pattern (whatever its name) is refused before its demuxer opens
anything else (``unsupported_container``), and :func:`~pipelines.media.decode.decode` forces the
demuxer found here. Frame counts come from ``-count_packets`` (packets actually present in the
file), not from the container header: a truncated mp4 whose index sits in front still claims
every frame it once had. Sizes are display sizes, i.e. after the rotation a phone video asks for.
"""
from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, replace
from typing import Any, Mapping

from pipelines.media import containers, reasons
from pipelines.media._proc import ToolRun, input_url, run_tool

_RUN_FAILURES = {"timeout": reasons.PROBE_TIMEOUT, "killed": reasons.PROBE_KILLED,
                 "failed": reasons.PROBE_FAILED}
# ffprobe's JSON for a real video is a few KiB; a crafted file with thousands of streams is
# cut here (and then fails to parse: ``probe_failed``).
_MAX_OUTPUT_BYTES = 8 << 20


@dataclass(frozen=True)
class ProbeResult:
    """What the media stage needs to know about one input before decoding it.

    ``width``/``height`` are display sizes (swapped for 90/270 degree rotation); ``num_frames`` is
    the counted number of video packets; ``fps`` is the average frame rate (for VFR input it is
    only an average, never use it to map frame indices to time).
    """

    ok: bool
    reason: str = ""
    detail: str = ""
    size_bytes: int = 0
    format_name: str = ""
    codec: str = ""
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    rotation: int = 0
    fps: float = 0.0
    vfr: bool = False
    duration: float = 0.0
    num_frames: int = 0
    header_frames: int = 0
    has_audio: bool = False
    bit_rate: int = 0
    stream_index: int = 0
    keep_frames: tuple[int, int] | None = None
    timestamp_warning: str = ""

    @classmethod
    def rejected(cls, reason: str, detail: str = "", size_bytes: int = 0) -> "ProbeResult":
        return cls(ok=False, reason=reason, detail=detail, size_bytes=size_bytes)


def _rate(text: str | None) -> float:
    """``"30000/1001"`` -> 29.97; ``"0/0"`` or garbage -> 0."""
    if not text:
        return 0.0
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _number(value: Any, cast=float, default=0):
    try:
        result = cast(value)
    except (TypeError, ValueError):
        return default
    if isinstance(result, float) and not math.isfinite(result):
        return default
    return result


def _rotation(stream: dict[str, Any]) -> int:
    """Rotation in degrees (0/90/180/270) from the display matrix, else the legacy tag."""
    angle = None
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            angle = _number(side["rotation"], float, None)
            break
    if angle is None:
        angle = _number((stream.get("tags") or {}).get("rotate"), float, 0.0)
    return int(round(angle / 90.0)) * 90 % 360


def _is_picture(stream: dict[str, Any]) -> bool:
    """Cover art and thumbnails are video streams that are not video."""
    disposition = stream.get("disposition") or {}
    return bool(disposition.get("attached_pic") or disposition.get("timed_thumbnails"))


def _local_precheck(path: str) -> ProbeResult | None:
    """Reject missing, empty and non-regular inputs before spending a process on them."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ProbeResult.rejected(reasons.MISSING_FILE, path)
    except OSError as exc:
        return ProbeResult.rejected(reasons.MISSING_FILE, f"{type(exc).__name__}: {exc}")
    if not stat.S_ISREG(st.st_mode):
        return ProbeResult.rejected(reasons.NOT_A_REGULAR_FILE, path)
    if st.st_size == 0:
        return ProbeResult.rejected(reasons.EMPTY_FILE, "0 bytes")
    return None


def option_args(options: Mapping[str, object] | None) -> list[str]:
    """``{"f": "image2", "framerate": 12}`` -> ``["-f", "image2", "-framerate", "12"]``."""
    args: list[str] = []
    for name, value in (options or {}).items():
        args.append(f"-{name}")
        if value is not None:
            args.append(str(value))
    return args


def probe_argv(
    path: str,
    count_packets: bool = True,
    input_options: Mapping[str, object] | None = None,
    ffprobe: str = "ffprobe",
) -> list[str]:
    """The ffprobe command line (argv list) used by :func:`probe`.

    The caller's ``input_options`` come first and the whitelists after, so they always apply.
    """
    argv = [ffprobe, "-v", "error", "-hide_banner", "-show_format", "-show_streams", "-of", "json"]
    if count_packets:
        argv.append("-count_packets")
    guard = containers.guard_options(containers.allowed(input_options))
    return argv + option_args({**(input_options or {}), **guard}) + [input_url(path)]


def parse_probe(info: dict[str, Any], size_bytes: int = 0) -> ProbeResult:
    """Turn ffprobe's JSON into a :class:`ProbeResult` (pure; tested without ffprobe)."""
    streams = info.get("streams") or []
    fmt = info.get("format") or {}
    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_picture(s)]
    # The real video is the stream with the most frames: a thumbnail or poster track that
    # comes first (one frame, not flagged as a picture) must not hide it.
    video = max(videos, key=lambda s: _number(s.get("nb_read_packets"), int, 0), default=None)
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    size_bytes = size_bytes or _number(fmt.get("size"), int, 0)
    if video is None:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["none"]
        return ProbeResult.rejected(
            reasons.NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}", size_bytes
        )
    rotation = _rotation(video)
    width = _number(video.get("width"), int, 0)
    height = _number(video.get("height"), int, 0)
    if rotation in (90, 270):
        width, height = height, width
    counted = video.get("nb_read_packets")
    header_frames = _number(video.get("nb_frames"), int, 0)
    num_frames = _number(counted, int, 0) if counted is not None else header_frames
    duration = _number(video.get("duration"), float, 0.0) or _number(
        fmt.get("duration"), float, 0.0
    )
    avg = _rate(video.get("avg_frame_rate"))
    real = _rate(video.get("r_frame_rate"))
    fps = avg or real or (num_frames / duration if duration > 0 else 0.0)
    result = ProbeResult(
        ok=True,
        size_bytes=size_bytes,
        format_name=str(fmt.get("format_name", "")),
        codec=str(video.get("codec_name", "")),
        pix_fmt=str(video.get("pix_fmt", "")),
        width=width,
        height=height,
        rotation=rotation,
        fps=fps,
        vfr=bool(avg and real and abs(avg - real) > 0.01 * real),
        duration=duration,
        num_frames=num_frames,
        header_frames=header_frames,
        has_audio=has_audio,
        bit_rate=_number(fmt.get("bit_rate"), int, 0),
        stream_index=_number(video.get("index"), int, 0),
    )
    if counted is not None and num_frames == 0:
        return replace(result, ok=False, reason=reasons.NO_VIDEO_FRAMES,
                       detail="video stream has no packets")
    if width <= 0 or height <= 0:
        return replace(result, ok=False, reason=reasons.PROBE_FAILED,
                       detail=f"video stream has no size ({width}x{height})")
    return result


def _run_rejection(run: ToolRun, timeout_s: float, size: int) -> ProbeResult | None:
    """The rejection for an ffprobe run that failed: refused demuxer, timeout, signal, error."""
    failure = run.failure("ffprobe", timeout_s)
    if failure is None:
        return None
    kind, detail = failure
    refused = containers.refused_demuxer(run.stderr[-2000:].decode("utf-8", "replace"))
    if kind == "failed" and refused:
        return ProbeResult.rejected(reasons.UNSUPPORTED_CONTAINER, _refusal(refused), size)
    return ProbeResult.rejected(_RUN_FAILURES[kind], detail, size)


def _refusal(name: str) -> str:
    return (f"the {name} demuxer is not on the container allow-list "
            f"({', '.join(containers.DEMUXERS)})")


def probe(
    path: str,
    timeout_s: float = 30.0,
    count_packets: bool = True,
    input_options: Mapping[str, object] | None = None,
) -> ProbeResult:
    """ffprobe the local file ``path``; never raises for a bad input.

    ``count_packets`` demuxes the whole file (no decoding: milliseconds for a clip) so the frame
    count is what the file really holds. ``input_options`` are demuxer options placed before the
    input (an image-sequence pattern needs ``f=image2`` and a frame rate; no file checks then);
    a forced demuxer must be ``image2`` or on the allow-list. Every name is a local path, even
    one that looks like a URL (remote videos are downloaded first).
    """
    size = 0
    if not containers.allowed(input_options):
        return ProbeResult.rejected(reasons.UNSUPPORTED_CONTAINER,
                                    _refusal(str((input_options or {}).get("f"))))
    if not input_options:
        bad = _local_precheck(path)
        if bad is not None:
            return bad
        size = os.path.getsize(path)
    run = run_tool(probe_argv(path, count_packets, input_options), timeout_s,
                   max_stdout_bytes=_MAX_OUTPUT_BYTES)
    rejected = _run_rejection(run, timeout_s, size)
    if rejected is not None:
        return rejected
    try:
        info = json.loads(run.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        return ProbeResult.rejected(reasons.PROBE_FAILED, f"unreadable ffprobe output: {exc}", size)
    result = parse_probe(info, size)
    if result.ok and containers.demuxer(result.format_name, input_options) is None:
        return replace(result, ok=False, reason=reasons.UNSUPPORTED_CONTAINER,
                       detail=_refusal(result.format_name.split(",")[0]))
    if result.ok and not input_options:  # an image sequence's timestamps are its frame numbers
        result = _check_timestamps(path, result, timeout_s)
    return result


def timestamps_argv(path: str, stream_index: int, ffprobe: str = "ffprobe") -> list[str]:
    """ffprobe printing one ``pts_time`` per packet of the probed stream (CSV, a few bytes each)."""
    guard = containers.guard_options(containers.allowed(None))
    return [ffprobe, "-v", "error", "-hide_banner", "-select_streams", str(stream_index),
            "-show_entries", "packet=pts_time", "-of", "csv=p=0",
            *option_args(guard), input_url(path)]


def _check_timestamps(path: str, info: ProbeResult, timeout_s: float) -> ProbeResult:
    """Read the probed stream's packet timestamps and note outliers (see :func:`timestamp_outliers`).

    Any trouble reading them leaves ``info`` as it was: the decode itself never pads
    (:mod:`pipelines.media.decode`), this only finds frames stamped far from all the others.
    """
    run = run_tool(timestamps_argv(path, info.stream_index), timeout_s,
                   max_stdout_bytes=_MAX_OUTPUT_BYTES)
    if run.failure("ffprobe", timeout_s) is not None or run.overflowed:
        return info
    times = []
    for line in run.stdout.decode("ascii", "replace").split():
        value = _number(line.strip().strip(","), float, None)
        if value is not None:
            times.append(value)
    keep, warning = timestamp_outliers(times)
    return replace(info, keep_frames=keep, timestamp_warning=warning)


def timestamp_outliers(times: list[float], gap_s: float = 10.0, gap_frames: float = 50.0
                       ) -> tuple[tuple[int, int] | None, str]:
    """Frames (in presentation order) to keep when some timestamps sit far from the rest.

    A gap between consecutive presentation times longer than ``gap_s`` seconds and
    ``gap_frames`` typical frame intervals splits the stream into runs; the run with the most
    frames is kept, ``(first, last)`` frame numbers, and the warning says what was dropped. A
    frame stamped at 10 h in a 2 s clip is such an outlier; a still scene that a variable-rate
    encoder stored as one long frame is not cut unless it is longer than both bounds (and even
    then it is never padded with duplicates). ``(None, "")`` when nothing is odd.
    """
    times = sorted(t for t in times if math.isfinite(t))
    if len(times) < 3:
        return None, ""
    steps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    typical = steps[len(steps) // 2] if steps else 0.0
    limit = max(gap_s, gap_frames * typical)
    runs, start = [], 0
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > limit:
            runs.append((start, i - 1))
            start = i
    runs.append((start, len(times) - 1))
    if len(runs) == 1:
        return None, ""
    first, last = max(runs, key=lambda r: r[1] - r[0])
    dropped = len(times) - (last - first + 1)
    gaps = [times[r[0]] - times[p[1]] for p, r in zip(runs, runs[1:])]
    return (first, last), (f"timestamps: dropped {dropped} of {len(times)} frames stamped "
                           f"more than {limit:g} s away from the others (largest gap "
                           f"{max(gaps):.1f} s); kept frames {first}-{last}")
