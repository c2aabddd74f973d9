"""Session-wide fixtures: one local Ray instance and quiet telemetry for the whole test run.

``ray.init`` costs ~5 s, so every test that needs Ray shares the ``ray_local`` fixture instead of
starting its own cluster; it is shut down at the end of the session so nothing is left running.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """A 2-CPU local Ray instance on 127.0.0.1 shared by the session."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


# ------------------------------------------------------------------- training fixtures
# One small generated dataset and one trained tiny TSI and TSN per test session: a 2-worker
# Ray Train + DeepSpeed fit costs ~25 s of fixed overhead, so later tests (evaluation, export,
# tracking, registry) reuse these instead of training their own.

TINY_SYNTHETIC = dict(num_pairs=4, splits=("train", "val"), videos_per_class=(6, 3),
                      num_frames=16, height=32, width=32)


def tiny_train_overrides(shards, storage, **extra) -> list[str]:
    """A config every training test shares: width 16, one bottleneck per stage, 32x32, T=4."""
    base = {
        "data.root": str(shards), "run.storage_path": str(storage), "model.width": 16,
        "model.layers": "[1,1,1,1]", "model.dropout": 0.0, "data.clip.frames": 4,
        "data.clip.size": 32, "data.clip.resize": 32, "data.clip.flip": "false",
        "data.batch_size": 8, "data.eval_batch_size": 8, "data.loader_workers": 1,
        "epochs": 3, "batches_per_epoch": 6, "optim.lr": 0.02, "optim.reference_batch": 16,
        "optim.schedule": "cosine", "optim.nesterov": "true", "tracking.backend": "jsonl",
        "scaling.num_workers": 2, "scaling.cpus_per_worker": 1, "scaling.torch_threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="session")
def synthetic_shards(ray_local, tmp_path_factory):
    """The synthetic temporal dataset (8 classes, 48 train / 24 val clips) as shards."""
    from pipelines.preprocess.config import resolve_config
    from pipelines.preprocess.job import run_preprocess
    from pipelines.synthetic import SyntheticConfig, write_dataset

    root = tmp_path_factory.mktemp("synthetic")
    csv_path = write_dataset(SyntheticConfig(**TINY_SYNTHETIC), root / "videos", workers=2)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = resolve_config(os.path.join(repo, "jobs/configs/preprocess/synthetic.yaml"), {
        "annotations": [str(csv_path)], "videos": str(root / "videos"),
        "output": str(root / "shards"), "media": {"short_side": 32},
        "sharding": {"videos_per_shard": 8}})
    summary = run_preprocess(cfg)
    assert summary.ok and summary.stored == 72
    return root / "shards"


@pytest.fixture(scope="session")
def trained(ray_local, synthetic_shards, tmp_path_factory):
    """A tiny TSI (ZeRO-2, a worker fails once at step 9, tracked and registered in MLflow) and a
    tiny TSN (ZeRO-1, a jsonl log), 2 workers each.

    One after the other: run at the same time on 2 cores they took longer (121 s vs 112 s).
    """
    from pipelines.tracking import make_tracking
    from pipelines.train.config import resolve_config
    from pipelines.train.trainer import run_training

    storage = tmp_path_factory.mktemp("runs")
    # TSI is tracked in MLflow (the embedded sqlite store under the run storage) and registered
    tsi_cfg = resolve_config(None, tiny_train_overrides(synthetic_shards, storage, **{
        "model.name": "tsi_r50", "run.name": "tiny-tsi", "run.fail_at_step": 9,
        "deepspeed.zero_stage": 2, "task": "tsi-tiny", "tracking.backend": "mlflow",
        "tracking.backoff_s": 0.5}))
    tsi = run_training(tsi_cfg, tracking=make_tracking(tsi_cfg))
    tsn = run_training(resolve_config(None, tiny_train_overrides(synthetic_shards, storage, **{
        "model.name": "tsn_r50", "run.name": "tiny-tsn", "deepspeed.zero_stage": 1})))
    return {"tsi": tsi, "tsn": tsn, "storage": storage, "shards": synthetic_shards}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real ``mlflow server`` on 127.0.0.1 per session (infra/local scripts), stopped after."""
    import socket
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    start = subprocess.run([os.path.join(repo, "infra/local/start_mlflow_server.sh"), "--port",
                            str(port), "--dir", str(folder), "--timeout", "120"], env=env,
                           capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "dir": folder}
    finally:
        subprocess.run([os.path.join(repo, "infra/local/stop_mlflow_server.sh"), "--dir",
                        str(folder)], env=env, capture_output=True, timeout=60)
