"""Training runs named after the RayJob: a retry of one RayJob resumes, a new RayJob never reuses.

KubeRay gives the Ray job and the RayJob's cluster the names ``{RayJob}-{5 random}``, drawn
again for every retry (``GenerateRayJobId`` / ``GenerateRayClusterName``, KubeRay 1.7); the
environment below is what a driver on such a head sees.
"""
from __future__ import annotations

import json

import pytest

from pipelines.cluster import expand_ray_job, ray_job_name, ray_job_submission_id
from pipelines.config import ConfigError, load_config
from pipelines.train.config import TrainConfig


def _driver_env(submission_id: str, cluster: str | None = None) -> dict[str, str]:
    env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(
        {"runtime_env": {}, "metadata": {"job_submission_id": submission_id}})}
    if cluster is not None:
        env["RAY_CLUSTER_NAME"] = cluster
    return env


def test_a_rayjob_and_its_retries_share_one_name_and_new_rayjobs_get_their_own():
    first_try = _driver_env("train-k400-tsi-x7k2p-bq7zd", "train-k400-tsi-x7k2p-4l9vw")
    retry = _driver_env("train-k400-tsi-x7k2p-9mf2s", "train-k400-tsi-x7k2p-ttw5c")
    other = _driver_env("train-k400-tsi-c8d4z-bq7zd", "train-k400-tsi-c8d4z-4l9vw")
    assert ray_job_name(first_try) == ray_job_name(retry) == "train-k400-tsi-x7k2p"
    assert ray_job_name(other) == "train-k400-tsi-c8d4z"


def test_plain_ray_job_submit_uses_the_submission_id():
    assert ray_job_name(_driver_env("raysubmit_aB3dE5fG7hJ9kL1m")) == "raysubmit_aB3dE5fG7hJ9kL1m"
    # a chosen id that merely looks like KubeRay's pattern is kept whole without a matching cluster
    assert ray_job_name(_driver_env("nightly-bq7zd")) == "nightly-bq7zd"
    assert ray_job_name(_driver_env("nightly-bq7zd", "other-cluster-4l9vw")) == "nightly-bq7zd"
    # RayJob spec.jobId set by hand: KubeRay reuses it on retries, so it is the name as is
    assert ray_job_name(_driver_env("k400-tsi-v3", "train-k400-tsi-x7k2p-4l9vw")) == "k400-tsi-v3"


def test_outside_a_ray_job_the_placeholder_is_a_clear_error():
    assert ray_job_submission_id({}) is None
    assert ray_job_submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": "not json"}) is None
    with pytest.raises(ValueError, match="not started by `ray job submit`"):
        ray_job_name({})
    assert expand_ray_job("fixed-name", {}) == "fixed-name"  # no placeholder: no lookup


def test_train_config_expands_and_checks_the_run_name(monkeypatch):
    cfg = load_config(TrainConfig, None, [], flags={"run": {"name": "{ray_job}"}})
    for key, value in _driver_env("train-tsi-x7k2p-bq7zd", "train-tsi-x7k2p-4l9vw").items():
        monkeypatch.setenv(key, value)
    assert cfg.run_name() == "train-tsi-x7k2p"
    # a hostile name never becomes a folder outside the storage path
    for bad in ("../escape", "a/b", ".hidden", "{ray_job}/../x", "x" * 129):
        with pytest.raises(ConfigError, match="run name"):
            load_config(TrainConfig, None, [], flags={"run": {"name": bad}})
