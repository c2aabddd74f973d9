"""The cluster path on one machine, as a user runs it: a Ray head from infra/local, the session's
MLflow HTTP server (infra/local/start_mlflow_server.sh), ``ray job submit`` of preprocessing and
then of a tiny training run named ``{ray_job}``, and the server holding the run and a registered
version with alias ``candidate``.

Runs last (conftest orders ``cluster_mode`` tests after the rest) with the session's shared Ray
instance shut down first, so the head's jobs have the machine's two CPUs to themselves.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from ray_head import EXCLUDES, REPO, Head, running_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster_mode, pytest.mark.timeout(420)]
SUBMIT_TIMEOUT_S = 240


@pytest.fixture
def cluster_head():
    import ray

    if ray.is_initialized():  # the session's ray_local: nothing after this test needs it
        ray.shutdown()
    with running_head() as head:
        yield head


def _submit(head: Head, submission_id: str, entrypoint: list[str], env: dict[str, str]) -> str:
    runtime_env = {"excludes": EXCLUDES, "env_vars": env}
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


def test_preprocess_and_train_through_ray_job_submit_register_a_candidate(
        cluster_head: Head, mlflow_server, tmp_path: Path):
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
        "sharding.videos_per_shard=8"], env={})
    preprocessed = time.monotonic()

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
    print(f"cluster mode: preprocess {preprocessed - began:.0f}s, train + register "
          f"{trained - preprocessed:.0f}s")
