"""Media stage: ffprobe/ffmpeg wrappers with timeouts that return errors as values.

``probe`` gives typed facts about an input (counted frames, display size, rotation); ``decode``
trims, caps the frame rate, autorotates and scales inside ffmpeg and returns JPEG frames or a
compact H.264 mp4, bounded in frames, pixels and bytes. Both read only the one local input file,
through the demuxer allow-list of :mod:`pipelines.media.containers`. The policy for bad inputs
is in :mod:`pipelines.media.reasons`.
"""
from pipelines.media.decode import DecodeOptions, DecodeResult, decode, process_video
from pipelines.media.probe import ProbeResult, probe

__all__ = ["DecodeOptions", "DecodeResult", "ProbeResult", "decode", "probe", "process_video"]
