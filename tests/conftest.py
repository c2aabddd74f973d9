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
        "optim.schedule": "cosine", "optim.nesterov": "true", "tracking": "jsonl",
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
    """A tiny TSI (ZeRO-2, a worker fails once at step 9) and a tiny TSN (ZeRO-1), 2 workers each.

    One after the other: run at the same time on 2 cores they took longer (121 s vs 112 s).
    """
    from pipelines.train.config import resolve_config
    from pipelines.train.trainer import run_training

    storage = tmp_path_factory.mktemp("runs")
    tsi = run_training(resolve_config(None, tiny_train_overrides(synthetic_shards, storage, **{
        "model.name": "tsi_r50", "run.name": "tiny-tsi", "run.fail_at_step": 9,
        "deepspeed.zero_stage": 2})))
    tsn = run_training(resolve_config(None, tiny_train_overrides(synthetic_shards, storage, **{
        "model.name": "tsn_r50", "run.name": "tiny-tsn", "deepspeed.zero_stage": 1})))
    return {"tsi": tsi, "tsn": tsn, "storage": storage, "shards": synthetic_shards}
