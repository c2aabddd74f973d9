"""Training the way a cluster runs it: shards, pretrained weights and run storage in S3.

Against the session's real S3-compatible server (``moto_server`` on 127.0.0.1): pyarrow's S3
client, Ray Train's ``storage_path`` with a pyarrow filesystem and the workers' shard readers all
talk to it as they would to AWS. Nothing may land in a local folder named after a URI.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from conftest import tiny_train_overrides
from pipelines.io import Storage, storage_env
from pipelines.config import load_config
from pipelines.train.config import TrainConfig
from pipelines.train.trainer import run_training
from pipelines.train.weights import (
    WeightsMismatch, WeightsUnavailable, check_pretrained, sha256_file, stage,
)

pytestmark = pytest.mark.timeout(600)

BUCKET = "tsi-train"


@pytest.fixture(scope="module")
def bucket(s3_server, synthetic_shards, tmp_path_factory):
    """The session's shards and a TSN checkpoint of the tiny shape (the pretrained weights)."""
    import boto3

    from tsi_model import get_model, save_checkpoint

    options = {"num_classes": 8, "num_frames": 4, "width": 16, "layers": (1, 1, 1, 1),
               "dropout": 0.0}
    export = tmp_path_factory.mktemp("weights") / "tsn.pt"
    save_checkpoint(get_model("tsn_r50", **options), export, model_name="tsn_r50",
                    options=options)
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
    s3 = Storage.open(f"s3://{BUCKET}").fs
    pafs.copy_files(str(synthetic_shards), f"{BUCKET}/shards",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
    pafs.copy_files(str(export), f"{BUCKET}/weights/tsn.pt",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
    return {"shards": f"s3://{BUCKET}/shards", "weights": f"s3://{BUCKET}/weights/tsn.pt",
            "sha256": sha256_file(export), "local_shards": synthetic_shards}


def test_weights_are_checked_on_the_driver_and_staged_once_per_node(ray_local, bucket,
                                                                     tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        check_pretrained(f"s3://{BUCKET}/weights/missing.pt", None)
    with pytest.raises(ValueError, match="not a sha256"):
        check_pretrained(bucket["weights"], "abc")
    weights = check_pretrained(bucket["weights"], bucket["sha256"])
    assert weights.size > 0

    @ray_local.remote(num_cpus=1, runtime_env={"env_vars": storage_env()})
    def rank(cache: str) -> tuple[str, bool]:  # two workers of one node stage at once
        return stage(weights, Path(cache))

    staged = ray_local.get([rank.remote(str(tmp_path / "cache")) for _ in range(2)])
    assert sorted(downloaded for _, downloaded in staged) == [False, True]  # one download
    assert {path for path, _ in staged} == {staged[0][0]}
    assert sha256_file(staged[0][0]) == bucket["sha256"]
    wrong = check_pretrained(bucket["weights"], "0" * 64)
    with pytest.raises(WeightsMismatch, match="tsn.pt: sha256"):
        stage(wrong, tmp_path / "other-cache")
    kept = [p.name for p in (tmp_path / "other-cache").iterdir() if not p.name.endswith(".lock")]
    assert not kept  # nothing half-staged or unverified is kept


def _s3_run(bucket, tmp_path, **extra):
    return load_config(TrainConfig, None, tiny_train_overrides(
        bucket["shards"], f"s3://{BUCKET}/runs", **{
        "model.name": "tsn_r50", "run.name": "s3-run", "epochs": 2, "batches_per_epoch": 3,
        "model.pretrained": bucket["weights"], "model.pretrained_sha256": bucket["sha256"],
        "tracking.backend": "stdout", **extra}))


def test_a_wrong_weights_hash_fails_on_the_driver_before_training(ray_local, bucket, tmp_path):
    cfg = _s3_run(bucket, tmp_path, **{"model.pretrained_sha256": "f" * 64, "run.name": "bad"})
    with pytest.raises(WeightsMismatch, match="tsn.pt"):
        run_training(cfg)
    assert not Storage.open(f"s3://{BUCKET}/runs/bad").list_files()  # no worker ever started


def test_an_s3_run_restarts_from_its_s3_checkpoint_exports_there_and_is_evaluated_and_registered(
        ray_local, bucket, tmp_path, monkeypatch, capsys):
    """A worker raises in epoch 2: Ray Train restarts the group, which resumes from checkpoint 1
    in S3 and reports every epoch once; a re-submission of the finished run finds it in S3 and
    trains nothing; evaluation and registration read the export from S3."""
    from mlflow import MlflowClient

    from conftest import injected_failure
    from jobs import evaluate, register
    from pipelines.tracking import make_tracking
    from pipelines.tracking.runs import find_run
    from pipelines.train.loop import FAULT_MARKER

    monkeypatch.chdir(tmp_path)  # a URI turned into a path would show up here as ./s3:
    tracked = f"sqlite:///{tmp_path / 'train.db'}"
    cfg = _s3_run(bucket, tmp_path, **{"run.max_failures": 1, "task": "s3-tiny",
                                       "tracking.backend": "mlflow", "tracking.uri": tracked})
    with injected_failure(step=4):  # rank 1 raises once at step 4, after checkpoint 1
        result = run_training(cfg, tracking=make_tracking(cfg))
    run = Storage.open(f"s3://{BUCKET}/runs/s3-run")
    assert run.read_bytes(FAULT_MARKER) == b"4"  # the failure did happen
    assert result.metrics["global_step"] == 6 and result.resumed_from_step is None
    client = MlflowClient(tracked)
    mlflow_run = find_run(client, client.get_experiment_by_name("s3-tiny").experiment_id,
                          "s3-run")
    steps = [p.step for p in client.get_metric_history(mlflow_run.info.run_id, "train_loss")]
    assert steps == [3, 6]  # the global step continued from S3; no epoch reported twice
    assert result.export_path == f"s3://{BUCKET}/runs/s3-run/model.pt"
    assert run.exists("model.pt") and run.exists("model.pt.sha256")
    assert run.exists("eval_predictions.npz")
    assert result.metrics["train/distinct_videos"] == 48  # 3 steps x 2 ranks x 8 = the split
    assert not list(tmp_path.glob("s3*")) and not Path("s3:").exists()

    again = run_training(cfg, tracking=make_tracking(cfg))  # re-submitted: found in S3
    assert again.resumed_from_step == 6 and again.export_path == result.export_path

    store = f"sqlite:///{tmp_path / 'ops.db'}"
    capsys.readouterr()
    assert evaluate.main(["--model", result.export_path, "--data", str(bucket["local_shards"]),
                          "--tracking-uri", store]) == 0
    evaluated = capsys.readouterr()
    assert "Traceback" not in evaluated.err and "error" not in evaluated.err.lower()
    assert "MLflow run" in evaluated.out
    assert register.main(["--checkpoint", result.export_path, "--tracking-uri", store]) == 0
    assert "registered" in capsys.readouterr().out
