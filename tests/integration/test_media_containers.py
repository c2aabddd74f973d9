"""ffprobe/ffmpeg read only the one input: playlists, concat scripts and image patterns are refused.

The outside file a trick would make ffmpeg open is a named pipe: opening a FIFO for reading
blocks until a writer comes, so a probe that returns at once with a reason never opened it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.media import containers, reasons
from pipelines.media._proc import run_tool
from pipelines.media.decode import DecodeOptions, build_command, decode, process_video
from pipelines.media.frames import link_sequence
from pipelines.media.probe import probe, probe_argv
import videos as V

pytestmark = pytest.mark.timeout(120)

SMALL = DecodeOptions(fps_cap=None, short_side=64, min_frames=4, probe_timeout_s=20,
                      decode_timeout_s=60)
UNGUARDED = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json"]


def _reader_opens(fifo: Path, within_s: float) -> bool:
    """True if some process opens ``fifo`` for reading within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads
        except OSError:
            time.sleep(0.01)
            continue
        os.close(fd)
        return True
    return False


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """A videos root and a folder outside it."""
    root, outside = tmp_path / "videos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    return root, outside


def test_hls_playlist_named_mp4_never_opens_its_segment(layout):
    root, outside = layout
    segment = V.fifo(outside / "secret.ts")
    evil = V.hls_playlist(root / "evil.mp4", segment)
    # control: unguarded, ffprobe follows the playlist and opens the outside file
    proc = subprocess.Popen([*UNGUARDED, str(evil)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert _reader_opens(segment, 10.0)
    finally:
        proc.kill()
        proc.wait()
    began = time.monotonic()
    info, result = process_video(str(evil), SMALL)
    assert time.monotonic() - began < 5  # opening the FIFO would have hung until the timeout
    assert info.reason == result.reason == reasons.UNSUPPORTED_CONTAINER
    assert "hls demuxer" in info.detail
    assert not _reader_opens(segment, 0.05)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_probe_command_opens_no_other_file(layout, tmp_path):
    root, outside = layout
    segment = V.clip(outside / "secret.ts", extra=["-f", "mpegts"])
    evil = V.hls_playlist(root / "evil.mp4", segment)
    log = tmp_path / "strace.log"
    run = run_tool(["strace", "-f", "-e", "trace=open,openat", "-o", str(log),
                    *probe_argv(str(evil))], 30)
    assert run.returncode != 0 and b"Format not on whitelist" in run.stderr
    opened = log.read_text()
    assert str(evil) in opened and str(segment) not in opened


def test_ffconcat_script_named_mp4_is_refused(layout):
    root, _ = layout
    V.clip(root / "inner.mp4")
    evil = V.ffconcat(root / "evil.mp4", "inner.mp4")
    unguarded = run_tool([*UNGUARDED, str(evil)], 20)
    assert b'"format_name": "concat"' in unguarded.stdout  # the trick works without the guard
    info, result = process_video(str(evil), SMALL)
    assert result.reason == reasons.UNSUPPORTED_CONTAINER and "concat demuxer" in info.detail


def test_image_pattern_names_are_refused_or_read_literally(layout):
    root, _ = layout
    image = V.jpeg_image(root / "image.jpg").read_bytes()
    for name in ("frame000.jpg", "frame001.jpg", "frame%03d.jpg", "x%03d.mp4"):
        (root / name).write_bytes(image)
    # image2 would read frame000.jpg, frame001.jpg...; a JPEG named like a video is no video
    for name in ("frame%03d.jpg", "x%03d.mp4"):
        assert probe(str(root / name)).reason == reasons.UNSUPPORTED_CONTAINER, name
    real = V.clip(root / "v%03d.mp4")  # a real video with a pattern-like name: just a name
    info, result = process_video(str(real), SMALL)
    assert info.ok and result.ok and result.num_frames == 10


def test_forced_demuxer_must_be_allowed(layout):
    root, _ = layout
    path = V.clip(root / "ok.mp4")
    refused = probe(str(path), input_options={"f": "hls"})
    assert refused.reason == reasons.UNSUPPORTED_CONTAINER
    info = probe(str(path))
    spoofed = decode(str(path), replace(info, format_name="concat"), SMALL)
    assert spoofed.reason == reasons.UNSUPPORTED_CONTAINER


def test_frame_folder_still_decodes_through_image2(layout, tmp_path):
    root, _ = layout
    image = V.jpeg_image(root / "img_0.jpg", "64x48").read_bytes()
    files = [str(root / f"img_{i}.jpg") for i in range(6)]
    for name in files[1:]:
        Path(name).write_bytes(image)
    pattern, options = link_sequence(files, str(tmp_path / "seq"))
    options = {**options, "framerate": 12}
    info, result = process_video(pattern, SMALL, input_options=options)
    assert info.ok and info.format_name == "image2"
    assert result.ok and result.num_frames == 6 and result.fps == 12


def test_commands_carry_the_whitelists(layout):
    root, _ = layout
    path = V.clip(root / "a.mp4")
    argv = probe_argv(str(path))
    joined = " ".join(argv)
    assert f"-protocol_whitelist file -format_whitelist {','.join(containers.DEMUXERS)}" in joined
    assert "-enable_drefs 0" in joined  # mp4 external data references stay off
    info = probe(str(path))
    cmd = build_command(str(path), info, SMALL, "pipe:1")
    before_input = " ".join(cmd[: cmd.index("-i")])
    for part in ("-f mov", "-format_whitelist mov", "-protocol_whitelist file",
                 "-enable_drefs 0"):
        assert part in before_input
    mkv = V.clip(root / "b.mkv", codec="mpeg4")
    cmd = build_command(str(mkv), probe(str(mkv)), SMALL, "pipe:1")
    assert "-f matroska" in " ".join(cmd) and "enable_drefs" not in cmd


def test_allow_list_covers_every_reader_extension(tmp_path):
    def make_and_decode(ext: str):
        return process_video(str(V.container_clip(tmp_path / f"c{ext}", ext)), SMALL)

    with ThreadPoolExecutor(4) as pool:  # process start-up dominates: overlap it
        done = dict(zip(V.CONTAINERS, pool.map(make_and_decode, V.CONTAINERS)))
    for ext, (info, result) in done.items():
        assert containers.demuxer(info.format_name) in containers.DEMUXERS, (ext, info)
        assert result.ok and result.num_frames == 10, (ext, result.detail)
