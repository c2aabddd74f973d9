"""Media stage: probe/decode over good, awkward and broken inputs; JPEG splitting; timeouts."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest
import simplejpeg

from pipelines.media import reasons
from pipelines.media._proc import input_url
from pipelines.media.decode import DecodeOptions, build_command, decode, process_video
from pipelines.media.jpeg import JpegStreamError, jpeg_size, split_jpegs
from pipelines.media.probe import parse_probe, probe, probe_argv
import videos as V

pytestmark = pytest.mark.timeout(120)

SMALL = DecodeOptions(fps_cap=None, short_side=64, min_frames=4, probe_timeout_s=20,
                      decode_timeout_s=60)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


def _frames(result) -> np.ndarray:
    return np.stack([simplejpeg.decode_jpeg(f, colorspace="RGB") for f in result.frames])


@pytest.mark.parametrize("kind", sorted(V.GOOD))
def test_good_inputs_decode_to_short_side(media_dir, kind):
    path = V.GOOD[kind](media_dir / (kind + (".webm" if kind == "webm" else ".mp4")))
    info, result = process_video(str(path), SMALL)
    assert info.ok, info
    assert result.ok, result.detail
    frames = _frames(result)
    assert len(frames) == result.num_frames == info.num_frames  # no cap: every frame kept
    assert min(frames.shape[1:3]) == 64
    assert (frames.shape[2], frames.shape[1]) == (result.width, result.height)
    # aspect ratio of the display size is kept
    assert abs(result.width / result.height - info.width / info.height) < 0.05
    assert result.warning == ""


@pytest.mark.parametrize("tag", [90, 270])
def test_rotation_metadata_is_applied(media_dir, tag):
    path = V.rotated(media_dir / f"rot{tag}.mp4", rotate_tag=tag)
    stored = np.zeros((64, 96), np.uint8)
    stored[:, :48] = 255  # left half white, as written
    raw = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    side = json.loads(raw)["streams"][0]["side_data_list"][0]
    ccw = int(side["rotation"])  # the display matrix's counter-clockwise rotation
    info, result = process_video(str(path), SMALL)
    assert info.rotation == ccw % 360 and info.rotation in (90, 270)
    assert (info.width, info.height) == (64, 96)  # display size is portrait
    expected = np.rot90(stored, k=ccw // 90)
    got = _frames(result)[0].mean(axis=2)
    assert got.shape == (96, 64)
    # compare halves (codec edges blur the boundary)
    top_bright = expected[:48].mean() > expected[48:].mean()
    assert (got[:40].mean() > got[56:].mean()) == top_bright
    assert abs(got[:40].mean() - got[56:].mean()) > 150


@pytest.mark.parametrize("kind", sorted(V.BAD))
def test_bad_inputs_are_rejected_with_reason(media_dir, kind):
    make, reason = V.BAD[kind]
    path = make(media_dir / f"bad-{kind}.mp4")
    info, result = process_video(str(path), SMALL)
    assert not result.ok
    assert result.reason == reason, (result.reason, result.detail)
    assert result.frames == [] and result.video == b""


def test_missing_and_non_regular_inputs(media_dir):
    assert probe(str(media_dir / "nope.mp4")).reason == reasons.MISSING_FILE
    assert probe(str(media_dir)).reason == reasons.NOT_A_REGULAR_FILE


def test_truncated_file_keeps_what_decodes(media_dir):
    path = V.truncated(media_dir / "trunc70.mp4", keep=0.7)
    info, result = process_video(str(path), SMALL)
    assert info.ok and info.header_frames == 20
    assert info.num_frames < info.header_frames  # counted packets, not the header's claim
    assert result.ok
    assert SMALL.min_frames <= result.num_frames < 20
    assert result.warning.startswith("truncated:")


def test_truncated_below_min_frames_is_rejected(media_dir):
    path = V.truncated(media_dir / "trunc30.mp4", keep=0.3)
    _, result = process_video(str(path), DecodeOptions(fps_cap=None, short_side=64,
                                                       min_frames=8))
    assert not result.ok and result.reason in (reasons.TOO_FEW_FRAMES, reasons.DECODE_FAILED)


def test_one_frame_video_is_too_short(media_dir):
    _, result = process_video(str(V.one_frame(media_dir / "one.mp4")), SMALL)
    assert result.reason == reasons.TOO_FEW_FRAMES


@pytest.mark.parametrize("name", V.AWKWARD_NAMES)
def test_awkward_file_names_are_safe(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = V.clip(tmp_path / name)
    info, result = process_video(str(path), SMALL)
    assert result.ok and result.num_frames == 10
    # the name travels as one argv element behind file:, never through a shell
    argv = build_command(str(path), info, SMALL, "pipe:1")
    assert input_url(str(path)) in argv and input_url(str(path)).startswith("file:/")
    assert probe_argv(str(path))[-1] == "file:" + str(path)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_fps_cap_drops_frames_but_never_duplicates(media_dir):
    fast = V.clip(media_dir / "fast.mp4", fps=25, seconds=2)
    slow = V.clip(media_dir / "slow.mp4", fps=6, seconds=2)
    capped = DecodeOptions(fps_cap=8, short_side=64, min_frames=4)
    _, fast_out = process_video(str(fast), capped)
    _, slow_out = process_video(str(slow), capped)
    assert fast_out.fps == 8 and abs(fast_out.num_frames - 16) <= 1
    assert slow_out.fps == 6 and slow_out.num_frames == 12


def test_vfr_input_capped_to_constant_rate(media_dir):
    path = V.vfr(media_dir / "vfr-cap.mp4")
    info, result = process_video(str(path), DecodeOptions(fps_cap=8, short_side=64,
                                                          min_frames=4))
    assert info.vfr
    assert result.ok and result.fps == 8
    assert abs(result.num_frames - round(info.duration * 8)) <= 1


def test_trim_window_of_untrimmed_source(media_dir):
    # brightness encodes the frame number: frame n has luma 8n
    path = V.clip(media_dir / "ramp.mp4", source="color=c=black", seconds=3, fps=10,
                  extra=["-vf", "geq=lum='8*N':cb=128:cr=128", "-g", "1"])
    info, result = process_video(str(path), SMALL, time_start=1.0, time_end=2.0)
    assert result.ok
    assert abs(result.num_frames - 10) <= 1
    luma = _frames(result).mean(axis=(1, 2, 3))
    assert abs(luma[0] - 80) < 12  # first kept frame is frame 10 (t = 1.0 s)
    assert abs(luma[-1] - 8 * (9 + result.num_frames)) < 12
    assert result.warning == ""  # a trim is not a truncation
    late = decode(str(path), info, SMALL, time_start=10.0, time_end=12.0)
    assert not late.ok and late.reason in (reasons.TOO_FEW_FRAMES, reasons.DECODE_FAILED)


def test_long_video_is_cut_at_max_frames(media_dir):
    path = V.clip(media_dir / "long.mp4", seconds=2, fps=10)
    options = DecodeOptions(fps_cap=None, short_side=64, min_frames=4, max_frames=12)
    _, result = process_video(str(path), options)
    assert result.ok and result.num_frames == 12
    assert "cut at max_frames=12" in result.warning


def test_large_input_is_scaled_inside_ffmpeg(media_dir):
    path = V.clip(media_dir / "big.mp4", size="1920x1080", seconds=0.5, fps=8)
    info, result = process_video(str(path), SMALL)
    assert (info.width, info.height) == (1920, 1080)
    assert (result.width, result.height) == (114, 64)
    assert sum(len(f) for f in result.frames) < 100_000  # Python only sees the small output


def test_h264_mode_is_all_intra_at_short_side(media_dir):
    path = V.clip(media_dir / "src-h264.mp4", fps=25, seconds=1)
    options = DecodeOptions(mode="h264", fps_cap=8, short_side=64, min_frames=4)
    info, result = process_video(str(path), options)
    assert result.ok and result.frames == [] and result.video[4:8] == b"ftyp"
    out = media_dir / "out-h264.mp4"
    out.write_bytes(result.video)
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "packet=flags", "-of", "csv=p=0", str(out)], capture_output=True, check=True, text=True,
    ).stdout.split()
    assert len(packets) == result.num_frames == 8
    assert all(flags.startswith("K") for flags in packets)
    assert (result.width, result.height) == (96, 64)


def _ffmpeg_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True)
            if c.name() in ("ffmpeg", "ffprobe")]


def test_hanging_input_times_out_and_is_killed(media_dir, tmp_path):
    good = V.clip(media_dir / "for-timeout.ts", extra=["-f", "mpegts"])
    pipe = V.fifo(tmp_path / "never-written.ts")  # opening it for reading blocks forever
    assert probe(str(pipe)).reason == reasons.NOT_A_REGULAR_FILE
    info = probe(str(pipe), timeout_s=1.0, input_options={"f": "mpegts"})
    assert info.reason == reasons.PROBE_TIMEOUT
    result = decode(str(pipe), probe(str(good)), DecodeOptions(short_side=64,
                                                                decode_timeout_s=1.0))
    assert result.reason == reasons.DECODE_TIMEOUT
    assert _ffmpeg_children() == []


def test_urls_are_local_names():
    # the media stage reads local files only (remote videos are downloaded first)
    assert probe("http://127.0.0.1:9/video.mp4").reason == reasons.MISSING_FILE
    assert input_url("http://host/v.mp4").startswith("file:/")


# ------------------------------------------------------------------------ pure helpers


def _jpeg(value: int, size=(16, 24)) -> bytes:
    image = np.full((*size, 3), value, np.uint8)
    return simplejpeg.encode_jpeg(image, quality=90)


def test_split_jpegs_walks_segments_not_byte_patterns():
    a, b = _jpeg(10), _jpeg(200, (8, 8))
    # an APP15 segment whose payload contains an EOI and an SOI byte pair
    payload = b"\xff\xd9junk\xff\xd8"
    tricky = a[:2] + b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload + a[2:]
    images, tail = split_jpegs(tricky + b + a)
    assert images == [tricky, b, a] and tail == b""
    assert jpeg_size(tricky) == (24, 16) and jpeg_size(b) == (8, 8)
    assert simplejpeg.decode_jpeg(images[0]).shape == (16, 24, 3)


def test_split_jpegs_returns_incomplete_tail_and_rejects_garbage():
    a = _jpeg(50)
    images, tail = split_jpegs(a + a[: len(a) // 2])
    assert images == [a] and tail == a[: len(a) // 2]
    with pytest.raises(JpegStreamError):
        split_jpegs(b"not a jpeg")


def test_parse_probe_ignores_cover_art_and_reads_legacy_rotate_tag():
    cover = {"streams": [
        {"codec_type": "audio", "codec_name": "aac"},
        {"codec_type": "video", "codec_name": "mjpeg", "width": 300, "height": 300,
         "disposition": {"attached_pic": 1}, "nb_read_packets": "1"},
    ], "format": {"duration": "3.0"}}
    assert parse_probe(cover).reason == reasons.NO_VIDEO_STREAM
    tagged = {"streams": [
        {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001", "nb_frames": "300",
         "nb_read_packets": "120", "tags": {"rotate": "-90"}},
    ], "format": {"duration": "10.0", "size": "1234"}}
    info = parse_probe(tagged)
    assert info.ok and info.rotation == 270 and (info.width, info.height) == (1080, 1920)
    assert info.num_frames == 120 and info.header_frames == 300
    assert abs(info.fps - 29.97) < 0.01 and not info.vfr
    empty = {"streams": [{"codec_type": "video", "width": 10, "height": 10,
                          "nb_read_packets": "0"}], "format": {}}
    assert parse_probe(empty).reason == reasons.NO_VIDEO_FRAMES


def test_decode_options_validate():
    with pytest.raises(ValueError):
        DecodeOptions(short_side=255)
    with pytest.raises(ValueError):
        DecodeOptions(jpeg_qscale=1)
    with pytest.raises(ValueError):
        DecodeOptions(fps_cap=0)
    with pytest.raises(ValueError):
        DecodeOptions(max_long_side=200)  # below short_side
