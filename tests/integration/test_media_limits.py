"""Bounds of the media stage: killed and failing decoders, frame-size and byte caps, run_tool.

The signal cases run the real ffmpeg/ffprobe on a named pipe (they block opening it) and
SIGKILL them from a thread, as the OOM killer would.
"""
from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import simplejpeg

from pipelines.media import reasons
from pipelines.media._proc import STDERR_KEEP, run_tool
from pipelines.media.decode import DecodeOptions, decode, output_size, process_video
from pipelines.media.probe import probe
import videos as V

# the module, not the function pipelines.media re-exports under the same name
decode_module = importlib.import_module("pipelines.media.decode")

pytestmark = pytest.mark.timeout(120)

SMALL = DecodeOptions(fps_cap=None, short_side=64, min_frames=4, probe_timeout_s=20,
                      decode_timeout_s=30)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A plain 10-frame clip."""
    return V.clip(tmp_path_factory.mktemp("limits") / "ok.mp4")


def _kill_when_running(name: str, marker: str) -> threading.Thread:
    """A started thread that SIGKILLs the child ``name`` whose argv mentions ``marker``."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for child in psutil.Process().children(recursive=True):
                try:
                    if child.name() == name and any(marker in a for a in child.cmdline()):
                        child.send_signal(signal.SIGKILL)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_decoder_killed_by_a_signal_is_rejected_and_transient(tmp_path):
    info = probe(str(V.clip(tmp_path / "src.ts", extra=["-f", "mpegts"])))
    pipe = V.fifo(tmp_path / "blocked.ts")  # the real ffmpeg blocks opening it: kill it there
    killer = _kill_when_running("ffmpeg", str(pipe))
    result = decode(str(pipe), info, SMALL)
    killer.join()
    assert result.reason == reasons.DECODER_KILLED and "SIGKILL" in result.detail
    assert result.seconds < SMALL.decode_timeout_s / 2
    assert reasons.DECODER_KILLED in reasons.TRANSIENT_REASONS


def test_probe_killed_by_a_signal_is_rejected_and_transient(tmp_path):
    pipe = V.fifo(tmp_path / "blocked.ts")
    killer = _kill_when_running("ffprobe", str(pipe))
    info = probe(str(pipe), timeout_s=30, input_options={"f": "mpegts"})
    killer.join()
    assert info.reason == reasons.PROBE_KILLED and "SIGKILL" in info.detail
    assert reasons.PROBE_KILLED in reasons.TRANSIENT_REASONS


@pytest.mark.parametrize(("returncode", "reason", "detail"), [
    (1, reasons.DECODE_FAILED, "ffmpeg exited 1: boom"),
    (-9, reasons.DECODER_KILLED, "ffmpeg killed by SIGKILL: boom"),
])
def test_failed_run_is_rejected_even_with_enough_frames(good, monkeypatch, returncode, reason,
                                                         detail):
    path = good
    info = probe(str(path))
    assert decode(str(path), info, SMALL).num_frames == 10 >= SMALL.min_frames

    def failing_run_tool(*args, **kwargs):  # the real ffmpeg run, with its status replaced
        return replace(run_tool(*args, **kwargs), returncode=returncode, stderr=b"boom")

    monkeypatch.setattr(decode_module, "run_tool", failing_run_tool)
    result = decode(str(path), info, SMALL)
    assert (result.ok, result.reason, result.detail, result.frames) == (False, reason, detail, [])


def test_decoder_memory_limit_rejects(good):
    path = good
    limited = replace(SMALL, max_decoder_memory_mb=64)  # ffmpeg cannot even map its libraries
    result = decode(str(path), probe(str(path)), limited)
    assert result.reason in (reasons.DECODE_FAILED, reasons.DECODER_KILLED)
    assert "max_decoder_memory_mb=64" in result.detail
    assert decode(str(path), probe(str(path)), replace(SMALL, max_decoder_memory_mb=2048)).ok


def test_reason_lists():
    assert len(set(reasons.REASONS)) == len(reasons.REASONS)
    assert set(reasons.TRANSIENT_REASONS) == {"probe_timeout", "probe_killed", "decode_timeout",
                                              "decoder_killed"}
    assert all(r.isidentifier() and r == r.lower() for r in reasons.REASONS)


# ------------------------------------------------------------------------ size bombs


