"""Tiny test videos, good and broken, made with ffmpeg's lavfi sources (no files on disk needed).

Every helper writes one file and returns its path. Sizes stay tiny (<= 160 px, <= 2 s) so the
whole media test set runs in seconds on a shared 2-core machine.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Sequence

# File names that break naive command lines: option-like, shell metacharacters, quotes, Unicode.
AWKWARD_NAMES = (
    "name with spaces.mp4",
    "-leading dash.mp4",
    "$(touch PWNED).mp4",
    "semi;colon && ls.mp4",
    "it's \"quoted\".mp4",
    "café 日本語.mp4",
    "back`tick`|pipe.mp4",
)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg (argv list, no shell) and fail loudly if it fails."""
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, timeout=60)


def clip(
    path: Path | str,
    *,
    size: str = "96x64",
    fps: float = 10,
    seconds: float = 1.0,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    source: str = "testsrc2",
    audio: bool = False,
    faststart: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """A good clip from a lavfi source; ``extra`` are output options (e.g. ``-g 1``)."""
    path = Path(path)
    sep = ":" if "=" in source else "="
    inputs = ["-f", "lavfi", "-i", f"{source}{sep}s={size}:r={fps}:d={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    out = ["-c:v", codec, "-pix_fmt", pix_fmt, *extra]
    if audio:
        out += ["-c:a", "aac", "-shortest"]
    if faststart:
        out += ["-movflags", "+faststart"]
    ffmpeg(*inputs, *out, "file:" + str(path.absolute()))
    return path


def zero_byte(path: Path | str) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def text_file(path: Path | str) -> Path:
    """A text file with a video extension."""
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path


def audio_only(path: Path | str, seconds: float = 1.0) -> Path:
    path = Path(path)
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}", "-c:a", "aac",
           str(path.absolute()))
    return path


def truncated(path: Path | str, keep: float = 0.5, *, index_first: bool = True,
              seconds: float = 2.0) -> Path:
    """A clip cut to ``keep`` of its bytes.

    ``index_first`` (faststart): the index survives and still claims every frame, so the file
    probes fine but holds fewer frames than its header says. Otherwise the index at the end is
    lost and the file cannot be opened at all.
    """
    path = Path(path)
    full = path.with_name(path.stem + ".full" + path.suffix)
    clip(full, size="160x120", seconds=seconds, faststart=index_first)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def rotated(path: Path | str, rotate_tag: int = 90) -> Path:
    """A landscape clip (left half white, right half black) with rotation metadata.

    Display orientation is what the container's display matrix says; tests compare against
    ffprobe's reported rotation instead of assuming a sign convention of the legacy tag.
    """
    path = Path(path)
    plain = path.with_name(path.stem + ".plain.mp4")
    clip(plain, source="color=c=black", size="96x64",
         extra=["-vf", "drawbox=x=0:y=0:w=48:h=64:color=white:t=fill"])
    ffmpeg("-i", str(plain.absolute()), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate_tag}",
           str(path.absolute()))
    plain.unlink()
    return path


def vfr(path: Path | str) -> Path:
    """Variable frame rate: 20 frames at 40 fps, then 11 at ~13 fps (avg != nominal rate)."""
    path = Path(path)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=20:d=2",
           "-vf", "setpts='if(lt(N,20),N*0.025,0.5+(N-20)*0.075)/TB'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path.absolute()))
    return path


def ten_bit(path: Path | str) -> Path:
    return clip(path, pix_fmt="yuv420p10le")


def yuv444(path: Path | str) -> Path:
    return clip(path, pix_fmt="yuv444p")


def yuv422(path: Path | str) -> Path:
    return clip(path, pix_fmt="yuv422p", size="98x64")


def odd_size(path: Path | str) -> Path:
    """99x61: odd in both directions (4:4:4 so the encoder accepts it)."""
    return clip(path, source="testsrc", size="99x61", pix_fmt="yuv444p")


def webm(path: Path | str) -> Path:
    """VP9 in WebM, as Something-Something V2 ships."""
    return clip(path, codec="libvpx-vp9", extra=["-deadline", "realtime", "-cpu-used", "8"])


def one_frame(path: Path | str) -> Path:
    return clip(path, seconds=0.1)


GOOD: dict[str, Callable[[Path], Path]] = {
    "rotated": rotated,
    "vfr": vfr,
    "tenbit": ten_bit,
    "yuv444": yuv444,
    "yuv422": yuv422,
    "oddsize": odd_size,
    "webm": webm,
}

BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "zerobyte": (zero_byte, "empty_file"),
    "text": (text_file, "probe_failed"),
    "audioonly": (audio_only, "no_video_stream"),
    "truncnoindex": (lambda p: truncated(p, 0.6, index_first=False), "probe_failed"),
    # nothing decodes: ffmpeg exits non-zero with an empty output
    "truncsevere": (lambda p: truncated(p, 0.12, index_first=True), "decode_failed"),
}


# ------------------------------------------------------------- inputs that open other files


def hls_playlist(path: Path | str, segment: Path | str) -> Path:
    """An HLS playlist (whatever ``path``'s extension) whose one segment is ``segment``."""
    path = Path(path)
    path.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                    f"#EXTINF:1.0,\n{Path(segment).absolute()}\n#EXT-X-ENDLIST\n")
    return path


def ffconcat(path: Path | str, *names: str) -> Path:
    """An ffconcat script listing ``names`` (plain names: the concat demuxer's "safe" mode)."""
    path = Path(path)
    path.write_text("ffconcat version 1.0\n" + "".join(f"file '{n}'\n" for n in names))
    return path


def fifo(path: Path | str) -> Path:
    """A named pipe: a process that opens it for reading blocks until a writer comes."""
    path = Path(path)
    os.mkfifo(path)
    return path


def jpeg_image(path: Path | str, size: str = "32x24") -> Path:
    """One JPEG image at ``path`` (written under a plain name first: ``%d`` stays literal)."""
    path = Path(path)
    plain = path.with_name("plain-image.jpg")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:d=0.1", "-frames:v", "1",
           str(plain.absolute()))
    plain.replace(path)
    return path


# extension -> (muxer, video codec, extra output options): one container per reader extension.
CONTAINERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    ".mp4": ("mp4", "libx264", ("-pix_fmt", "yuv420p")),
    ".mov": ("mov", "mpeg4", ()),
    ".m4v": ("ipod", "libx264", ("-pix_fmt", "yuv420p")),
    ".3gp": ("3gp", "mpeg4", ()),
    ".mkv": ("matroska", "mpeg4", ()),
    ".webm": ("webm", "libvpx", ("-deadline", "realtime", "-cpu-used", "8")),
    ".avi": ("avi", "mpeg4", ()),
    ".flv": ("flv", "flv1", ()),
    ".mpg": ("mpeg", "mpeg1video", ()),
    ".mpeg": ("mpeg1video", "mpeg1video", ()),  # a raw MPEG-1 elementary stream
    ".ts": ("mpegts", "mpeg2video", ()),
    ".ogv": ("ogg", "libtheora", ()),
    ".wmv": ("asf", "wmv2", ()),
}


def container_clip(path: Path | str, ext: str, seconds: float = 0.4, fps: float = 25) -> Path:
    """A small clip (10 frames) in the container :data:`CONTAINERS` names for ``ext``.

    25 fps: the MPEG-1/2 encoders accept only the standard rates.
    """
    path = Path(path)
    muxer, codec, extra = CONTAINERS[ext]
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=96x64:r={fps}:d={seconds}", "-c:v", codec, *extra,
           "-f", muxer, "file:" + str(path.absolute()))
    return path
