"""``ray job submit`` end to end, as a user runs it: a real Ray head started with
``infra/local/start_ray_head.sh`` (``ray start --head`` on 127.0.0.1, token auth), the repository
root as ``--working-dir`` with the documented excludes, ``python -m jobs.preprocess`` on a tiny
synthetic dataset, shards read back with ``webdataset``.

Why a separate head rather than the session's ``ray_local``: job submission needs the dashboard's
job server and a driver process that connects through ``RAY_ADDRESS``, which ``ray.init()``
inside pytest does not exercise. The head is stopped by its own process id/session
(``infra/local/stop_ray_head.sh``), never with ``ray stop``, which would also kill ``ray_local``.
"""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest
from ray_head import EXCLUDES, JOB_TIMEOUT_S, REPO, Head, running_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def ray_head():
    with running_head() as head:
        yield head


def test_ray_job_submit_preprocess(ray_head: Head, tmp_path: Path):
    import pyarrow.parquet as pq
    import webdataset as wds

    from pipelines.synthetic import SyntheticConfig, write_dataset

    began = time.monotonic()
    videos = tmp_path / "videos"
    out = tmp_path / "shards"
    csv_path = write_dataset(SyntheticConfig(num_pairs=1, videos_per_class=(3, 2), height=64,
                                             width=64, num_frames=8), videos)

    # The job API is on 127.0.0.1 only and refuses requests without the token.
    with pytest.raises(urllib.error.HTTPError) as denied:
        ray_head.get("/api/jobs/", token=None)
    assert denied.value.code == 401
    node_ip = (ray_head.temp_dir / "ray_current_cluster").read_text().strip().rsplit(":", 1)[0]
    if node_ip not in ("127.0.0.1", "localhost"):
        with pytest.raises(OSError):
            socket.create_connection((node_ip, ray_head.dashboard_port), timeout=2).close()

    submission_id = f"tsi-test-{secrets.token_hex(4)}"
    entrypoint = [
        "python", "-m", "jobs.preprocess", "--format", "kinetics", "--dataset", "synthetic",
        "--annotations", str(csv_path), "--videos", str(videos), "--output", str(out),
        "--workers", "2", "media.short_side=64", "media.min_frames=4",
        "sharding.videos_per_shard=4",
    ]
    try:
        proc = ray_head.ray(
            "job", "submit", "--address", ray_head.dashboard, "--submission-id", submission_id,
            "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
            "--", *entrypoint, timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"job did not finish in {JOB_TIMEOUT_S}s:\n{exc.stdout}\n{exc.stderr}")
    log = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, log
    info = ray_head.get(f"/api/jobs/{submission_id}", token=ray_head.token)
    assert info["status"] == "SUCCEEDED", (info, log)

    # What the cluster received: the packages, without the venv, the data or .git.
    pkgs = list((ray_head.temp_dir / "session_latest" / "runtime_resources"
                 / "working_dir_files").glob("_ray_pkg_*/"))
    assert len(pkgs) == 1, pkgs
    for member in ("jobs/preprocess.py", "pipelines/data/__init__.py",
                   "pipelines/preprocess/job.py", "tsi_model/__init__.py"):
        assert (pkgs[0] / member).is_file(), member
    for excluded in (".venv", ".git", "data"):
        assert not (pkgs[0] / excluded).exists(), excluded

    # Outputs: 6 train videos in shards of 4 → 2 shards; 4 val videos → 1 shard.
    classes = json.loads((out / "classes.json").read_text())
    assert classes["classes"] == ["move_left", "move_right"]
    expected = {"train": (6, 2), "val": (4, 1)}
    for split, (n_videos, n_shards) in expected.items():
        shards = sorted((out / split).glob("shard-*.tar"))
        assert [s.name for s in shards] == [f"shard-{i:06d}.tar" for i in range(n_shards)]
        manifest = pq.read_table(out / split / "manifest.parquet").to_pylist()
        assert len(manifest) == n_videos
        assert {r["status"] for r in manifest} == {"ok"}, manifest
        stats = json.loads((out / split / "stats.json").read_text())
        assert stats["ok"] == n_videos and stats["rejected"] == 0
        samples = [s for shard in shards
                   for s in wds.WebDataset(str(shard), shardshuffle=False)]
        assert sorted(s["__key__"] for s in samples) == sorted(r["key"] for r in manifest)
        for s in samples:
            meta = json.loads(s["json"])
            assert meta["label_name"] == classes["classes"][meta["label"]]
            assert int(s["cls"]) == meta["label"]
            assert meta["split"] == split and meta["dataset"] == "synthetic"
            assert meta["num_frames"] == 8 and min(meta["width"], meta["height"]) == 64
            assert s["frames.msgpack"]
    print(f"ray job submit end to end: {time.monotonic() - began:.1f}s after the head started")


def test_ray_job_submit_evaluate_records_the_run(ray_head: Head, colour_models, tmp_path: Path):
    """An operations job through ``ray job submit``: Ray tasks on the head's cluster, the MLflow
    run in a store outside the uploaded working dir."""
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    entrypoint = ["python", "-m", "jobs.evaluate", "--model", colour_models["exports"]["good"],
                  "--data", str(colour_models["shards"]), "--tracking-uri", store,
                  "--parts", "2", "--experiment", "submitted-evaluation"]
    try:
        proc = ray_head.ray(
            "job", "submit", "--address", ray_head.dashboard, "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--", *entrypoint,
            timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"job did not finish in {JOB_TIMEOUT_S}s:\n{exc.stdout}\n{exc.stderr}")
    log = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, log
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("submitted-evaluation")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["top1"] == 1.0 and run.data.metrics["videos"] == 24, log
