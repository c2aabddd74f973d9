"""Synthetic dataset: determinism, exact reversed twins, real mp4 files, Kinetics round trip."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import ConfigError
from pipelines.data.annotations import read_annotations
from pipelines.data.classes import ClassMap
from pipelines.synthetic import (
    PAIRS,
    SyntheticConfig,
    class_names,
    encode_mp4,
    encode_mp4s,
    main,
    make_arrays,
    render_pair,
    write_dataset,
)

SMALL = SyntheticConfig(num_pairs=len(PAIRS), splits=("train", "val"), videos_per_class=(2, 1),
                        num_frames=10, height=48, width=64, fps=10, seed=7)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not installed")


def decode(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{path}", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    first, _ = render_pair(SMALL, "train", 2, 1)
    again, _ = render_pair(SMALL, "train", 2, 1)
    assert first.dtype == np.uint8 and first.shape == (10, 48, 64, 3)
    assert np.array_equal(first, again)
    other_seed, _ = render_pair(dataclasses.replace(SMALL, seed=8), "train", 2, 1)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, render_pair(SMALL, "val", 2, 1)[0])


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_twin_is_exact_reversal_with_the_same_multiset_of_frames(pair: int) -> None:
    forward, twin = render_pair(SMALL, "train", pair, 0)
    assert np.array_equal(twin, forward[::-1])
    # The video really moves and is not a palindrome, so the pair is not trivially equal ...
    assert not np.array_equal(forward, twin)
    assert len({f.tobytes() for f in forward}) > len(forward) // 2
    # ... yet any per-frame statistic sees the same multiset of frames in both classes.
    assert sorted(f.tobytes() for f in forward) == sorted(f.tobytes() for f in twin)
    def per_frame_stats(video: np.ndarray) -> list[list[float]]:
        return sorted(np.concatenate([video.mean((1, 2)), video.std((1, 2))], 1).tolist())

    assert per_frame_stats(forward) == per_frame_stats(twin)


def test_make_arrays_is_balanced_and_indexed_like_the_class_map() -> None:
    videos, labels = make_arrays(SMALL, "train")
    names = class_names(SMALL)
    assert names == tuple(sorted(n for pair in PAIRS for n in pair))
    assert videos.shape == (2 * len(PAIRS) * 2, 10, 48, 64, 3) and videos.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=len(names)).tolist() == [2] * len(names)
    # Every video's twin (next sample) is labelled with the opposite class of its pair.
    for i in range(0, len(labels), 2):
        pair = {names[labels[i]], names[labels[i + 1]]}
        assert pair in [set(p) for p in PAIRS]
        assert np.array_equal(videos[i + 1], videos[i][::-1])
    first, _ = make_arrays(SMALL, "val", channels_first=True)
    assert first.shape == (2 * len(PAIRS), 10, 3, 48, 64)
    assert np.array_equal(first[0], make_arrays(SMALL, "val")[0][0].transpose(0, 3, 1, 2))


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="even"):
        SyntheticConfig(height=47)
    with pytest.raises(ConfigError, match="same, non-zero length"):
        SyntheticConfig(splits=("train",), videos_per_class=(1, 2))
    with pytest.raises(ConfigError, match="num_pairs"):
        SyntheticConfig(num_pairs=len(PAIRS) + 1)


@needs_ffmpeg
def test_written_dataset_decodes_and_round_trips_through_the_kinetics_reader(
        tmp_path: Path) -> None:
    config = SyntheticConfig(num_pairs=2, splits=("train", "val"), videos_per_class=(1, 1),
                             num_frames=12, height=48, width=64, fps=12, seed=3)
    csv_path = write_dataset(config, tmp_path / "syn", workers=2)
    root = csv_path.parent
    available = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    videos = sorted(a for a in available if a.endswith(".mp4"))
    assert len(videos) == 2 * 2 * 2
    assert not [a for a in available if a.endswith(".partial")]
    assert csv_path.read_text().splitlines()[0] == "label,youtube_id,time_start,time_end,split"

    result = read_annotations("kinetics", csv_path, available)
    assert result.rejected == []
    assert sorted(r.path for r in result.records) == videos
    assert {r.split for r in result.records} == {"train", "val"}
    assert all(r.path.startswith(f"{r.split}/") for r in result.records)
    assert ClassMap.from_annotations(result).names == class_names(config)

    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "json",
         f"file:{root / videos[0]}"], capture_output=True, check=True, timeout=60).stdout)
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 64, 48)
    assert int(stream["nb_read_frames"]) == 12

    # Twins stay exact reversals after encoding (all-intra, constant quantiser).
    records = result.records  # CSV order: each rendered video, then its twin
    first, twin = (decode(root / r.path, 64, 48) for r in records[:2])
    assert first.shape[0] == 12 and np.array_equal(twin, first[::-1])
    rendered, _ = render_pair(config, "train", 0, 0)
    assert np.abs(first.astype(int) - rendered.astype(int)).mean() < 6  # codec error only

    again = write_dataset(config, tmp_path / "again")
    for rel in videos:  # same ffmpeg build → same bytes
        assert (root / rel).read_bytes() == (again.parent / rel).read_bytes()
    assert again.read_bytes() == csv_path.read_bytes()


@needs_ffmpeg
def test_cli_writes_and_prints_the_csv_path(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--output", str(out), "--workers", "1", "num_pairs=1", "splits=[train]",
                 "videos_per_class=[1]", "num_frames=4", "height=32", "width=32"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out.absolute() / "annotations.csv")
    assert len(Path(printed).read_text().splitlines()) == 1 + 2
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"]["num_frames"] == 4 and meta["classes"] == ["move_left", "move_right"]
    with pytest.raises(SystemExit):
        main(["--output", str(out), "no_such_key=1"])


@needs_ffmpeg
def test_single_clip_encode_and_bad_batches(tmp_path: Path) -> None:
    clip, _ = render_pair(SMALL, "val", 0, 0)
    target = tmp_path / "-leading dash; $(x).mp4"
    encode_mp4(clip, target, fps=SMALL.fps)
    decoded = decode(target, 64, 48)
    assert decoded.shape == clip.shape
    assert np.abs(decoded.astype(int) - clip.astype(int)).mean() < 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no staging left
    with pytest.raises(ValueError, match="share one"):
        encode_mp4s([clip, clip[:5]], [tmp_path / "a.mp4", tmp_path / "b.mp4"], fps=10)
    with pytest.raises(ValueError, match="one path per video"):
        encode_mp4s([clip], [], fps=10)
