"""Node failures on a real multi-node Ray cluster on this machine.

One cluster for the module: a head from infra/local (0 CPUs: the job drivers run there, no task or
Ray Train worker) and worker nodes of 1 CPU each (``ray start --address --block``, own temp dir
and ports), everything submitted with the real ``ray job submit --working-dir .``, shards and run
storage in the session's S3 server, tracking to the session's MLflow server. A node failure is a
SIGKILL to the worker node's raylet and then to each of its workers, by pid; a replacement node
joins with ``ray start --address``. Real processes, no mocks.

Runs last with the ``cluster_mode`` tests (conftest): the session's Ray instance is shut down
first so that the nodes have the machine's CPUs.
"""
from __future__ import annotations

import csv
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray_head import EXCLUDES, REPO, Head, WorkerNode

pytestmark = [pytest.mark.slow, pytest.mark.multinode, pytest.mark.timeout(600)]

BUCKET = "tsi-nodes"
JOB_TIMEOUT_S = 240
# A killed node is declared dead after ~5 s instead of Ray's default ~30 s: its raylet refuses
# health checks at once; the check's timeout stays the default, so a busy live node stays alive.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000",
                   "RAY_health_check_failure_threshold": "5"}


class Cluster:
    """The module's head and the worker nodes started on it (killed ones included)."""

    def __init__(self, head: Head) -> None:
        self.head = head
        self.nodes: list[WorkerNode] = []
        self.killed: list[WorkerNode] = []
        self.head_node_id = ""

    def add_nodes(self, count: int) -> list[WorkerNode]:
        new = [WorkerNode(self.head) for _ in range(count)]
        self.nodes += new
        for node in new:
            node.launch()
        for node in new:
            node.wait_joined()
        return new

    def actor_nodes(self, class_name: str) -> dict[int, str]:
        """The live actors of a class: pid -> node id (the dashboard's state API)."""
        reply = self.head.get(f"/api/v0/actors?detail=1&limit=1000&filter_keys=class_name"
                              f"&filter_predicates=%3D&filter_values={class_name}",
                              token=self.head.token)
        return {a["pid"]: a["node_id"] for a in reply["data"]["result"]["result"]
                if a["state"] == "ALIVE"}

    def kill_node(self, node_id: str | None = None) -> WorkerNode:
        """A worker node fails: its raylet and workers are SIGKILLed; waits until Ray knows."""
        node = next(n for n in self.nodes if n not in self.killed
                    and node_id in (None, n.node_id))
        node.kill()
        self.killed.append(node)
        deadline = time.monotonic() + 60
        while node.node_id in {n["node_id"] for n in self.head.alive_nodes()}:
            assert time.monotonic() < deadline, "the killed node is still alive for Ray"
            time.sleep(0.5)
        return node

    def submit(self, submission_id: str, entrypoint: list[str], env: dict[str, str]) -> None:
        proc = self.head.ray(
            "job", "submit", "--no-wait", "--address", self.head.dashboard, "--submission-id",
            submission_id, "--working-dir", str(REPO), "--runtime-env-json",
            json.dumps({"excludes": EXCLUDES, "env_vars": env}), "--", *entrypoint, timeout=120)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    def job(self, submission_id: str) -> dict:
        return self.head.get(f"/api/jobs/{submission_id}", token=self.head.token)

    def logs(self, submission_id: str) -> str:
        return self.head.get(f"/api/jobs/{submission_id}/logs", token=self.head.token)["logs"]

    def wait_job(self, submission_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """The job's final status, once it has one."""
        deadline = time.monotonic() + timeout
        while (status := self.job(submission_id)["status"]) in ("PENDING", "RUNNING"):
            if time.monotonic() > deadline:
                pytest.fail(f"{submission_id} still {status} after {timeout}s:\n"
                            f"{self.logs(submission_id)[-4000:]}")
            time.sleep(1)
        return status


def _wait_for(condition: Callable[[], object], what: str, cluster: Cluster, job: str,
              timeout: float = JOB_TIMEOUT_S, poll_s: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        status = cluster.job(job)["status"]
        if status not in ("PENDING", "RUNNING") or time.monotonic() > deadline:
            pytest.fail(f"{job} is {status} before {what}:\n{cluster.logs(job)[-4000:]}")
        time.sleep(poll_s)
    return found


@pytest.fixture(scope="module")
def bucket(s3_server, synthetic_shards, tmp_path_factory):
    """The session's tiny shards and pretrained weights of the tiny shape in the module's bucket."""
    import boto3

    from pipelines.io import Storage
    from pipelines.train.weights import sha256_file
    from tsi_model import get_model, save_checkpoint

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
    s3 = Storage.open(f"s3://{BUCKET}").fs
    pafs.copy_files(str(synthetic_shards), f"{BUCKET}/shards",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
    options = {"num_classes": 8, "num_frames": 4, "width": 16, "layers": (1, 1, 1, 1)}
    weights = tmp_path_factory.mktemp("weights") / "tsn-tiny.pt"
    save_checkpoint(get_model("tsn_r50", **options), weights, model_name="tsn_r50",
                    options=options)
    pafs.copy_files(str(weights), f"{BUCKET}/weights/tsn-tiny.pt",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
    return {"shards": f"s3://{BUCKET}/shards", "weights": f"s3://{BUCKET}/weights/tsn-tiny.pt",
            "sha256": sha256_file(weights)}


@pytest.fixture(scope="module")
def cluster(bucket) -> Iterator[Cluster]:
    """Head (0 CPUs) + 2 worker nodes of 1 CPU; every node is stopped after the module, and
    none of their processes may survive."""
    import ray

    if ray.is_initialized():  # the session's ray_local: nothing after this module needs it
        ray.shutdown()
    head = Head(num_cpus=0, extra_env=FAST_NODE_DEATH)  # os.environ has the S3 variables
    cluster = Cluster(head)
    leaked: list[str] = []
    try:
        head.start()
        [cluster.head_node_id] = [n["node_id"] for n in head.alive_nodes()]
        cluster.add_nodes(2)
        yield cluster
    finally:
        for node in cluster.nodes:
            leaked += node.stop()
        leaked += head.stop()
        import shutil

        shutil.rmtree(head.temp_dir, ignore_errors=True)
    assert not leaked, f"processes of the cluster survived its stop: {leaked}"


def _s3():
    from pipelines.io import Storage

    return Storage.open(f"s3://{BUCKET}")


def test_training_survives_a_worker_node_killed_mid_epoch(cluster: Cluster, bucket,
                                                          mlflow_server, tmp_path: Path):
    from mlflow import MlflowClient

    from pipelines.io import Storage, storage_env

    name = f"node-kill-{secrets.token_hex(3)}"
    # ~3-8 s an epoch here. The kill comes as soon as epoch 1 is checkpointed and logged, so it
    # lands in epoch 2 (3 epochs leave room for a slow poll: any epoch before the last will do).
    epochs, steps_per_epoch = 3, 20
    # The paper's Kinetics-400 TSN recipe as a cluster runs it; only scale, data, weights and
    # stores are overridden (scale: a tiny network on 32x32 clips, 2 CPU workers, fp32).
    scale = {"model.width": 16, "model.layers": "[1,1,1,1]", "data.clip.size": 32,
             "data.clip.resize": 32, "data.clip.frames": 4, "data.batch_size": 8,
             "data.eval_batch_size": 8, "data.loader_workers": 1, "data.eval_loader_workers": 1,
             "data.eval_split": "val", "data.final_protocol": "null", "epochs": epochs,
             "batches_per_epoch": steps_per_epoch, "scaling.num_workers": 2,
             "scaling.use_gpu": "false", "scaling.cpus_per_worker": 1,
             "scaling.torch_threads": 1, "deepspeed.precision": "fp32"}
    where = {"data.root": bucket["shards"], "run.storage_path": f"s3://{BUCKET}/runs",
             "run.name": name, "task": name, "model.pretrained": bucket["weights"],
             "model.pretrained_sha256": bucket["sha256"], "tracking.uri": mlflow_server["url"]}
    cluster.submit(name, ["python", "-m", "jobs.train", "--config",
                          "jobs/configs/train/kinetics400_tsn_8f.yaml",
                          *[f"{k}={v}" for k, v in {**scale, **where}.items()]],
                   env={**storage_env(), "MLFLOW_TRACKING_URI": mlflow_server["url"]})

    client = MlflowClient(mlflow_server["url"])
    run_folder = Storage.open(f"s3://{BUCKET}/runs/{name}")

    def runs():
        experiment = client.get_experiment_by_name(name)
        return [] if experiment is None else client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`tsi.run_name` = '{name}'")

    def two_workers() -> dict[int, str]:
        workers = cluster.actor_nodes("RayTrainWorker")
        return workers if len(workers) == 2 else {}

    def checkpointed_epochs() -> list[int]:
        return sorted(json.loads(run_folder.read_bytes(f))["epoch"]
                      for f in run_folder.list_files() if f.endswith("tsi_state.json"))

    # Where the workers run is read during epoch 1: the state API is too slow to ask after it.
    workers = _wait_for(two_workers, "2 Ray Train workers were alive", cluster, name)
    assert cluster.head_node_id not in workers.values(), workers
    [run_id] = _wait_for(lambda: [r.info.run_id for r in runs()], "the run was created",
                         cluster, name)
    # metrics are logged after their checkpoint: once epoch 1's loss is there, so is its state
    _wait_for(lambda: client.get_metric_history(run_id, "train_loss"), "epoch 1 was logged",
              cluster, name, poll_s=0.05)
    killed = cluster.kill_node(next(iter(workers.values())))
    kept = checkpointed_epochs()
    assert kept and kept[-1] < epochs, f"checkpoints {kept}: training ended before the kill"
    [replacement] = cluster.add_nodes(1)

    status = cluster.wait_job(name)
    log = cluster.logs(name)
    (tmp_path / "job.log").write_text(log)
    assert status == "SUCCEEDED", log[-6000:]
    restored = kept[-1]  # Ray Train restores the last checkpoint written before the kill
    assert f"resuming {name} at epoch {restored}, step {steps_per_epoch * restored}" in log, \
        log[-6000:]
    [run] = runs()  # one MLflow run across the restart
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    steps = [m.step for m in sorted(history, key=lambda m: m.timestamp)]
    # each epoch logged once, the global step continuing after the restore
    assert steps == [steps_per_epoch * e for e in range(1, epochs + 1)], steps
    assert checkpointed_epochs()[-1] == epochs
    assert run_folder.exists("model.pt") and run_folder.exists("model.pt.sha256")
    print(f"killed node {killed.node_id[:8]} after checkpoints {kept}, replacement "
          f"{replacement.node_id[:8]}")


def test_preprocessing_survives_a_worker_node_killed_mid_run(cluster: Cluster, tmp_path: Path):
    import pyarrow.parquet as pq

    from pipelines.io import storage_env
    from pipelines.synthetic import SyntheticConfig, write_dataset

    csv_path = write_dataset(SyntheticConfig(num_pairs=2, splits=("train",),
                                             videos_per_class=(6,), height=32, width=32,
                                             num_frames=8), tmp_path / "videos", workers=2)
    with open(csv_path, newline="") as f:
        # an input's video id as Kinetics names it: {youtube_id}_{start:06d}_{end:06d}
        inputs = sorted(f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}"
                        for r in csv.DictReader(f))
    output = f"{BUCKET}/prep-{secrets.token_hex(3)}"
    command = ["python", "-m", "jobs.preprocess", "--config",
               "jobs/configs/preprocess/synthetic.yaml", "--annotations", str(csv_path),
               "--videos", str(tmp_path / "videos"), "--output", f"s3://{output}",
               "--workers", "2", "media.short_side=32", "media.min_frames=4",
               "sharding.videos_per_shard=2"]
    job = f"prep-kill-{secrets.token_hex(3)}"
    cluster.submit(job, command, env=storage_env())
    s3 = _s3().fs

    def shards_written() -> list[str]:
        listed = s3.get_file_info(pafs.FileSelector(f"{output}/train", allow_not_found=True))
        return [i.path for i in listed if i.path.endswith(".tar")]

    _wait_for(shards_written, "a shard was written", cluster, job)
    cluster.kill_node()
    written = len(shards_written())
    assert written < len(inputs) // 2, "the node was killed after preprocessing was done"
    cluster.add_nodes(1)

    status = cluster.wait_job(job)
    resubmitted = status != "SUCCEEDED"
    if resubmitted:  # exit 1 "some shard failed": the documented re-run resumes
        assert cluster.job(job)["status"] == "FAILED", cluster.logs(job)[-4000:]
        cluster.submit(f"{job}-rerun", command, env=storage_env())
        status = cluster.wait_job(f"{job}-rerun")
    assert status == "SUCCEEDED", cluster.logs(job)[-4000:]

    with s3.open_input_file(f"{output}/train/manifest.parquet") as f:
        rows = pq.read_table(f).to_pylist()
    assert sorted(r["video_id"] for r in rows) == inputs  # every input exactly once
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    assert len(shards_written()) == len(inputs) // 2
    print(f"preprocessing: node killed after {written} of {len(inputs) // 2} shards, "
          f"re-submitted: {resubmitted}")
