"""The data loader: the one TSN sampler, crops, and shards -> batches per rank and worker.

Shards are written directly with the shard writer (tiny JPEG frames, no Ray). A sample's label
is its number, so batches say which samples they hold.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch

from pipelines.loader.augment import (
    crop_resize,
    crop_sizes,
    eval_crop_boxes,
    eval_transform,
    flipped_label,
    train_crop_box,
    train_transform,
)
from pipelines.loader.clips import ClipSettings, label_swap_indices
from pipelines.loader.decode import decode_picked, pick_frames, read_frames, stored_frame_count
from pipelines.loader.sampling import PROTOCOLS, segment_indices
from pipelines.loader.selection import SelectionFilter, in_selection, key_position
from pipelines.loader.streams import (
    EvalBatch,
    eval_assignment_note,
    eval_batches,
    shard_assignment_note,
    train_batches,
)
from pipelines.shards import contract
from pipelines.shards.writer import ShardWriter, encode_sample

REPO = Path(__file__).resolve().parents[2]
CLIP = ClipSettings(frames=4, size=16, resize=20)  # stored frames are 32x40: factor 1.6


def _frames(k: int, count: int = 6, height: int = 32, width: int = 40) -> list[bytes]:
    rng = np.random.default_rng(k)
    return [simplejpeg.encode_jpeg(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                   quality=90) for _ in range(count)]


def write_shards(folder: Path, sizes: list[int], *, count: int = 6) -> tuple[list[str], list[str]]:
    """Shards holding ``sizes[i]`` samples each; sample ``k`` has key ``v{k:03d}`` and label k."""
    urls, keys, k = [], [], 0
    for index, size in enumerate(sizes):
        path = folder / contract.shard_name(index)
        with ShardWriter(str(path)) as writer:
            for _ in range(size):
                key = f"v{k:03d}"
                writer.write(encode_sample(key, {"num_frames": count}, k,
                                           frames=_frames(k, count)))
                keys.append(key)
                k += 1
            writer.commit()
        urls.append(str(path))
    return urls, keys


# ---------------------------------------------------------------------------------- sampling


def test_train_sampling_picks_one_frame_inside_each_segment():
    rng = random.Random(0)
    seen = [set() for _ in range(8)]
    for _ in range(200):
        (index,) = segment_indices(16, 8, rng=rng)
        for i, f in enumerate(index):
            assert f in (2 * i, 2 * i + 1)
            seen[i].add(f)
    assert all(s == {2 * i, 2 * i + 1} for i, s in enumerate(seen))
    # 10 frames, 3 segments: [0, 3.33) [3.33, 6.67) [6.67, 10); frame k covers [k, k + 1)
    for _ in range(200):
        a, b, c = segment_indices(10, 3, rng=rng)[0]
        assert 0 <= a <= 3 and 3 <= b <= 6 and 6 <= c <= 9


def test_test_clips_are_hand_computed_offsets():
    assert segment_indices(16, 8) == [[1, 3, 5, 7, 9, 11, 13, 15]]  # 1x1: segment centres
    assert segment_indices(10, 4) == [[1, 3, 6, 8]]  # floor(1.25), floor(3.75), ...
    ten = segment_indices(80, 8, clips=10)  # segments of 10 frames: clip c takes 10 i + c
    assert ten == [[10 * i + c for i in range(8)] for c in range(10)]
    short = segment_indices(16, 8, clips=10)  # segments of 2: (c + 0.5) / 10 * 2 < 1 for c < 5
    assert short[:5] == [list(range(0, 16, 2))] * 5 and short[5:] == [list(range(1, 16, 2))] * 5
    assert PROTOCOLS == {"1x1": (1, 1), "10x3": (10, 3)}


def test_fewer_frames_than_segments_repeat_frames_in_order():
    assert segment_indices(3, 8) == [[0, 0, 0, 1, 1, 2, 2, 2]]
    assert segment_indices(1, 4, clips=2) == [[0, 0, 0, 0], [0, 0, 0, 0]]
    rng = random.Random(1)
    for _ in range(100):
        (index,) = segment_indices(3, 8, rng=rng)
        assert index == sorted(index) and set(index) <= {0, 1, 2} and len(index) == 8
    with pytest.raises(ValueError):
        segment_indices(0, 8)
    with pytest.raises(ValueError):
        segment_indices(8, 8, rng=rng, clips=2)


# ------------------------------------------------------------------------------ clip settings


def test_clip_settings_round_trip_through_json_and_validate():
    clip = ClipSettings(flip_label_swap=(("left", "right"),))
    data = json.loads(json.dumps(clip.to_dict()))
    assert data["scales"] == [1.0, 0.875, 0.75, 0.66]
    assert ClipSettings.from_dict(data) == clip
    assert ClipSettings(scales=[1, 0.5]).scales == (1.0, 0.5)  # YAML lists become tuples
    for bad in ({"frames": 0}, {"size": 256, "resize": 224}, {"scales": ()},
                {"scales": (1.5,)}, {"max_distort": -1}, {"flip_label_swap": (("a", "a"),)},
                {"flip": False, "flip_label_swap": (("a", "b"),)}):
        with pytest.raises(ValueError):
            ClipSettings(**bad)
    with pytest.raises(ValueError, match="unknown"):
        ClipSettings.from_dict({"frames": 8, "crop": 3})
    assert label_swap_indices([("left", "right")], ["left", "other", "right"]) == {0: 2, 2: 0}
    with pytest.raises(ValueError, match="not in the class map"):
        label_swap_indices([("left", "rigth")], ["left", "right"])


# ---------------------------------------------------------------------------------- augment


def test_tsn_crop_sizes_and_boxes_stay_inside_the_frame():
    assert set(crop_sizes(ClipSettings())) == {
        (256, 256), (224, 256), (256, 224), (224, 224), (192, 224), (224, 192),
        (192, 192), (168, 192), (192, 168), (168, 168)}
    rng = random.Random(0)
    for width, height in ((340, 256), (256, 340), (40, 32), (33, 64)):
        for clip in (ClipSettings(), CLIP, ClipSettings(size=16, resize=20, corner_crops=False,
                                                        max_distort=2)):
            for _ in range(50):
                left, top, right, bottom = train_crop_box(width, height, clip, rng)
                assert 0 <= left < right <= width and 0 <= top < bottom <= height
    # stored at the reference size: sizes and the 5 fixed offsets exactly as TSN computes them
    clip = ClipSettings()
    for _ in range(100):
        left, top, right, bottom = train_crop_box(340, 256, clip, rng)
        w, h = right - left, bottom - top
        assert (w, h) in crop_sizes(clip)
        ws, hs = (340 - w) // 4, (256 - h) // 4
        assert (left, top) in {(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)}


def test_train_transform_shapes_and_one_flip_for_all_frames():
    ramp = np.broadcast_to((np.arange(40) * 6).astype(np.uint8)[None, None, :, None],
                           (5, 32, 40, 3)).copy()
    flips = set()
    for seed in range(20):
        out, flipped = train_transform(ramp, CLIP, random.Random(seed))
        assert out.shape == (5, 3, 16, 16) and out.dtype == np.uint8 and out.flags.c_contiguous
        assert all(np.array_equal(out[0], out[t]) for t in range(5))  # same box, same flip
        row = out[0, 0, 8].astype(int)
        assert (np.all(np.diff(row) <= 0) if flipped else np.all(np.diff(row) >= 0))
        flips.add(flipped)
    assert flips == {True, False}
    assert not train_transform(ramp, ClipSettings(frames=4, size=16, resize=20, flip=False),
                               random.Random(3))[1]
    noise = np.random.default_rng(0).integers(0, 256, (3, 32, 40, 3), dtype=np.uint8)
    box = (3, 2, 30, 29)
    assert np.array_equal(crop_resize(noise, box, 16, flip=True),
                          crop_resize(noise, box, 16)[..., ::-1])


def test_eval_crops_centre_and_three_squares():
    frames = np.random.default_rng(0).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    # stored at the reference short side: the centre crop is a plain crop, no resample
    assert eval_crop_boxes(30, 20, CLIP) == [(7, 2, 23, 18)]
    centre = eval_transform(frames, CLIP)
    assert centre.shape == (1, 2, 3, 16, 16)
    assert np.array_equal(centre[0], frames[:, 2:18, 7:23].transpose(0, 3, 1, 2))
    assert eval_crop_boxes(30, 20, CLIP, 3) == [(0, 0, 20, 20), (5, 0, 25, 20), (10, 0, 30, 20)]
    assert eval_crop_boxes(20, 30, CLIP, 3) == [(0, 0, 20, 20), (0, 5, 20, 25), (0, 10, 20, 30)]
    assert eval_transform(frames, CLIP, 3).shape == (3, 2, 3, 16, 16)
    # stored at twice the reference: the same region, in stored pixels
    assert eval_crop_boxes(60, 40, CLIP) == [(14, 4, 46, 36)]
    with pytest.raises(ValueError):
        eval_crop_boxes(30, 20, CLIP, 2)


def test_label_swap_follows_the_flip():
    assert flipped_label(3, True, {3: 4, 4: 3}) == 4
    assert flipped_label(3, False, {3: 4, 4: 3}) == 3
    assert flipped_label(5, True, {3: 4, 4: 3}) == 5
    assert flipped_label(3, True, None) == 3


# ---------------------------------------------------------------------------------- decoding


def test_read_frames_decodes_picked_frames_once_and_repeats(tmp_path):
    urls, _ = write_shards(tmp_path, [1], count=4)
    from pipelines.shards.reader import open_shards

    (sample,) = list(open_shards(urls))
    assert stored_frame_count(sample) == 4
    all_frames = read_frames(sample, [0, 1, 2, 3])
    assert np.array_equal(read_frames(sample, [2, 2, 0]), all_frames[[2, 2, 0]])


def test_pick_frames_keeps_only_the_sampled_jpegs_and_decodes_them_as_before(tmp_path):
    """What the shuffle buffer holds: the sampled frames' JPEG bytes, nothing else; decoded,
    the same pixels as the shard reader's decode of those frames."""
    import msgpack

    from pipelines.shards.reader import decode_frames, open_shards

    urls, _ = write_shards(tmp_path, [1], count=6)
    (sample,) = list(open_shards(urls))
    stored = msgpack.unpackb(sample[contract.FRAMES], raw=False)
    picked = pick_frames(sample, lambda count: [count - 1, 1, 1])
    assert (picked.unique, picked.order, picked.video) == ((1, 5), (1, 0, 0), None)
    assert picked.jpegs == (stored[1], stored[5])
    assert np.array_equal(decode_picked(picked),
                          decode_frames(sample[contract.FRAMES], [5, 1, 1]))
    with pytest.raises(IndexError, match="stores 6"):
        pick_frames(sample, lambda count: [count])
    mixed = encode_sample("m", {"num_frames": 2}, 0,
                          frames=_frames(0, 1) + _frames(1, 1, height=16))
    with pytest.raises(ValueError, match="one frame size"):
        read_frames(mixed, [0, 1])