@pytest.mark.parametrize(("width", "height", "options", "expected"), [
    (1920, 1080, DecodeOptions(short_side=64), (114, 64, False)),  # as ffmpeg's -2
    (1920, 1080, DecodeOptions(), (456, 256, False)),
    (1080, 1920, DecodeOptions(), (256, 456, False)),
    (99, 61, DecodeOptions(short_side=64), (104, 64, False)),
    (16000, 16, DecodeOptions(), (1024, 2, True)),
    (256, 65000, DecodeOptions(), (4, 1024, True)),
    (1000, 100, DecodeOptions(short_side=64, max_long_side=256), (256, 26, True)),
    (8000, 6000, DecodeOptions(short_side=0), (1024, 768, True)),
    (99, 61, DecodeOptions(short_side=0), (99, 61, False)),
])
def test_output_size(width, height, options, expected):
    assert tuple(output_size(width, height, options)) == expected


@pytest.mark.parametrize("size", ["4000x16", "16x2000"])
def test_extreme_aspect_ratio_is_capped(tmp_path, size):
    path = V.clip(tmp_path / f"bomb-{size}.mp4", size=size, seconds=0.5, fps=10)
    options = replace(SMALL, max_long_side=256)
    info, result = process_video(str(path), options)
    assert result.ok, result.detail
    shapes = {simplejpeg.decode_jpeg(f).shape[:2] for f in result.frames}
    assert len(shapes) == 1
    h, w = shapes.pop()
    assert max(w, h) == 256 and (w, h) == (result.width, result.height)
    assert (w > h) == (info.width > info.height)
    assert "max_long_side=256" in result.warning and size in result.warning


def _noisy(tmp_path: Path) -> Path:
    """Noise compresses badly: JPEG frames of a few KiB each."""
    return V.clip(tmp_path / "noise.mp4", size="128x96", seconds=2, fps=10,
                  extra=["-vf", "noise=alls=100:allf=t", "-g", "1"])


def test_sample_byte_cap_keeps_what_fits(tmp_path):
    path = _noisy(tmp_path)
    info, full = process_video(str(path), SMALL)
    assert full.ok and full.num_frames == 20
    cap = sum(len(f) for f in full.frames[:6]) + len(full.frames[6]) // 2
    capped = decode(str(path), info, replace(SMALL, max_sample_mb=cap / (1 << 20)))
    assert capped.ok and capped.frames == full.frames[:6]
    assert "cut at max_sample_mb=" in capped.warning and "after 6 frames" in capped.warning
    tiny = decode(str(path), info, replace(SMALL, max_sample_mb=len(full.frames[0]) / (1 << 20)))
    assert tiny.reason == reasons.SAMPLE_TOO_LARGE and tiny.frames == []


def test_h264_byte_cap(tmp_path):
    path = _noisy(tmp_path)
    options = replace(SMALL, mode="h264", max_sample_mb=0.02)
    result = decode(str(path), probe(str(path)), options)
    assert result.ok and SMALL.min_frames <= result.num_frames < 20
    assert "cut at max_sample_mb=0.02" in result.warning
    assert len(result.video) < 2 * options.max_sample_bytes


def test_decode_options_validate_caps():
    for bad in ({"max_long_side": 255}, {"max_long_side": 128}, {"max_sample_mb": 0},
                {"max_decoder_memory_mb": 0}):
        with pytest.raises(ValueError):
            DecodeOptions(**bad)
    assert DecodeOptions(short_side=0, max_long_side=2).max_long_side == 2


# ------------------------------------------------------------------------ run_tool


def test_run_tool_bounds_what_it_reads():
    noisy = "import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('e' * 5_000_000)"
    run = run_tool([sys.executable, "-c", noisy], 30, max_stdout_bytes=1000)
    assert run.overflowed and not run.timed_out and run.stdout == b"x" * 1000
    assert run.failure("python", 30) is None  # stopped on purpose: the caller decides
    run = run_tool([sys.executable, "-c", noisy], 30)
    assert run.returncode == 0 and len(run.stdout) == 5_000_000
    assert len(run.stderr) <= 2 * STDERR_KEEP and run.stderr.endswith(b"e" * 100)


def test_run_tool_reports_timeouts_and_signals():
    run = run_tool([sys.executable, "-c", "import time; time.sleep(30)"], 0.3)
    assert run.timed_out and run.failure("python", 0.3) == ("timeout", "python ran past 0.3 s")
    killer = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    kind, detail = run_tool([sys.executable, "-c", killer], 30).failure("python", 30)
    assert kind == "killed" and "SIGSEGV" in detail
    kind, detail = run_tool([sys.executable, "-c", "raise SystemExit(3)"], 30).failure("p", 30)
    assert (kind, detail) == ("failed", "p exited 3")
