"""Turn one probed video into what a shard stores: JPEG frames or a compact H.264 mp4.

Everything heavy happens inside one ffmpeg process (trim, frame-rate cap, autorotate, scaling to
the short side with the long side capped), so Python only ever holds the small output and a
4K/8K or 16000x16 input costs no more Python memory than a 240p one. ffmpeg reads only the one
input, with the demuxer the probe found (:mod:`pipelines.media.containers`). Its output is bounded
three ways: ``max_frames`` frames, ``max_long_side`` pixels per side, ``max_sample_mb`` bytes (the
JPEG stream is read incrementally and ffmpeg stopped at the limit). The command is built with
ffmpeg-python and run as an argv list under a timeout; failures come back as values
(``ok=False`` plus a reason code from :mod:`pipelines.media.reasons`), never as exceptions. A
decoder that exits non-zero or is killed is a rejection whatever it wrote; see that module for
the truncated-file policy.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Literal, Mapping, NamedTuple

import ffmpeg

from pipelines.media import containers, reasons
from pipelines.media._proc import ToolRun, input_url, run_tool
from pipelines.media.jpeg import JpegStreamError, jpeg_size, split_jpegs
from pipelines.media.probe import ProbeResult, probe

_RUN_FAILURES = {"timeout": reasons.DECODE_TIMEOUT, "killed": reasons.DECODER_KILLED,
                 "failed": reasons.DECODE_FAILED}


@dataclass(frozen=True)
class DecodeOptions:
    """How a video becomes stored frames; one of these per dataset config.

    ``mode`` defaults to ``jpeg`` (a msgpack list of JPEGs per video) because training reads it
    about twice as fast as the compact ``h264`` all-intra mode (docs/architecture.md, "Measured
    facts": ~5 vs ~10 ms per 8-frame clip, 102 vs 53 clips/s end to end with one loader worker)
    for ~1.6-3x the bytes (Kinetics-400: ~0.73 vs ~0.23 TB); preparing either costs the same
    (benchmarks/preprocess.py). Choose ``h264`` when storage or network, not loader CPU, is the
    bottleneck.

    ``fps_cap``: frames per second kept at most (``None`` keeps the native rate; a source slower
    than the cap is never padded with duplicates). ``short_side``: output short side in pixels
    (up- or down-scaled, even, aspect kept; 0 keeps the size). ``max_long_side``: the output's
    long side is at most this (even): a frame whose long side would exceed it is scaled down to
    fit, aspect kept, so its short side ends up below ``short_side`` and the manifest warning says
    so. It bounds every frame at ``short_side`` x ``max_long_side`` whatever the input's aspect
    ratio (1024 only touches inputs wider than 4:1 at short side 256; 16:9 gives 455).
    ``jpeg_qscale`` is ffmpeg's MJPEG ``-q:v`` (2 best .. 31): measured on noisy test content, 3
    is 0.2 dB PSNR below libjpeg quality 90 at 64% of its bytes and 2 is above it at equal bytes.
    ``h264_gop`` 1 means all-intra. ``min_frames``: fewest decoded frames a sample may have (a
    truncated file keeps what decodes when it reaches this). ``max_frames``: at most this many
    frames are stored (the rest of an unexpectedly long video is dropped with a warning).
    ``max_sample_mb``: at most this many MiB stored per sample (the JPEG stream or the mp4);
    ffmpeg is stopped there and the frames that fit are kept with a warning, like ``max_frames``
    (``sample_too_large`` if fewer than ``min_frames`` fit). With ``max_frames`` it bounds a
    task's Python memory per video (about twice this at the peak).
    ``max_decoder_memory_mb``: address-space limit (RLIMIT_AS) of each ffmpeg decode, null for
    none; past it allocations fail and the sample is rejected (``decode_failed``, or
    ``decoder_killed`` if ffmpeg crashes) instead of the node's OOM killer picking a process. It
    counts virtual memory (libraries, thread stacks), so keep it generous: Debian's ffmpeg 5.1
    needs about 300 MiB of address space before it reads a byte.
    ``threads``: ffmpeg threads, 1 so that one task per core scales.
    ``sequence_fps``: frame rate of folders of image frames (Something-Something V1: 12 fps).
    """

    mode: Literal["jpeg", "h264"] = "jpeg"
    fps_cap: float | None = 8.0
    short_side: int = 256
    max_long_side: int = 1024
    jpeg_qscale: int = 3
    h264_crf: int = 23
    h264_gop: int = 1
    h264_preset: str = "veryfast"
    h264_tune: str = "fastdecode"
    threads: int = 1
    min_frames: int = 8
    max_frames: int = 1024
    max_sample_mb: float = 256.0
    max_decoder_memory_mb: int | None = None
    probe_timeout_s: float = 30.0
    decode_timeout_s: float = 300.0
    sequence_fps: float = 12.0

    def __post_init__(self) -> None:
        if self.short_side < 0 or self.short_side % 2:
            raise ValueError(f"short_side must be 0 or positive and even, got {self.short_side}")
        if self.max_long_side < max(2, self.short_side) or self.max_long_side % 2:
            raise ValueError("max_long_side must be even, >= 2 and >= short_side, "
                             f"got {self.max_long_side}")
        if not 2 <= self.jpeg_qscale <= 31:
            raise ValueError(f"jpeg_qscale must be in 2..31, got {self.jpeg_qscale}")
        if self.fps_cap is not None and self.fps_cap <= 0:
            raise ValueError(f"fps_cap must be positive or null, got {self.fps_cap}")
        if self.min_frames < 1 or self.threads < 0 or self.h264_gop < 1:
            raise ValueError("min_frames and h264_gop must be >= 1, threads >= 0")
        if self.max_frames < self.min_frames:
            raise ValueError("max_frames must be >= min_frames")
        if self.max_sample_mb <= 0:
            raise ValueError(f"max_sample_mb must be positive, got {self.max_sample_mb}")
        if self.max_decoder_memory_mb is not None and self.max_decoder_memory_mb <= 0:
            raise ValueError("max_decoder_memory_mb must be positive or null")

    @property
    def max_sample_bytes(self) -> int:
        return int(self.max_sample_mb * (1 << 20))


@dataclass(frozen=True)
class DecodeResult:
    """Output of :func:`decode`: ``frames`` (jpeg mode) or ``video`` (h264 mode) when ``ok``."""

    ok: bool
    reason: str = ""
    detail: str = ""
    warning: str = ""
    frames: list[bytes] = field(default_factory=list)
    video: bytes = b""
    num_frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def nbytes(self) -> int:
        return len(self.video) + sum(len(f) for f in self.frames)


class FrameSize(NamedTuple):
    """Stored frame size; ``capped`` when ``max_long_side`` made it smaller than ``short_side``."""

    width: int
    height: int
    capped: bool


def _even(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest even number (half up, as ffmpeg's ``-2``), >= 2."""
    return max(2, 2 * ((num + den) // (2 * den)))


def output_size(width: int, height: int, options: DecodeOptions) -> FrameSize:
    """The stored size of a ``width`` x ``height`` display: short side, then long-side cap."""
    short, long_ = sorted((width, height))
    if options.short_side:
        short, long_ = options.short_side, _even(options.short_side * long_, short)
    capped = long_ > options.max_long_side
    if capped:
        short, long_ = _even(options.max_long_side * short, long_), options.max_long_side
    return FrameSize(long_, short, capped) if width > height else FrameSize(short, long_, capped)


def output_fps(info: ProbeResult, options: DecodeOptions) -> tuple[float, bool]:
    """The frame rate stored and whether the ``fps`` filter is needed to get it."""
    cap = options.fps_cap
    if cap is None:
        return info.fps, False
    if info.fps <= 0 or info.fps > cap * 1.001:
        return float(cap), True
    return info.fps, False


def build_command(
    path: str,
    info: ProbeResult,
    options: DecodeOptions,
    target: str,
    time_start: float | None = None,
    time_end: float | None = None,
    input_options: Mapping[str, object] | None = None,
    ffmpeg_bin: str = "ffmpeg",
) -> list[str]:
    """The ffmpeg argv for one video; ``target`` is ``pipe:1`` (jpeg) or an output file (h264).

    The input is read with the demuxer the probe found (``-f``) under the same whitelists as
    the probe; ``ValueError`` if that demuxer is not allowed (:func:`decode` checks first).
    """
    demuxer = containers.demuxer(info.format_name, input_options)
    if demuxer is None:
        raise ValueError(f"container {info.format_name!r} is not on the allow-list")
    in_kwargs: dict[str, object] = {**(input_options or {}),
                                    **containers.guard_options((demuxer,), demuxer),
                                    "threads": options.threads}
    if time_start is not None and time_start > 0:
        in_kwargs["ss"] = f"{time_start:.3f}"
    if time_end is not None:
        in_kwargs["t"] = f"{max(0.0, time_end - (time_start or 0.0)):.3f}"
    # The stream the probe chose (by its index in the file), never "the first video stream".
    stream = ffmpeg.input(input_url(path), **in_kwargs)[str(info.stream_index)]
    if info.keep_frames is not None and time_start is None and time_end is None:
        first, last = info.keep_frames  # drop frames stamped far from the others (the probe)
        stream = stream.filter("select", f"between(n,{first},{last})")
    _, need_fps = output_fps(info, options)
    if need_fps:
        # The frame-rate cap only ever drops frames: a frame is kept when it starts a new
        # 1/fps_cap tick. Unlike the ``fps`` filter it never repeats a frame to fill a gap in the
        # timestamps (a still scene, or a frame stamped hours late, would become many copies).
        rate = options.fps_cap
        stream = stream.filter(
            "select", f"isnan(prev_selected_t)+gt(floor(t*{rate}),floor(prev_selected_t*{rate}))")
    size = output_size(info.width, info.height, options)
    if options.short_side or size.capped:
        # Autorotation runs before this filter and the probe reports display sizes.
        stream = stream.filter("scale", w=size.width, h=size.height)
    common = {"threads": options.threads, "fps_mode": "passthrough", "an": None, "sn": None,
              "dn": None, "frames:v": options.max_frames}
    if options.mode == "jpeg":
        stream = stream.filter("format", "yuvj420p")
        out = ffmpeg.output(stream, target, format="image2pipe", vcodec="mjpeg",
                            **{"q:v": options.jpeg_qscale}, **common)
    else:
        out = ffmpeg.output(
            stream, target, format="mp4", vcodec="libx264", pix_fmt="yuv420p",
            preset=options.h264_preset, crf=options.h264_crf, g=options.h264_gop,
            movflags="+faststart", fs=options.max_sample_bytes,
            **({"tune": options.h264_tune} if options.h264_tune else {}), **common,
        )
    out = out.global_args("-nostdin", "-hide_banner", "-loglevel", "error",
                          "-filter_complex_threads", str(max(options.threads, 1)))
    return out.overwrite_output().compile(cmd=ffmpeg_bin)


def _expected_frames(info: ProbeResult, fps: float, trimmed: bool) -> int | None:
    """Frames a complete decode should give (None for trim windows, which vary by source)."""
    if trimmed or info.num_frames <= 0:
        return None
    if info.fps > 0 and fps < info.fps:
        return int(info.num_frames * fps / info.fps)
    return info.num_frames


@dataclass(frozen=True)
class _Output:
    """What one finished ffmpeg run left: frames or an mp4, and whether the byte cap cut it."""

    frames: list[bytes]
    video: bytes
    count: int
    width: int
    height: int
    cut: bool


def _jpeg_output(run: ToolRun) -> _Output:
    """The complete JPEGs of the MJPEG stream (a partial last one, cut by the cap, is dropped)."""
    frames, _ = split_jpegs(run.stdout)
    width, height = jpeg_size(frames[0]) if frames else (0, 0)
    return _Output(frames, b"", len(frames), width, height, run.overflowed)


def _h264_output(out_file: str, options: DecodeOptions) -> _Output:
    """The mp4 ffmpeg wrote (``-fs`` stops it near ``max_sample_mb``), counted by ffprobe."""
    if not os.path.exists(out_file):
        return _Output([], b"", 0, 0, 0, False)
    info = probe(out_file, timeout_s=options.probe_timeout_s)
    if not info.ok or not info.num_frames:
        return _Output([], b"", 0, 0, 0, False)
    with open(out_file, "rb") as fh:
        video = fh.read()
    cut = len(video) >= options.max_sample_bytes
    return _Output([], video, info.num_frames, info.width, info.height, cut)


def _warnings(info: ProbeResult, options: DecodeOptions, output: _Output, fps: float,
              trimmed: bool, run: ToolRun) -> str:
    """The manifest warning of a kept sample: truncation, caps that applied, ffmpeg's errors."""
    warnings = []
    count = output.count
    if not trimmed and info.header_frames > info.num_frames + 1:
        warnings.append(f"truncated: {info.num_frames} of the {info.header_frames} frames "
                        "the header lists are in the file")
    expected = _expected_frames(info, fps, trimmed)
    frames_cut = count >= options.max_frames and (expected is None or expected > count)
    if frames_cut:
        warnings.append(f"cut at max_frames={options.max_frames}")
    if output.cut:
        warnings.append(f"cut at max_sample_mb={options.max_sample_mb:g} after {count} frames")
    if expected is not None and count < 0.9 * expected - 1 and not (frames_cut or output.cut):
        warnings.append(f"decoded {count} of ~{expected} expected frames")
    if output_size(info.width, info.height, options).capped:
        warnings.append(f"scaled to {output.width}x{output.height} to fit "
                        f"max_long_side={options.max_long_side} (source {info.width}x"
                        f"{info.height})")
    if info.timestamp_warning and not trimmed:
        warnings.append(info.timestamp_warning)
    if run.stderr.strip():
        warnings.append(f"ffmpeg: {run.stderr_tail(200)}")
    return "; ".join(warnings)


def decode(
    path: str,
    info: ProbeResult,
    options: DecodeOptions,
    time_start: float | None = None,
    time_end: float | None = None,
    input_options: Mapping[str, object] | None = None,
) -> DecodeResult:
    """Decode ``path`` (already probed as ``info``) per ``options``; never raises for bad media.

    ``input_options``: demuxer options for the input (image sequences), as for :func:`probe`.
    A run that times out, is killed or exits non-zero is rejected, whatever it wrote.
    """
    began = time.perf_counter()
    if not info.ok:
        return DecodeResult(ok=False, reason=info.reason, detail=info.detail)
    if containers.demuxer(info.format_name, input_options) is None:
        return DecodeResult(ok=False, reason=reasons.UNSUPPORTED_CONTAINER,
                            detail=f"container {info.format_name or '?'} is not on the allow-list")
    fps, _ = output_fps(info, options)
    trimmed = time_start is not None or time_end is not None
    workdir = tempfile.mkdtemp(prefix="tsi-decode-") if options.mode == "h264" else None
    try:
        out_file = os.path.join(workdir, "out.mp4") if workdir is not None else ""
        target = "file:" + out_file if out_file else "pipe:1"
        argv = build_command(path, info, options, target, time_start, time_end, input_options)
        run = run_tool(argv, options.decode_timeout_s, capture_stdout=workdir is None,
                       max_stdout_bytes=options.max_sample_bytes,
                       memory_limit_mb=options.max_decoder_memory_mb)

        def rejected(reason: str, detail: str, count: int = 0) -> DecodeResult:
            return DecodeResult(ok=False, reason=reason, detail=detail, num_frames=count,
                                seconds=time.perf_counter() - began, peak_rss_mb=run.peak_rss_mb)

        failure = run.failure("ffmpeg", options.decode_timeout_s)
        if failure is not None:
            kind, detail = failure
            if options.max_decoder_memory_mb and kind != "timeout":
                detail += f" [max_decoder_memory_mb={options.max_decoder_memory_mb}]"
            return rejected(_RUN_FAILURES[kind], detail)
        try:
            output = _jpeg_output(run) if workdir is None else _h264_output(out_file, options)
        except JpegStreamError as exc:
            return rejected(reasons.DECODE_FAILED, f"unreadable MJPEG stream: {exc}")
        if output.count < options.min_frames:
            window = f" in [{time_start}, {time_end}]" if trimmed else ""
            detail = f"decoded {output.count} frames{window}, need {options.min_frames}"
            if output.cut:
                detail += f" within max_sample_mb={options.max_sample_mb:g}"
            if run.stderr:
                detail += f"; ffmpeg: {run.stderr_tail()}"
            reason = reasons.SAMPLE_TOO_LARGE if output.cut else reasons.TOO_FEW_FRAMES
            return rejected(reason, detail, output.count)
        return DecodeResult(
            ok=True, warning=_warnings(info, options, output, fps, trimmed, run),
            frames=output.frames, video=output.video, num_frames=output.count,
            width=output.width, height=output.height, fps=round(fps, 4),
            duration=round(output.count / fps, 4) if fps > 0 else info.duration,
            seconds=time.perf_counter() - began, peak_rss_mb=run.peak_rss_mb,
        )
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def process_video(
    path: str,
    options: DecodeOptions,
    time_start: float | None = None,
    time_end: float | None = None,
    input_options: Mapping[str, object] | None = None,
) -> tuple[ProbeResult, DecodeResult]:
    """Probe then decode: the whole media stage for one input."""
    info = probe(path, timeout_s=options.probe_timeout_s, input_options=input_options)
    return info, decode(path, info, options, time_start, time_end, input_options)
