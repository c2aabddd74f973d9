"""Shard contract pieces: keys, writer (temp name + rename), reader helpers, manifest, plan."""
from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import simplejpeg

from pipelines.data.records import VideoRecord
from pipelines.preprocess.plan import (
    PlannedSample, default_videos_per_shard, plan_fingerprint, plan_shards, record_sample,
)
from pipelines.io import Storage
from pipelines.shards import contract, manifest
from pipelines.shards.reader import (
    decode_frames, frame_count, list_shards, open_shards, sample_label, sample_meta,
)
from pipelines.shards.writer import ShardWriter, encode_sample


def test_sample_keys_are_stable_safe_and_unique():
    ids = ["abc_000010_000020", "-dash_000001_000002", "a.b", "a b", "a_b", "a/b", "a\\b",
           "café", "日本", "x" * 200, "x" * 199 + "y", "", "__meta__", "..", "a.b.c"]
    keys = [contract.sample_key(i) for i in ids]
    assert keys == [contract.sample_key(i) for i in ids]  # stable
    assert len(set(keys)) == len(keys)  # unique
    for key in keys:
        assert key and "." not in key and "/" not in key and "\\" not in key
        assert len(key) <= contract.MAX_KEY_LENGTH and key.isascii()
        assert not key.startswith("__")
    # already-safe ids are kept verbatim
    assert keys[0] == "abc_000010_000020" and keys[1] == "-dash_000001_000002"
    assert contract.assign_keys(["a.b", "a b"]) == {"a.b": keys[2], "a b": keys[3]}


def test_shard_names_sort_in_plan_order_and_temp_names_are_recognised():
    names = [contract.shard_name(i) for i in (0, 2, 10, 123456)]
    assert names == sorted(names) and names[0] == "shard-000000.tar"
    assert all(contract.is_shard_name(n) for n in names)
    assert not contract.is_shard_name("shard-000000.tar.tmp-abc")
    assert contract.is_temp_name("shard-000000.tar.tmp-abc")
    assert contract.part_name("shard-000007.tar") == "_parts/shard-000007.parquet"


def _image(value: int, h: int = 24, w: int = 32) -> bytes:
    return simplejpeg.encode_jpeg(np.full((h, w, 3), value, np.uint8), quality=90)


def _meta(key: str, label: int) -> dict:
    return {"label": label, "label_name": f"class {label}", "video_id": key, "source": key,
            "fps": 8.0, "num_frames": 3, "width": 32, "height": 24, "duration": 0.375,
            "dataset": "t", "split": "train", "format_version": contract.FORMAT_VERSION}


def _write(path: str, count: int) -> list[str]:
    keys = [f"vid-{i}" for i in range(count)]
    with ShardWriter(path) as writer:
        for i, key in enumerate(keys):
            writer.write(encode_sample(key, _meta(key, i % 3), i % 3,
                                       frames=[_image(10 * i + j) for j in range(3)]))
        assert os.path.exists(writer.temp_path) and not os.path.exists(path)
        writer.commit()
    return keys


def test_writer_renames_on_commit_and_reads_back_with_webdataset(tmp_path):
    path = str(tmp_path / "train" / contract.shard_name(0))
    keys = _write(path, 4)
    assert os.listdir(tmp_path / "train") == [contract.shard_name(0)]
    with tarfile.open(path) as tar:
        names = tar.getnames()
    # members of a sample are adjacent, each sample complete
    prefixes = [n.split(".", 1)[0] for n in names]
    runs = [p for i, p in enumerate(prefixes) if i == 0 or prefixes[i - 1] != p]
    assert runs == keys
    assert Counter(prefixes) == {k: 3 for k in keys}
    samples = list(open_shards(path))
    assert [s["__key__"] for s in samples] == keys
    for i, sample in enumerate(samples):
        assert set(sample) >= {contract.FRAMES, contract.META, contract.LABEL}
        assert sample_label(sample) == i % 3
        assert sample_meta(sample)["label_name"] == f"class {i % 3}"
        frames = decode_frames(sample[contract.FRAMES])
        assert frames.dtype == np.uint8 and frames.shape == (3, 24, 32, 3)
        assert frame_count(sample[contract.FRAMES]) == 3
        picked = decode_frames(sample[contract.FRAMES], [2, 0, 0])
        assert picked.shape[0] == 3 and abs(int(picked[0].mean()) - (10 * i + 2)) <= 2


def test_writer_leaves_nothing_on_error_and_no_pickles(tmp_path):
    path = str(tmp_path / contract.shard_name(1))
    with pytest.raises(RuntimeError):
        with ShardWriter(path) as writer:
            writer.write(encode_sample("k", _meta("k", 0), 0, video=b"\x00\x00\x00\x18ftyp"))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        encode_sample("bad.key", {}, 0, frames=[])
    with pytest.raises(ValueError):
        encode_sample("k", {}, 0)


