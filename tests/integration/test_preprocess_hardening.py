"""Second hardening pass of preprocessing: no input may leave the job saying "ok" about data it
lost or padded, and a refused run leaves nothing behind.

Untrimmed windows of one source, a FIFO or folder where a video or frame should be, an output
whose split folder cannot be written. Inputs are generated (ffmpeg lavfi, ``os.mkfifo``); the one
job run shares the session's Ray instance.
"""
from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import videos as V
from pipelines.data.annotations import read_annotations
from pipelines.io import Storage
from pipelines.config import load_config
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.job import PreprocessError, run_preprocess
from pipelines.shards import contract

pytestmark = pytest.mark.timeout(240)
MEDIA = {"fps_cap": 8, "short_side": 64, "min_frames": 4}


def _write_csv(path: Path, rows, header=None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _cfg(fmt: str, videos: Path, output: Path, annotations: Path, **extra):
    return load_config(PreprocessConfig, None, flags={"dataset": "hardening", "format": fmt,
                                 "annotations": [str(annotations)], "videos": str(videos),
                                 "output": str(output), "media": MEDIA, **extra})


def _rows(output: Path, split: str = "train") -> list[dict]:
    return pq.read_table(output / split / contract.MANIFEST).to_pylist()


# ------------------------------------------------------------------ 1. untrimmed windows
def test_every_window_of_an_untrimmed_source_is_its_own_sample(ray_local, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    V.clip(videos / "src.mp4", seconds=2.0, fps=10)
    (videos / "alias.mp4").symlink_to(videos / "src.mp4")  # the same file under another name
    rows = [("a", "src", 0.0, 1.0, "train"), ("a", "src", 0.5, 2.0, "train"),
            ("b", "src", 1.0, 2.0, "train"),
            ("a", "alias", 0.0, 1.0, "train")]  # the first window again, through the link
    ann = _write_csv(tmp_path / "k.csv", rows, ("label", "youtube_id", "time_start", "time_end",
                                                "split"))
    output = tmp_path / "out"
    summary = run_preprocess(_cfg("kinetics", videos, output, ann, untrimmed=True,
                                  sharding={"videos_per_shard": 8}))
    by_id = {r["video_id"]: r for r in _rows(output)}
    windows = ["src_000000_000001", "src_000000_000002", "src_000001_000002"]
    assert [by_id[w]["status"] for w in windows] == ["ok"] * 3, [by_id[w] for w in windows]
    assert (by_id["alias_000000_000001"]["reason"] == "same_file"
            and "same window" in by_id["alias_000000_000001"]["detail"])
    assert summary.stored == 3
    assert [by_id[w]["num_frames"] for w in windows] == [8, 12, 8]  # each window's own frames


# ------------------------------------------------------- 3. FIFOs and folders named like videos
def test_a_fifo_or_a_folder_named_like_a_video_is_not_a_regular_file(tmp_path):
    from pipelines.preprocess.worker import ShardTask, write_shard
    from pipelines.preprocess.plan import PlannedSample, ShardSpec
    from pipelines.media.decode import DecodeOptions

    videos = tmp_path / "videos"
    videos.mkdir()
    V.clip(videos / "good.mp4", seconds=0.8)
    os.mkfifo(videos / "pipe.mp4")
    (videos / "folder.mp4").mkdir()
    (videos / "folder.mp4" / "notes.txt").write_text("a folder, not a video")
    ann = _write_csv(tmp_path / "a.csv", [("good.mp4", "x"), ("pipe.mp4", "x"),
                                          ("folder.mp4", "x")], ("path", "label"))
    listing = Storage.open(str(videos)).list_files()
    found = read_annotations("csv", [str(ann)], listing, split=None, trimmed=True)
    refused = {r.video_id: r.reason for r in found.rejected}
    assert refused == {"folder.mp4": "not_a_regular_file"}, found.rejected
    # the FIFO is listed and refused by its task, which must not block on it
    samples = [PlannedSample(contract.sample_key(r.video_id), r.video_id, r.path, 0, "x", None,
                             None) for r in found.records]
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    task = ShardTask(ShardSpec(0, "shard-000000.tar", tuple(samples)), "train", "d", str(videos),
                     str(out), DecodeOptions(short_side=64, min_frames=4))
    write_shard(task)
    part = pq.read_table(out / "train" / contract.part_name("shard-000000.tar")).to_pylist()
    assert {r["video_id"]: r["reason"] for r in part} == {"good.mp4": "",
                                                          "pipe.mp4": "not_a_regular_file"}


def test_a_fifo_frame_in_a_frame_folder_rejects_the_sample(tmp_path):
    """Something-Something V1: 15 real frames and a FIFO must not become a 15-frame sample."""
    from pipelines.media.decode import DecodeOptions
    from pipelines.preprocess.plan import PlannedSample, ShardSpec
    from pipelines.preprocess.worker import ShardTask, write_shard

    videos = tmp_path / "frames"
    for name, fifo_at in (("clean", None), ("hostile", 7)):
        folder = videos / name
        folder.mkdir(parents=True)
        V.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=12:d=1.34", "-frames:v", "16",
                 "file:" + str(folder / "%05d.jpg"))
        if fifo_at is not None:
            (folder / f"{fifo_at:05d}.jpg").unlink()
            os.mkfifo(folder / f"{fifo_at:05d}.jpg")
    samples = tuple(PlannedSample(n, n, n, 0, "x", None, None, frames_dir=True)
                    for n in ("clean", "hostile"))
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    task = ShardTask(ShardSpec(0, "shard-000000.tar", samples), "train", "d", str(videos),
                     str(out), DecodeOptions(short_side=64, min_frames=4, fps_cap=None))
    write_shard(task)
    part = {r["video_id"]: r for r in
            pq.read_table(out / "train" / contract.part_name("shard-000000.tar")).to_pylist()}
    assert part["clean"]["status"] == "ok" and part["clean"]["num_frames"] == 16
    assert part["hostile"]["reason"] == "not_a_regular_file", part["hostile"]
    assert "00007.jpg" in part["hostile"]["detail"]


# ------------------------------------------------- 8, 11. unwritable outputs, refused runs
def _immutable(folder: Path) -> bool:
    """Make ``folder`` unwritable: ``chattr +i`` (works for root), else a read-only mode."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return True
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    return False


def _mutable(folder: Path) -> None:
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_an_unwritable_split_folder_is_one_line_exit_2_and_leaves_no_lock(tmp_path, capsys):
    from jobs.preprocess import main

    videos = tmp_path / "videos"
    videos.mkdir()
    V.clip(videos / "a.mp4", seconds=0.8)
    ann = _write_csv(tmp_path / "a.csv", [("a.mp4", "x")], ("path", "label"))
    output = tmp_path / "out"
    (output / "train").mkdir(parents=True)
    if not _immutable(output / "train"):
        pytest.skip("cannot make a folder unwritable here")
    try:
        code = main(["--format", "csv", "--annotations", str(ann), "--videos", str(videos),
                     "--output", str(output), "--split", "train"])
        err = capsys.readouterr().err.strip().splitlines()
    finally:
        _mutable(output / "train")
    assert code == 2 and len(err) == 1, err
    assert "cannot write" in err[0] and "train" in err[0] and "Traceback" not in err[0]
    assert not (output / "_lock.json").exists()


def test_a_refused_run_leaves_nothing_behind(tmp_path, capsys):
    from jobs.preprocess import main

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "unrelated.txt").write_text("x")
    ann = _write_csv(tmp_path / "a.csv", [("a.mp4", "x", "../up")], ("path", "label", "split"))
    output = tmp_path / "new" / "out"
    code = main(["--format", "csv", "--annotations", str(ann), "--videos", str(videos),
                 "--output", str(output)])
    assert code == 2, capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # no lock file, no folder it made
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["--format", "csv", "--annotations", str(ann), "--videos", str(videos),
                 "--output", str(existing)]) == 2
    assert list(existing.iterdir()) == []


# ------------------------------------------------------ 2. timestamps that would pad a clip
def _stamped(path: Path, expr: str, seconds: float = 2.0, fps: int = 10) -> Path:
    """A clip whose frame n is stamped ``expr`` seconds (testsrc2: every frame differs)."""
    V.ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=96x64:r={fps}:d={seconds}",
             "-vf", f"setpts='({expr})/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "file:" + str(path))
    return path


def test_a_frame_stamped_hours_late_is_dropped_not_padded(tmp_path):
    from pipelines.media.decode import DecodeOptions, process_video

    path = _stamped(tmp_path / "gap.mp4", r"if(eq(N\,19)\,36000\,N/10)")  # last frame at 10 h
    info, result = process_video(str(path), DecodeOptions(short_side=64, min_frames=4))
    assert info.ok and info.num_frames == 20
    assert result.ok and result.num_frames <= 16, result.num_frames  # 19 real frames at 8 fps
    assert len(set(result.frames)) == result.num_frames  # no frame stored twice
    assert result.nbytes < 20 * path.stat().st_size
    assert "timestamps: dropped 1 of 20 frames" in result.warning


def test_a_timestamp_gap_below_the_outlier_bound_is_never_filled_with_copies(tmp_path):
    from pipelines.media.decode import DecodeOptions, process_video

    # 25 frames in 1 s, a 3 s hole, 25 more: 10 fps on average, above the 8 fps cap
    path = _stamped(tmp_path / "hole.mp4", r"if(lt(N\,25)\,N/25\,3+N/25)", fps=25)
    _, result = process_video(str(path), DecodeOptions(short_side=64, min_frames=4))
    assert result.ok and "timestamps" not in result.warning, (result.reason, result.detail)
    assert len(set(result.frames)) == result.num_frames <= 17, result.num_frames


# ---------------------------------------------- 4. the probed stream is the decoded stream
def test_a_thumbnail_track_before_the_video_does_not_hide_it(tmp_path):
    from pipelines.media.decode import DecodeOptions, build_command, process_video

    still = V.ffmpeg("-f", "lavfi", "-i", "color=c=red:s=96x64:d=0.1", "-frames:v", "1",
                     "file:" + str(tmp_path / "still.png"))
    del still
    path = tmp_path / "thumb-first.mkv"
    V.ffmpeg("-i", "file:" + str(tmp_path / "still.png"), "-f", "lavfi", "-i",
             "testsrc2=s=96x64:r=10:d=1", "-map", "0", "-map", "1", "-c:v:0", "mjpeg",
             "-c:v:1", "libx264", "-pix_fmt:v:1", "yuv420p", "file:" + str(path))
    options = DecodeOptions(short_side=64, min_frames=4)
    info, result = process_video(str(path), options)
    assert info.stream_index == 1 and info.num_frames == 10 and info.codec == "h264"
    assert result.ok and result.num_frames == 8, (result.reason, result.detail)
    assert "[0:1]" in " ".join(build_command(str(path), info, options, "pipe:1"))