def _has_pyav() -> bool:
    return importlib.util.find_spec("av") is not None


@pytest.mark.skipif(_has_pyav(), reason="PyAV is installed here")
def test_mp4_shards_without_pyav_name_the_missing_package():
    sample = encode_sample("k", {"num_frames": 3}, 0, video=b"\x00\x00\x00\x18ftypmp42")
    assert stored_frame_count(sample) == 3
    with pytest.raises(NotImplementedError, match="PyAV"):
        read_frames(sample, [0, 1])


@pytest.mark.skipif(not _has_pyav() or shutil.which("ffmpeg") is None,
                    reason="needs PyAV and ffmpeg")
def test_mp4_shards_decode_with_pyav(tmp_path):
    frames = np.stack([np.full((32, 48, 3), 20 * i, np.uint8) for i in range(10)])
    path = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", "48x32", "-r", "8", "-i", "pipe:0", "-c:v",
                    "libx264", "-g", "1", "-qp", "0", "-pix_fmt", "yuv444p", str(path)],
                   input=frames.tobytes(), check=True)
    sample = encode_sample("k", {"num_frames": 10}, 0, video=path.read_bytes())
    out = read_frames(sample, [0, 3, 3, 9])
    assert out.shape == (4, 32, 48, 3)
    assert np.abs(out[:, 10, 10, 0].astype(int) - [0, 60, 60, 180]).max() <= 2
    with pytest.raises(ValueError, match="fewer than its counted"):
        read_frames(encode_sample("k", {"num_frames": 12}, 0, video=path.read_bytes()), [11])
    shard = tmp_path / contract.shard_name(0)
    with ShardWriter(str(shard)) as writer:
        for k in range(2):
            writer.write(encode_sample(f"m{k}", {"num_frames": 10}, k, video=path.read_bytes()))
        writer.commit()
    (clips, labels, _), = train_batches([str(shard)], CLIP, batch_size=2, batches=1, rank=0,
                                     world_size=1, seed=0, epoch=0, num_workers=0)
    assert clips.shape == (2, 4, 3, 16, 16) and set(labels.tolist()) <= {0, 1}


