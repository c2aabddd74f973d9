"""The cluster path on one machine, as a user runs it: a Ray head from infra/local
(``ray start --head`` on 127.0.0.1, token auth), the session's MLflow HTTP server
(infra/local/start_mlflow_server.sh), and ``ray job submit`` of preprocessing, of a tiny training
run named ``{ray_job}`` and of an evaluation of the candidate it registered, each with the
repository root as ``--working-dir`` and the documented excludes.

Why a head rather than the session's ``ray_local``: job submission needs the dashboard's job
server and a driver process that connects through ``RAY_ADDRESS``, which ``ray.init()`` inside
pytest does not exercise. One head for the module (starting and stopping one costs ~20 s); it is
stopped by its own process id/session (``infra/local/stop_ray_head.sh``), never with ``ray
stop``. Runs last (conftest orders ``cluster_mode`` tests after the rest) with ``ray_local`` shut
down first, so the head's jobs have the machine's two CPUs to themselves.
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
from ray_head import EXCLUDES, REPO, Head, running_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster_mode, pytest.mark.timeout(600)]
SUBMIT_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def cluster_head():
    import ray

    if ray.is_initialized():  # the session's ray_local: nothing after these tests needs it
        ray.shutdown()
    with running_head() as head:
        yield head


def _submit(head: Head, submission_id: str, entrypoint: list[str],
            env: dict[str, str] | None = None) -> str:
    runtime_env = {"excludes": EXCLUDES, "env_vars": env or {}}
    try:
        proc = head.ray("job", "submit", "--address", head.dashboard, "--submission-id",
                        submission_id, "--working-dir", str(REPO), "--runtime-env-json",
                        json.dumps(runtime_env), "--", *entrypoint, timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{submission_id} did not finish in {SUBMIT_TIMEOUT_S}s:\n{exc.stdout}\n"
                    f"{exc.stderr}")
    log = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, log
    assert head.get(f"/api/jobs/{submission_id}", token=head.token)["status"] == "SUCCEEDED", log
    return log


def test_the_job_api_needs_its_token_and_listens_on_localhost_only(cluster_head: Head):
    with pytest.raises(urllib.error.HTTPError) as denied:
        cluster_head.get("/api/jobs/", token=None)
    assert denied.value.code == 401
    node_ip = (cluster_head.temp_dir / "ray_current_cluster").read_text().strip().rsplit(":", 1)[0]
    if node_ip not in ("127.0.0.1", "localhost"):
        with pytest.raises(OSError):
            socket.create_connection((node_ip, cluster_head.dashboard_port), timeout=2).close()


def _check_shards(out: Path, counts: dict[str, tuple[int, int]]) -> None:
    """The submitted preprocessing's output, read back with ``webdataset``."""
    import pyarrow.parquet as pq
    import webdataset as wds

    classes = json.loads((out / "classes.json").read_text())["classes"]
    for split, (n_videos, n_shards) in counts.items():
        shards = sorted((out / split).glob("shard-*.tar"))
        assert [s.name for s in shards] == [f"shard-{i:06d}.tar" for i in range(n_shards)]
        manifest = pq.read_table(out / split / "manifest.parquet").to_pylist()
        assert len(manifest) == n_videos and {r["status"] for r in manifest} == {"ok"}, manifest
        stats = json.loads((out / split / "stats.json").read_text())
        assert stats["ok"] == n_videos and stats["rejected"] == 0
        samples = [s for shard in shards for s in wds.WebDataset(str(shard), shardshuffle=False)]
        assert sorted(s["__key__"] for s in samples) == sorted(r["key"] for r in manifest)
        for s in samples:
            meta = json.loads(s["json"])
            assert meta["label_name"] == classes[meta["label"]] and int(s["cls"]) == meta["label"]
            assert meta["split"] == split and meta["dataset"] == "synthetic"
            assert meta["num_frames"] == 8 and min(meta["width"], meta["height"]) == 32
            assert s["frames.msgpack"]