def test_list_shards_skips_temp_and_other_files(tmp_path):
    _write(str(tmp_path / "val" / contract.shard_name(1)), 1)
    _write(str(tmp_path / "val" / contract.shard_name(0)), 1)
    (tmp_path / "val" / "shard-000002.tar.tmp-123").write_bytes(b"partial")
    (tmp_path / "val" / "manifest.parquet").write_bytes(b"x")
    assert list_shards(str(tmp_path), "val") == [
        str(tmp_path / "val" / contract.shard_name(0)),
        str(tmp_path / "val" / contract.shard_name(1)),
    ]


def test_manifest_table_schema_and_summary(tmp_path):
    rows = [
        {"key": "a", "status": "ok", "shard": "shard-000000.tar", "label": 1,
         "label_name": "x", "num_frames": 8, "sample_bytes": 100, "duration": 1.0},
        {"key": "b", "status": "rejected", "reason": "empty_file", "label": 0},
        {"key": "c", "status": "rejected", "reason": "empty_file"},
        {"key": "d", "status": "ok", "shard": "shard-000001.tar", "warning": "truncated: 3",
         "label_name": "x", "num_frames": 4, "sample_bytes": 50, "duration": 0.5},
    ]
    table = manifest.table(rows)
    assert table.schema == manifest.SCHEMA
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    back = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert back.column("reason").to_pylist() == ["", "empty_file", "empty_file", ""]
    stats = manifest.summarize(back)
    assert stats["ok"] == 2 and stats["rejected"] == 2 and stats["shards"] == 2
    assert stats["rejected_by_reason"] == {"empty_file": 2}
    assert stats["ok_with_warning"] == 1 and stats["stored_bytes"] == 150
    with pytest.raises(KeyError):
        manifest.table([{"key": "x", "status": "ok", "not_a_column": 1}])


def _samples(n: int, classes: int = 4) -> list[PlannedSample]:
    records = [VideoRecord(f"v{i:04d}", f"v{i:04d}.mp4", f"c{i % classes}") for i in range(n)]
    return [record_sample(r, contract.sample_key(r.video_id), i % classes)
            for i, r in enumerate(records)]


def test_plan_is_deterministic_balanced_and_mixes_classes():
    samples = _samples(103)
    plan = plan_shards(samples, videos_per_shard=10, seed=7)
    assert [s.name for s in plan] == [contract.shard_name(i) for i in range(11)]
    sizes = [len(s.samples) for s in plan]
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1 and max(sizes) <= 10
    keys = [p.key for s in plan for p in s.samples]
    assert sorted(keys) == sorted(p.key for p in samples)  # every video exactly once
    assert all(len({p.label for p in s.samples}) > 1 for s in plan)
    # same records in another order, same seed -> same plan; another seed -> another plan
    again = plan_shards(list(reversed(samples)), videos_per_shard=10, seed=7)
    assert again == plan
    assert plan_fingerprint(again, {"a": 1}) == plan_fingerprint(plan, {"a": 1})
    other = plan_shards(samples, videos_per_shard=10, seed=8)
    assert other != plan and plan_fingerprint(other, {"a": 1}) != plan_fingerprint(plan, {"a": 1})
    assert plan_fingerprint(plan, {"a": 2}) != plan_fingerprint(plan, {"a": 1})


def test_default_shard_size_targets_measured_bytes():
    jpeg = default_videos_per_shard("jpeg", 8.0)
    h264 = default_videos_per_shard("h264", 8.0)
    assert 0.5e9 <= jpeg * 3.0e6 <= 1.0e9 and 0.5e9 <= h264 * 1.0e6 <= 1.0e9
    assert default_videos_per_shard("jpeg", 16.0) < jpeg


def test_local_storage_writes_atomically_and_lists(tmp_path):
    store = Storage.open(str(tmp_path / "root"))
    assert store.is_local and store.list_files() == []
    store.write_bytes("a/b/c.json", json.dumps({"x": 1}).encode())
    local = tmp_path / "upload.bin"
    local.write_bytes(b"payload")
    store.upload(str(local), "a/up.bin")
    assert store.list_files() == ["a/b/c.json", "a/up.bin"]
    assert store.list_files("a", recursive=False) == ["up.bin"]
    assert store.read_bytes("a/up.bin") == b"payload" and store.exists("a/b/c.json")
    store.delete("a/up.bin")
    assert not store.exists("a/up.bin")
    assert [p.name for p in (tmp_path / "root" / "a").iterdir()] == ["b"]  # no temp files
