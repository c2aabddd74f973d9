"""Generator families: disjoint declared ranges, reproducible draws, order twins, real files."""
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
from pipelines.synthetic import PAIRS, SyntheticConfig, class_names, main, render_pair
from pipelines.synthetic import scenes, sprites
from pipelines.synthetic.families import FAMILIES, Family, draw_settings

HELD_OUT = sorted(name for name in FAMILIES if name.startswith("heldout_"))
KINDS = ("shapes", "textures", "backgrounds")
RANGES = ("object_size", "speed", "acceleration", "clutter", "pan", "zoom", "frame_size",
          "frames", "noise", "qp")


def test_held_out_families_share_no_range_or_kind_with_train():
    train = FAMILIES["train"]
    assert len(HELD_OUT) >= 3
    for name in HELD_OUT:
        held = FAMILIES[name]
        for kinds in KINDS:
            assert not set(getattr(train, kinds)) & set(getattr(held, kinds)), (name, kinds)
        for key in RANGES:
            (a, b), (c, d) = getattr(train, key), getattr(held, key)
            assert b < c or d < a, f"{name}.{key} {getattr(held, key)} overlaps train's {(a, b)}"
    # at least one held-out family is drawn by other code than the train family's
    assert {FAMILIES[n].renderer for n in HELD_OUT} - {train.renderer}
    with pytest.raises(ValueError, match="object_size"):
        dataclasses.replace(train, object_size=(0.02, 0.3))
    with pytest.raises(ValueError, match="frame_size"):
        dataclasses.replace(train, frame_size=(64, 128))
    with pytest.raises(ConfigError, match="family"):
        SyntheticConfig(family="no_such_family")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_drawn_settings_stay_in_the_declared_ranges(name):
    family = FAMILIES[name]
    rng = np.random.default_rng(0)
    for _ in range(100):
        s = draw_settings(family, rng)
        assert s.shape in family.shapes and s.texture in family.textures
        assert s.background in family.backgrounds
        for key in ("object_size", "speed", "clutter", "zoom", "frames", "noise", "qp"):
            low, high = getattr(family, key)
            assert low <= getattr(s, key) <= high, key
        assert family.acceleration[0] <= abs(s.acceleration) <= family.acceleration[1]
        assert family.pan[0] - 1e-9 <= float(np.hypot(*s.pan)) <= family.pan[1] + 1e-9
        for side in (s.height, s.width):
            assert family.frame_size[0] <= side <= family.frame_size[1] and side % 2 == 0


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_same_seed_same_frames_and_twins_are_reverses(name):
    family = FAMILIES[name]
    config = SyntheticConfig(family=name, num_pairs=len(PAIRS), seed=5)
    for pair in range(len(PAIRS)):
        forward, twin = render_pair(config, "train", pair, 0)
        if pair == 0:
            first = forward
            again = render_pair(config, "train", pair, 0)
            assert np.array_equal(forward, again[0]) and np.array_equal(twin, again[1])
        assert forward.dtype == np.uint8 and forward.shape[-1] == 3
        assert family.frames[0] <= len(forward) <= family.frames[1]
        assert family.frame_size[0] <= min(forward.shape[1:3])
        assert max(forward.shape[1:3]) <= family.frame_size[1]
        if family.twins == "reversal":
            assert np.array_equal(twin, forward[::-1])
            assert not np.array_equal(forward, twin)
        else:  # its own scene: shares no frame with the rendered video
            assert not {f.tobytes() for f in forward} & {f.tobytes() for f in twin}
    other = render_pair(dataclasses.replace(config, seed=6), "train", 0, 0)[0]
    assert other.shape != first.shape or not np.array_equal(other, first)
    val = render_pair(config, "val", 0, 0)[0]
    assert val.shape != first.shape or not np.array_equal(val, first)


def test_motion_twins_are_the_forward_motion_played_backwards():
    family = FAMILIES["heldout_b"]
    for pair in range(len(PAIRS)):
        settings = draw_settings(family, np.random.default_rng(pair))
        forward = sprites.pose(pair, 1, settings, np.random.default_rng(9))
        twin = sprites.pose(pair, 0, settings, np.random.default_rng(9))
        assert all(np.array_equal(a[::-1], b) for a, b in zip(forward, twin))
        assert any(np.ptp(a) > 0 for a in forward)  # something moves
    # the forward class moves as its name says, in both renderers (y points down)
    settings = draw_settings(family, np.random.default_rng(1))
    x, y, scale, angle, opacity = sprites.pose(0, 1, settings, np.random.default_rng(2))
    assert np.all(np.diff(x) > 0)  # move_right
    assert np.all(np.diff(sprites.pose(1, 1, settings, np.random.default_rng(2))[1]) > 0)
    assert np.all(np.diff(sprites.pose(2, 1, settings, np.random.default_rng(2))[2]) > 0)
    assert np.all(np.diff(sprites.pose(3, 1, settings, np.random.default_rng(2))[3]) > 0)
    assert np.diff(sprites.pose(4, 1, settings, np.random.default_rng(2))[4]).min() >= 0
    shapes = draw_settings(FAMILIES["train"], np.random.default_rng(1))
    for pair, axis in ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4)):
        poses = scenes.motion(pair, shapes, np.random.default_rng(2), 10.0)
        steps = np.diff(poses[axis])
        assert steps.min() >= 0 and steps.max() > 0, PAIRS[pair][1]


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _decode(path: Path, height: int, width: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{path}", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True,
                         timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@needs_ffmpeg
@pytest.mark.parametrize("name", ["heldout_a", "heldout_b"])
def test_a_family_is_written_and_read_back(name, tmp_path: Path, capsys):
    out = tmp_path / name
    assert main(["--output", str(out), "--workers", "2", f"family={name}", "num_pairs=2",
                 "splits=[train]", "videos_per_class=[1]"]) == 0
    csv_path = Path(capsys.readouterr().out.strip())
    root = csv_path.parent
    available = {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}
    result = read_annotations("kinetics", csv_path, available)
    assert result.rejected == [] and len(result.records) == 4
    assert sorted(r.label for r in result.records) == sorted(class_names(SyntheticConfig(
        num_pairs=2)))
    assert json.loads((root / "synthetic.json").read_text())["config"]["family"] == name
    rendered = render_pair(SyntheticConfig(family=name, num_pairs=2), "train", 0, 0)
    decoded = [_decode(root / record.path, *frames.shape[1:3])
               for record, frames in zip(result.records, rendered)]  # CSV: rendered, then twin
    for video, frames in zip(decoded, rendered):
        assert video.shape == frames.shape
        assert np.abs(video.astype(int) - frames.astype(int)).mean() < 10  # codec error only
    if FAMILIES[name].twins == "reversal":  # all-intra at one quantiser: still exact reversals
        assert np.array_equal(decoded[1], decoded[0][::-1])