def test_preprocess_train_and_evaluate_through_ray_job_submit(cluster_head: Head, mlflow_server,
                                                              tmp_path: Path):
    from conftest import tiny_train_overrides
    from mlflow import MlflowClient

    from pipelines.synthetic import SyntheticConfig, write_dataset

    began = time.monotonic()
    task = f"cluster-{secrets.token_hex(3)}"
    csv_path = write_dataset(SyntheticConfig(num_pairs=2, videos_per_class=(4, 2), height=32,
                                             width=32, num_frames=8), tmp_path / "videos")
    shards = tmp_path / "shards"
    _submit(cluster_head, f"preprocess-{task}", [
        "python", "-m", "jobs.preprocess", "--config", "jobs/configs/preprocess/synthetic.yaml",
        "--annotations", str(csv_path), "--videos", str(tmp_path / "videos"),
        "--output", str(shards), "--workers", "2", "media.short_side=32", "media.min_frames=4",
        "sharding.videos_per_shard=8"])
    preprocessed = time.monotonic()
    # What the cluster received: the packages, without the venv, the data or .git.
    pkgs = list((cluster_head.temp_dir / "session_latest" / "runtime_resources"
                 / "working_dir_files").glob("_ray_pkg_*/"))
    assert len(pkgs) == 1, pkgs
    for member in ("jobs/preprocess.py", "pipelines/data/__init__.py",
                   "pipelines/preprocess/job.py", "tsi_model/__init__.py"):
        assert (pkgs[0] / member).is_file(), member
    for excluded in (".venv", ".git", "data"):
        assert not (pkgs[0] / excluded).exists(), excluded
    _check_shards(shards, {"train": (16, 2), "val": (8, 1)})  # 4 classes x 4 / x 2, 8 a shard

    # a submission id of the KubeRay form "{RayJob}-{5}" without a RayJob cluster: kept whole
    submission_id = f"train-{task}"
    overrides = tiny_train_overrides(shards, tmp_path / "runs", **{
        "model.name": "tsi_r50", "task": task, "epochs": 1, "batches_per_epoch": 3,
        "data.eval_split": "val", "tracking.backend": "mlflow",
        "tracking.uri": mlflow_server["url"]})
    log = _submit(cluster_head, submission_id, [
        "python", "-m", "jobs.train", "--name", "{ray_job}", *overrides],
        env={"MLFLOW_TRACKING_URI": mlflow_server["url"]})
    trained = time.monotonic()

    client = MlflowClient(mlflow_server["url"])
    experiment = client.get_experiment_by_name(task)
    assert experiment is not None, log
    [run] = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`tsi.run_name` = '{submission_id}'")
    assert run.info.status == "FINISHED"
    assert "train_loss" in run.data.metrics, run.data.metrics
    version = client.get_model_version_by_alias(f"{task}-candidates", "candidate")
    assert version.run_id == run.info.run_id
    assert (tmp_path / "runs" / submission_id / "model.pt").is_file()  # the run's own folder

    # an operations job: Ray tasks on the head's cluster, the registered candidate as the model
    log = _submit(cluster_head, f"evaluate-{task}", [
        "python", "-m", "jobs.evaluate", "--model", f"models:/{task}-candidates@candidate",
        "--data", str(shards), "--tracking-uri", mlflow_server["url"], "--parts", "2",
        "--experiment", f"{task}-submitted-evaluation"])
    evaluation = client.get_experiment_by_name(f"{task}-submitted-evaluation")
    [scored] = client.search_runs([evaluation.experiment_id])
    assert scored.data.metrics["videos"] == 8 and 0 <= scored.data.metrics["top1"] <= 1, log
    print(f"cluster mode: preprocess {preprocessed - began:.0f}s, train + register "
          f"{trained - preprocessed:.0f}s, evaluate {time.monotonic() - trained:.0f}s")
