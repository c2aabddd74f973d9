"""Rejection reasons of the media stage: short fixed codes that the manifest groups by.

A reason is a code (``reason`` column, counted in the job summary) plus a free-text ``detail``
(stderr tail, numbers). Policy, per kind of bad input:

- missing, zero-byte, directory/FIFO/device: rejected before ffprobe runs
  (``missing_file``, ``empty_file``, ``not_a_regular_file``).
- not a media file at all (text named ``.mp4``, a truncated mp4 whose index is lost):
  ffprobe fails, ``probe_failed`` with ffprobe's message.
- audio-only / no video stream (cover art in an audio file does not count as video):
  ``no_video_stream``; a video stream without a single packet: ``no_video_frames``.
- truncated or partly corrupt video: **keep what decodes** when at least ``min_frames`` frames
  come out (the manifest row is ``ok`` with a ``warning``, e.g. decoded 12 of 30 counted frames
  or ffmpeg's error), otherwise ``too_few_frames`` (or ``decode_failed`` when ffmpeg also exited
  non-zero).
- a trim window that holds no frame (``time_start`` past the end): ``too_few_frames``.
- ffprobe/ffmpeg running past their timeout: killed, ``probe_timeout``/``decode_timeout``.
"""
from __future__ import annotations

MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
NOT_A_REGULAR_FILE = "not_a_regular_file"
PROBE_TIMEOUT = "probe_timeout"
PROBE_FAILED = "probe_failed"
NO_VIDEO_STREAM = "no_video_stream"
NO_VIDEO_FRAMES = "no_video_frames"
DECODE_TIMEOUT = "decode_timeout"
DECODE_FAILED = "decode_failed"
TOO_FEW_FRAMES = "too_few_frames"