# ---------------------------------------------------------------------------------- training


def _epoch(urls, rank, *, workers, epoch=0, seed=0, batches=4, **kw):
    return list(train_batches(urls, CLIP, batch_size=3, batches=batches, rank=rank, world_size=2,
                              seed=seed, epoch=epoch, num_workers=workers, shuffle_buffer=4, **kw))


@pytest.mark.parametrize("workers", [0, 2])
def test_train_gives_every_rank_exactly_its_batches_on_uneven_shards(tmp_path, workers):
    urls, _ = write_shards(tmp_path, [5, 1, 7])
    labels = []
    for rank in range(2):
        batches = _epoch(urls, rank, workers=workers, batches=5)
        assert len(batches) == 5
        for clips, label, keys in batches:
            assert clips.shape == (3, 4, 3, 16, 16) and clips.dtype == torch.uint8
            assert label.shape == (3,) and label.dtype == torch.int64
            assert clips.is_contiguous()
            assert [f"v{int(y):03d}" for y in label] == keys
        labels.append({int(x) for _, label, _ in batches for x in label})
    assert set().union(*labels) <= set(range(13))


@pytest.mark.parametrize("sizes", [[9, 4, 12], [2, 1, 0, 3, 1, 5, 2, 1, 4, 2, 2, 3]])
def test_every_epoch_reads_every_video_once_for_any_shard_count(tmp_path, sizes):
    """3 shards for 2 ranks x 4 workers (8 readers: shards are split inside), or more shards
    than readers: each epoch, every video is read once, by one reader of one rank."""
    urls, keys = write_shards(tmp_path, sizes)
    batch, world = 2, 2
    for epoch in range(2):
        read = []
        for rank in range(world):
            stream = train_batches(urls, CLIP, batch_size=batch, batches=None, rank=rank,
                                   world_size=world, seed=3, epoch=epoch, num_workers=4,
                                   shuffle_buffer=4, counts=[len(k) for k in _keys(sizes)])
            got = [key for _, _, batch_keys in stream for key in batch_keys]
            assert len(got) == len(stream) * batch  # every rank the same number of batches
            read += got
        plan = stream.plan
        assert len(read) == len(set(read)), "a video was read twice in one epoch"
        assert len(set(read)) + plan.dropped_per_pass == len(keys)
        assert plan.dropped_per_pass < world * batch and set(read) <= set(keys)


