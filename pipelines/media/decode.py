"""Turn one probed video into what a shard stores: JPEG frames or a compact H.264 mp4.

Everything heavy happens inside one ffmpeg process (trim, frame-rate cap, autorotate, scaling to
the short side), so Python only ever holds the small output and a 4K/8K input costs no more
Python memory than a 240p one. The command is built with ffmpeg-python and run as an argv list
under a timeout; failures come back as values (``ok=False`` plus a reason code from
:mod:`pipelines.media.reasons`), never as exceptions. See that module for the truncated-file policy.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Literal, Mapping

import ffmpeg

from pipelines.media import reasons
from pipelines.media._proc import input_url, run_tool
from pipelines.media.jpeg import JpegStreamError, jpeg_size, split_jpegs
from pipelines.media.probe import ProbeResult, probe


@dataclass(frozen=True)
class DecodeOptions:
    """How a video becomes stored frames; one of these per dataset config.

    ``mode`` defaults to ``jpeg`` (a msgpack list of JPEGs per video) because training reads it
    about twice as fast as the compact ``h264`` all-intra mode (NOTES-ENV: ~5 vs ~10 ms per
    8-frame clip, 102 vs 53 clips/s end to end with one loader worker) for ~1.6-3x the bytes
    (Kinetics-400: ~0.73 vs ~0.23 TB); preparing either costs the same (benchmarks/preprocess.py).
    Choose ``h264`` when storage or network, not loader CPU, is the bottleneck.

    ``fps_cap``: frames per second kept at most (``None`` keeps the native rate; a source slower
    than the cap is never padded with duplicates). ``short_side``: exact output short side in
    pixels (up- or down-scaled, even, aspect kept; 0 keeps the size). ``jpeg_qscale`` is ffmpeg's
    MJPEG ``-q:v`` (2 best .. 31): measured on noisy test content, 3 is 0.2 dB PSNR below libjpeg
    quality 90 at 64% of its bytes and 2 is above it at equal bytes. ``h264_gop`` 1 means
    all-intra. ``min_frames``: fewest decoded frames a sample may have (a truncated file keeps
    what decodes when it reaches this). ``max_frames``: at most this many frames are stored (the
    rest of an unexpectedly long video is dropped with a warning), which bounds a task's memory
    per video. ``threads``: ffmpeg threads, 1 so that one task per core scales.
    ``sequence_fps``: frame rate of folders of image frames (Something-Something V1: 12 fps).
    """

    mode: Literal["jpeg", "h264"] = "jpeg"
    fps_cap: float | None = 8.0
    short_side: int = 256
    jpeg_qscale: int = 3
    h264_crf: int = 23
    h264_gop: int = 1
    h264_preset: str = "veryfast"
    h264_tune: str = "fastdecode"
    threads: int = 1
    min_frames: int = 8
    max_frames: int = 1024
    probe_timeout_s: float = 30.0
    decode_timeout_s: float = 300.0
    sequence_fps: float = 12.0

    def __post_init__(self) -> None:
        if self.short_side < 0 or self.short_side % 2:
            raise ValueError(f"short_side must be 0 or positive and even, got {self.short_side}")
        if not 2 <= self.jpeg_qscale <= 31:
            raise ValueError(f"jpeg_qscale must be in 2..31, got {self.jpeg_qscale}")
        if self.fps_cap is not None and self.fps_cap <= 0:
            raise ValueError(f"fps_cap must be positive or null, got {self.fps_cap}")
        if self.min_frames < 1 or self.threads < 0 or self.h264_gop < 1:
            raise ValueError("min_frames and h264_gop must be >= 1, threads >= 0")
        if self.max_frames < self.min_frames:
            raise ValueError("max_frames must be >= min_frames")


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
    """The ffmpeg argv for one video; ``target`` is ``pipe:1`` (jpeg) or an output file (h264)."""
    in_kwargs: dict[str, object] = {**(input_options or {}), "threads": options.threads}
    if time_start is not None and time_start > 0:
        in_kwargs["ss"] = f"{time_start:.3f}"
    if time_end is not None:
        in_kwargs["t"] = f"{max(0.0, time_end - (time_start or 0.0)):.3f}"
    # V (capital): the first video stream that is not cover art, as chosen by the probe.
    stream = ffmpeg.input(input_url(path), **in_kwargs)["V:0"]
    _, need_fps = output_fps(info, options)
    if need_fps:
        stream = stream.filter("fps", fps=options.fps_cap)
    if options.short_side:
        s = options.short_side
        # Autorotation runs before this filter, so iw/ih are display sizes.
        stream = stream.filter("scale", w=f"if(lte(iw,ih),{s},-2)", h=f"if(lte(iw,ih),-2,{s})")
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
            movflags="+faststart", **({"tune": options.h264_tune} if options.h264_tune else {}),
            **common,
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


def _judge(frames: int, options: DecodeOptions, run_failed: bool) -> tuple[bool, str]:
    """Apply the keep-what-decodes policy: ok when at least ``min_frames`` came out."""
    if frames >= options.min_frames:
        return True, ""
    if run_failed:
        return False, reasons.DECODE_FAILED
    return False, reasons.TOO_FEW_FRAMES


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
    """
    began = time.perf_counter()
    if not info.ok:
        return DecodeResult(ok=False, reason=info.reason, detail=info.detail)
    fps, _ = output_fps(info, options)
    trimmed = time_start is not None or time_end is not None
    workdir = tempfile.mkdtemp(prefix="tsi-decode-") if options.mode == "h264" else None
    try:
        out_file = os.path.join(workdir, "out.mp4") if workdir is not None else ""
        target = "file:" + out_file if out_file else "pipe:1"
        argv = build_command(path, info, options, target, time_start, time_end, input_options)
        run = run_tool(argv, options.decode_timeout_s, capture_stdout=workdir is None)
        if run.timed_out:
            return DecodeResult(ok=False, reason=reasons.DECODE_TIMEOUT,
                                detail=f"ffmpeg ran past {options.decode_timeout_s:g} s",
                                seconds=time.perf_counter() - began, peak_rss_mb=run.peak_rss_mb)
        frames: list[bytes] = []
        video = b""
        width = height = 0
        if workdir is None:
            try:
                frames, tail = split_jpegs(run.stdout)
            except JpegStreamError as exc:
                return DecodeResult(ok=False, reason=reasons.DECODE_FAILED,
                                    detail=f"unreadable MJPEG stream: {exc}")
            if frames:
                width, height = jpeg_size(frames[0])
            count = len(frames)
        else:
            out_info = probe(out_file, timeout_s=options.probe_timeout_s) if os.path.exists(
                out_file) else ProbeResult.rejected(reasons.DECODE_FAILED, "no output written")
            count = out_info.num_frames if out_info.ok else 0
            width, height = out_info.width, out_info.height
            if count:
                with open(out_file, "rb") as fh:
                    video = fh.read()
        failed = run.returncode != 0
        ok, reason = _judge(count, options, failed)
        seconds = time.perf_counter() - began
        if not ok:
            window = f" in [{time_start}, {time_end}]" if trimmed else ""
            detail = f"decoded {count} frames{window}, need {options.min_frames}"
            if run.stderr:
                detail += f"; ffmpeg: {run.stderr_tail()}"
            return DecodeResult(ok=False, reason=reason, detail=detail, num_frames=count,
                                seconds=seconds, peak_rss_mb=run.peak_rss_mb)
        warnings = []
        if not trimmed and info.header_frames > info.num_frames + 1:
            warnings.append(f"truncated: {info.num_frames} of the {info.header_frames} frames "
                            "the header lists are in the file")
        expected = _expected_frames(info, fps, trimmed)
        if expected is not None and count < 0.9 * expected - 1:
            warnings.append(f"decoded {count} of ~{expected} expected frames")
        if count >= options.max_frames and (expected is None or expected > count):
            warnings.append(f"cut at max_frames={options.max_frames}")
        if failed:
            warnings.append(f"ffmpeg exited {run.returncode}")
        if run.stderr.strip():
            warnings.append(f"ffmpeg: {run.stderr_tail(200)}")
        return DecodeResult(
            ok=True, warning="; ".join(warnings), frames=frames, video=video, num_frames=count,
            width=width, height=height, fps=round(fps, 4),
            duration=round(count / fps, 4) if fps > 0 else info.duration, seconds=seconds,
            peak_rss_mb=run.peak_rss_mb,
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
