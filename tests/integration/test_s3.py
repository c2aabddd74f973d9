"""One object-storage round trip: videos and annotations in S3, shards out to S3.

A real S3-compatible server (``moto_server``, the session's ``s3_server`` fixture) runs on
127.0.0.1; the job lists, downloads and uploads through pyarrow's S3 client exactly as against
AWS.
"""
from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.data.classes import ClassMap
from pipelines.config import load_config
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.job import run_preprocess
from pipelines.shards import contract
from pipelines.shards.reader import (
    decode_frames, list_shards, open_shards, sample_label, sample_meta,
)
from pipelines.synthetic import SyntheticConfig, write_dataset

pytestmark = pytest.mark.timeout(300)

BUCKET = "tsi-test"


@pytest.fixture(scope="module")
def s3_dataset(s3_server, tmp_path_factory):
    """The synthetic dataset (mp4s + Kinetics CSV) uploaded to ``s3://BUCKET/videos``."""
    import boto3

    local = tmp_path_factory.mktemp("synthetic")
    config = SyntheticConfig(num_pairs=1, splits=("train",), videos_per_class=(3,),
                             height=64, width=64, num_frames=16, fps=8)
    csv_path = write_dataset(config, local)
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"videos/{path.relative_to(local)}")
    rows = csv_path.read_text().splitlines()[1:]
    expected = {}
    for row in rows:
        label, youtube_id, start, end, _ = row.split(",")
        expected[f"{youtube_id}_{int(start):06d}_{int(end):06d}"] = label
    return {"client": client, "expected": expected}


def test_s3_round_trip(ray_local, s3_dataset, tmp_path):
    client = s3_dataset["client"]
    output = f"s3://{BUCKET}/shards"
    cfg = load_config(PreprocessConfig, None, flags={
        "dataset": "synthetic-s3", "format": "kinetics",
        "annotations": [f"s3://{BUCKET}/videos/annotations.csv"],
        "videos": f"s3://{BUCKET}/videos", "output": output,
        "media": {"fps_cap": None, "short_side": 64, "min_frames": 8},
        "sharding": {"videos_per_shard": 4}, "ray": {"workers": 2, "staging_dir": str(tmp_path)},
    })
    summary = run_preprocess(cfg)
    assert summary.ok and summary.splits["train"].stats["ok"] == len(s3_dataset["expected"])

    objects = sorted(o["Key"] for o in
                     client.list_objects_v2(Bucket=BUCKET, Prefix="shards/")["Contents"])
    assert "shards/classes.json" in objects and "shards/train/manifest.parquet" in objects
    assert not [k for k in objects if contract.TEMP_MARKER in k]
    shards = list_shards(output, "train")
    assert shards == [f"{output}/train/shard-000000.tar", f"{output}/train/shard-000001.tar"]

    # stream the shards straight from S3 with plain webdataset (pyarrow-backed s3:// opener)
    classes = ClassMap.parse(client.get_object(Bucket=BUCKET, Key="shards/classes.json")
                             ["Body"].read().decode())
    seen = {}
    for sample in open_shards(shards):
        meta = sample_meta(sample)
        seen[sample["__key__"]] = meta["label_name"]
        assert sample_label(sample) == classes.index(meta["label_name"])
        assert meta["source"] == f"s3://{BUCKET}/videos/train/{sample['__key__']}.mp4"
        assert decode_frames(sample[contract.FRAMES]).shape == (16, 64, 64, 3)
    assert seen == s3_dataset["expected"]

    body = client.get_object(Bucket=BUCKET, Key="shards/train/manifest.parquet")["Body"].read()
    rows = pq.read_table(io.BytesIO(body)).to_pylist()
    assert {r["key"] for r in rows if r["status"] == "ok"} == set(s3_dataset["expected"])
    # staging space on the node is cleaned up
    assert list(Path(tmp_path).iterdir()) == []

    # a re-run against S3 finds every shard complete and rewrites nothing
    etags = {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in objects
             if k.endswith(".tar")}
    again = run_preprocess(cfg)
    assert again.splits["train"].skipped == ["shard-000000.tar", "shard-000001.tar"]
    assert not again.splits["train"].processed
    assert {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in etags} == etags