def _keys(sizes):
    return [[None] * size for size in sizes]


def test_an_epoch_longer_than_a_pass_starts_a_new_pass_and_a_tiny_split_is_refused(tmp_path):
    urls, keys = write_shards(tmp_path, [3, 4])
    stream = train_batches(urls, CLIP, batch_size=2, batches=5, rank=0, world_size=1, seed=0,
                           epoch=0, num_workers=0, shuffle_buffer=0)
    read = [key for _, _, batch_keys in stream for key in batch_keys]
    assert len(read) == 10 and sorted(read[:6]) == sorted(set(read[:6]))  # pass 1: 6 of 7
    assert stream.plan.batches_per_pass == 3 and stream.plan.dropped_per_pass == 1
    with pytest.raises(ValueError, match="one batch"):
        train_batches(urls, CLIP, batch_size=4, batches=None, rank=0, world_size=2, seed=0,
                      epoch=0, num_workers=0)


def test_train_is_reproducible_and_differs_between_epochs(tmp_path):
    urls, _ = write_shards(tmp_path, [5, 1, 7])
    first = _epoch(urls, 1, workers=2)
    again = _epoch(urls, 1, workers=2)
    later = _epoch(urls, 1, workers=2, epoch=1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, later))
    stream = train_batches(urls, CLIP, batch_size=3, batches=2, rank=0, world_size=1, seed=0,
                           epoch=0, num_workers=0)
    assert len(stream) == 2
    assert all(torch.equal(a[0], b[0]) for a, b in zip(stream, stream))  # replays the epoch


