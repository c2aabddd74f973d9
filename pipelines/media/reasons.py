"""Rejection reasons of the media stage: short fixed codes that the manifest groups by.

A reason is a code (``reason`` column, counted in the job summary) plus a free-text ``detail``
(stderr tail, numbers). Policy, per kind of bad input:

- missing, zero-byte, directory/FIFO/device: rejected before ffprobe runs
  (``missing_file``, ``empty_file``, ``not_a_regular_file``).
- a container whose demuxer is not on the allow-list of :mod:`pipelines.media.containers`
  (an HLS/DASH playlist, a concat script, an image pattern, ... whatever its name says): refused
  by ffprobe before the demuxer reads anything else, ``unsupported_container``.
- not a media file at all (text named ``.mp4``, a truncated mp4 whose index is lost):
  ffprobe fails, ``probe_failed`` with ffprobe's message.
- audio-only / no video stream (cover art in an audio file does not count as video):
  ``no_video_stream``; a video stream without a single packet: ``no_video_frames``.
- truncated or partly corrupt video that ffmpeg gets through (exit status 0, errors printed):
  **keep what decodes** when at least ``min_frames`` frames come out (the manifest row is ``ok``
  with a ``warning``, e.g. decoded 12 of 30 counted frames, or ffmpeg's error), otherwise
  ``too_few_frames``.
- ffmpeg exiting non-zero: ``decode_failed`` (with its stderr), however many frames came out;
  killed by a signal (the OOM killer's SIGKILL, a crash): ``decoder_killed``; ffprobe killed:
  ``probe_killed``. Frames from a decoder that did not finish are never stored.
- a trim window that holds no frame (``time_start`` past the end): ``too_few_frames``.
- output over ``max_sample_mb`` with fewer than ``min_frames`` frames inside the limit:
  ``sample_too_large`` (with enough frames it is ``ok``, cut, with a warning, like ``max_frames``).
- ffprobe/ffmpeg running past their timeout: killed, ``probe_timeout``/``decode_timeout``.

:data:`TRANSIENT_REASONS` are outcomes of the run rather than of the input (timeouts on a busy
node, a decoder the OOM killer picked): a re-run should retry them.
"""
from __future__ import annotations

MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
NOT_A_REGULAR_FILE = "not_a_regular_file"
UNSUPPORTED_CONTAINER = "unsupported_container"
PROBE_TIMEOUT = "probe_timeout"
PROBE_KILLED = "probe_killed"
PROBE_FAILED = "probe_failed"
NO_VIDEO_STREAM = "no_video_stream"
NO_VIDEO_FRAMES = "no_video_frames"
DECODE_TIMEOUT = "decode_timeout"
DECODER_KILLED = "decoder_killed"
DECODE_FAILED = "decode_failed"
TOO_FEW_FRAMES = "too_few_frames"
SAMPLE_TOO_LARGE = "sample_too_large"

# Every media reason code, in the order the reason table of docs/preprocessing.md lists them.
REASONS: tuple[str, ...] = (
    MISSING_FILE, EMPTY_FILE, NOT_A_REGULAR_FILE, UNSUPPORTED_CONTAINER, PROBE_TIMEOUT,
    PROBE_KILLED, PROBE_FAILED, NO_VIDEO_STREAM, NO_VIDEO_FRAMES, DECODE_TIMEOUT, DECODER_KILLED,
    DECODE_FAILED, TOO_FEW_FRAMES, SAMPLE_TOO_LARGE,
)

# Outcomes a re-run should retry: the input may be fine, this attempt was cut short.
TRANSIENT_REASONS: tuple[str, ...] = (PROBE_TIMEOUT, PROBE_KILLED, DECODE_TIMEOUT, DECODER_KILLED)
