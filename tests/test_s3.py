"""One object-storage round trip: videos and annotations in S3, shards out to S3.

A real S3-compatible server (``moto_server``) runs on 127.0.0.1 for this module only; the job
lists, downloads and uploads through pyarrow's S3 client exactly as against AWS.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.data.classes import ClassMap
from pipelines.preprocess.config import resolve_config
from pipelines.preprocess.job import run_preprocess
from pipelines.shards import contract
from pipelines.shards.reader import (
    decode_frames, list_shards, open_shards, sample_label, sample_meta,
)
from pipelines.synthetic import SyntheticConfig, write_dataset

pytestmark = pytest.mark.timeout(300)

BUCKET = "tsi-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """``moto_server`` on a free local port, with the AWS environment pointing at it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    cfg = resolve_config(None, {
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