def test_train_keep_filters_samples_and_an_empty_selection_fails(tmp_path):
    urls, keys = write_shards(tmp_path, [5, 1, 7])
    keep = SelectionFilter(0.5)
    wanted = {i for i, key in enumerate(keys) if keep(key)}
    assert 0 < len(wanted) < len(keys)
    seen = {int(x) for rank in range(2) for _, label, _ in _epoch(urls, rank, workers=2, keep=keep)
            for x in label}
    assert seen <= wanted
    with pytest.raises(RuntimeError, match="no sample"):
        _epoch(urls, 0, workers=0, keep=SelectionFilter(0.0))


def test_train_swaps_labels_of_flipped_clips(tmp_path):
    path = tmp_path / contract.shard_name(0)
    ramp = (np.arange(40) * 6).astype(np.uint8)[None, :, None].repeat(32, 0).repeat(3, 2)
    with ShardWriter(str(path)) as writer:
        for k in range(4):
            writer.write(encode_sample(f"r{k}", {}, 0,
                                       frames=[simplejpeg.encode_jpeg(ramp, quality=95)] * 4))
        writer.commit()
    clip = ClipSettings(frames=2, size=16, resize=20, flip_label_swap=(("a", "b"),))
    with pytest.raises(ValueError, match="label_swap"):
        train_batches([str(path)], clip, batch_size=4, batches=1, rank=0, world_size=1, seed=0,
                      epoch=0, num_workers=0)
    labels = set()
    for clips, label, _ in train_batches([str(path)], clip, batch_size=4, batches=4, rank=0,
                                      world_size=1, seed=0, epoch=0, num_workers=0,
                                      label_swap=label_swap_indices(clip.flip_label_swap, "ab")):
        for one, y in zip(clips, label):
            row = one[0, 0, 8].int()
            mirrored = bool((row[1:] <= row[:-1]).all())
            assert int(y) == (1 if mirrored else 0)
            labels.add(int(y))
    assert labels == {0, 1}


def test_assignment_notes_say_what_happens():
    assert "disjoint" in shard_assignment_note(8, 2, 2)
    assert "share shards" in shard_assignment_note(3, 2, 2) and "4" in shard_assignment_note(3, 2, 2)
    assert "1 readers" in shard_assignment_note(1, 1, 0)
    assert "split by (rank, worker)" in eval_assignment_note(4, 2, 2)
    assert "i % 4" in eval_assignment_note(3, 2, 2)


