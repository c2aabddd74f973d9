"""Session-wide fixtures: one local Ray instance and quiet telemetry for the whole test run.

``ray.init`` costs ~5 s, so every test that needs Ray shares the ``ray_local`` fixture instead of
starting its own cluster; it is shut down at the end of the session so nothing is left running.
"""
from __future__ import annotations

import contextlib
import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


RUN_LAST = ("cluster_mode", "multinode")


def pytest_collection_modifyitems(config, items):
    """``cluster_mode`` and ``multinode`` tests last: they shut the shared Ray instance down to
    own the CPUs."""
    items.sort(key=lambda item: any(item.get_closest_marker(m) for m in RUN_LAST))


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


@contextlib.contextmanager
def injected_failure(step: int, rank: int = 1):
    """Rank ``rank`` of the next training raises once at ``step`` (the trainer reads these
    variables on the driver; they are not config, so no recipe can carry them)."""
    from pipelines.train.loop import FAULT_RANK_ENV, FAULT_STEP_ENV

    saved = {k: os.environ.get(k) for k in (FAULT_STEP_ENV, FAULT_RANK_ENV)}
    os.environ.update({FAULT_STEP_ENV: str(step), FAULT_RANK_ENV: str(rank)})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def synthetic_shards(ray_local, tmp_path_factory):
    """The synthetic temporal dataset (8 classes, 48 train / 24 val clips) as shards."""
    from pipelines.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess
    from pipelines.synthetic import SyntheticConfig, write_dataset

    root = tmp_path_factory.mktemp("synthetic")
    csv_path = write_dataset(SyntheticConfig(**TINY_SYNTHETIC), root / "videos", workers=2)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(
        PreprocessConfig, os.path.join(repo, "jobs/configs/preprocess/synthetic.yaml"), flags={
        "annotations": [str(csv_path)], "videos": str(root / "videos"),
        "output": str(root / "shards"), "media": {"short_side": 32},
        "sharding": {"videos_per_shard": 8}})
    summary = run_preprocess(cfg)
    assert summary.ok and summary.stored == 72
    return root / "shards"


@pytest.fixture(scope="session")
def trained(ray_local, synthetic_shards, tmp_path_factory):
    """A tiny TSI (ZeRO-2, tracked and registered in MLflow) and a tiny TSN (ZeRO-1, a jsonl log),
    2 workers each. (A worker's failure and Ray Train's restart are the S3 run's, in
    tests/integration/test_train_object_store.py: one restart fewer here.)

    One after the other: run at the same time on 2 cores they took longer (121 s vs 112 s).
    """
    from pipelines.config import load_config
    from pipelines.tracking import make_tracking
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import run_training

    storage = tmp_path_factory.mktemp("runs")
    # TSI is tracked in MLflow (the embedded sqlite store under the run storage) and registered
    tsi_cfg = load_config(TrainConfig, None, tiny_train_overrides(synthetic_shards, storage, **{
        "model.name": "tsi_r50", "run.name": "tiny-tsi",
        "deepspeed.zero_stage": 2, "task": "tsi-tiny", "tracking.backend": "mlflow",
        "tracking.backoff_s": 0.5}))
    tsi = run_training(tsi_cfg, tracking=make_tracking(tsi_cfg))
    tsn = run_training(load_config(TrainConfig, None, tiny_train_overrides(
        synthetic_shards, storage, **{
            "model.name": "tsn_r50", "run.name": "tiny-tsn", "deepspeed.zero_stage": 1})))
    return {"tsi": tsi, "tsn": tsn, "storage": storage, "shards": synthetic_shards}


@pytest.fixture(scope="session")
def s3_server():
    """``moto_server`` (a real S3-compatible server) on a free 127.0.0.1 port for the session,
    with the AWS environment pointing at it; buckets are each test module's own."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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


@pytest.fixture(scope="session")
def colour_models(ray_local, tmp_path_factory):
    """Models of clearly different skill on held-out videos, registered in their own sqlite store.

    The colour dataset (4 classes, 32 train / 24 val clips) is learnt to top-1 1.0 by a tiny TSN
    in 20 in-process steps (~15 s); ``broken`` is that export with every tensor's values shuffled
    (the nightly alarm's deliberately broken model); ``twin`` the same weights under another run
    name (a different file, an indistinguishable model); ``relabelled`` the good model with its
    class list in another order. All but the good one are exports registered as further versions
    of ``ops-colour-candidates``; the tests name versions explicitly.
    """
    import torch

    from colour_videos import write_colour_dataset
    from pipelines.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess
    from pipelines.tracking import make_tracking
    from pipelines.tracking.connection import resolve_store
    from pipelines.tracking.publish import publish_export
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import run_training
    from tsi_model.weights import CHECKPOINT_FORMAT, read_state_dict

    root = tmp_path_factory.mktemp("colour")
    csv_path = write_colour_dataset(root / "videos", {"train": 8, "val": 6})
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    summary = run_preprocess(load_config(
        PreprocessConfig, os.path.join(repo, "jobs/configs/preprocess/synthetic.yaml"), flags={
            "annotations": [str(csv_path)], "videos": str(root / "videos"),
            "output": str(root / "shards"), "media": {"short_side": 32},
            "sharding": {"videos_per_shard": 8}}))
    assert summary.ok and summary.stored == 56
    storage = root / "runs"
    cfg = load_config(TrainConfig, None, tiny_train_overrides(root / "shards", storage, **{
        "model.name": "tsn_r50", "scaling.num_workers": 0, "epochs": 5, "batches_per_epoch": 4,
        "run.name": "colour-good", "task": "ops-colour", "tracking.backend": "mlflow",
        "tracking.backoff_s": 0.5}))
    good = run_training(cfg, tracking=make_tracking(cfg))
    store = resolve_store(cfg.tracking, str(storage))

    def variant(name: str, change) -> str:
        state, meta = read_state_dict(good.export_path)
        state, meta = change(dict(state), {**meta, "run_name": name})
        path = storage / name / "model.pt"
        path.parent.mkdir(parents=True)
        torch.save({"format": CHECKPOINT_FORMAT, **meta, "state_dict": state}, path)
        return str(path)

    generator = torch.Generator().manual_seed(0)

    def shuffled(state, meta):
        return ({k: v.flatten()[torch.randperm(v.numel(), generator=generator)].view_as(v)
                 if v.is_floating_point() else v for k, v in state.items()}, meta)

    versions = {"good": "1"}
    exports = {"good": good.export_path}
    def relabelled(state, meta):
        hashes = {**meta["dataset_hashes"], "classes": "another class map"}
        return state, {**meta, "classes": meta["classes"][::-1], "dataset_hashes": hashes}

    for name, change in (("broken", shuffled), ("twin", lambda s, m: (s, m)),
                         ("relabelled", relabelled)):
        exports[name] = variant(f"colour-{name}", change)
        versions[name] = str(publish_export(store, exports[name], retries=1).version)
    return {"shards": root / "shards", "storage": storage, "uri": store.uri, "task": "ops-colour",
            "versions": versions, "exports": exports, "videos": root / "videos",
            "good_top1": good.metrics.get("val_top1")}