def test_train_logs_its_shard_policy(tmp_path, caplog):
    from pipelines.loader import streams

    urls, _ = write_shards(tmp_path, [2])
    streams._LOGGED.clear()  # logged once per process: forget what earlier tests said
    with caplog.at_level(logging.INFO, logger="tsi.loader"):
        train_batches(urls, CLIP, batch_size=1, batches=1, rank=0, world_size=2, seed=0,
                      epoch=0, num_workers=2)
    assert "share shards" in caplog.text


# -------------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("sizes", [[3, 1, 3], [7], [2, 1, 1, 2, 1]], ids=["3shards", "1shard",
                                                                         "5shards"])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_eval_reads_every_sample_exactly_once_over_ranks(tmp_path, sizes, workers):
    urls, keys = write_shards(tmp_path, sizes, count=4)
    seen: list[str] = []
    for rank in range(2):
        for batch in eval_batches(urls, CLIP, batch_size=2, rank=rank, world_size=2,
                                  num_workers=workers):
            assert isinstance(batch, EvalBatch)
            assert batch.clips.shape == (len(batch.keys), 1, 4, 3, 16, 16)
            assert batch.clips.dtype == torch.uint8 and batch.labels.dtype == torch.int64
            assert [f"v{int(y):03d}" for y in batch.labels] == batch.keys
            seen += batch.keys
    assert sorted(seen) == keys  # the whole dataset, no key twice


def test_eval_10x3_views_and_keep(tmp_path):
    urls, keys = write_shards(tmp_path, [2, 1], count=12)
    keep = SelectionFilter(0.5, selected=False)
    batches = list(eval_batches(urls, CLIP, protocol="10x3", batch_size=4, rank=0,
                                world_size=1, num_workers=0, keep=keep))
    assert [k for b in batches for k in b.keys] == [k for k in keys if keep(k)]
    views = batches[0].clips[0]
    assert views.shape == (30, 4, 3, 16, 16)
    # view c * 3 + k: temporal clip c, crop k; clip 0 crop 1 is the 1x1 frames' centre square
    from pipelines.shards.reader import decode_frames, open_shards

    sample = next(s for s in open_shards(urls) if s["__key__"] == batches[0].keys[0])
    frames = decode_frames(sample[contract.FRAMES], segment_indices(12, 4, clips=10)[0])
    assert torch.equal(views[1], torch.from_numpy(eval_transform(frames, CLIP, 3)[1]))
    with pytest.raises(ValueError, match="protocol"):
        eval_batches(urls, CLIP, protocol="3x3", batch_size=1, rank=0, world_size=1)


# ------------------------------------------------------------------------- selection, layering


def test_in_selection_is_stable_and_near_its_fraction():
    assert key_position("abc") == pytest.approx(0.6624945528519905)  # sha1 a9993e36...
    assert in_selection("abc", 0.67) and not in_selection("abc", 0.66)
    assert in_selection("-8jh3Hk_a1Q_000010_000020", 0.2)
    assert not in_selection("video-0001", 0.88)
    share = sum(in_selection(f"video-{i}", 0.1) for i in range(5000)) / 5000
    assert abs(share - 0.1) < 0.015
    rest = pickle.loads(pickle.dumps(SelectionFilter(0.1, selected=False)))
    assert all(rest(f"video-{i}") != in_selection(f"video-{i}", 0.1) for i in range(100))


def test_loader_imports_no_ray_deepspeed_or_mlflow():
    allowed_third_party = {"torch", "numpy", "webdataset", "PIL", "simplejpeg", "msgpack", "av"}
    for path in sorted((REPO / "pipelines" / "loader").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top == "pipelines":
                    assert name.split(".")[1] in {"io", "shards", "data", "loader"}, (path, name)
                else:
                    assert top in allowed_third_party | sys.stdlib_module_names, (path, name)
