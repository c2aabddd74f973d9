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
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[1]
START = REPO / "infra" / "local" / "start_ray_head.sh"
STOP = REPO / "infra" / "local" / "stop_ray_head.sh"
BIN = Path(sys.executable).parent
# The documented command's excludes (infra/local/README.md). Anchored with "/": a bare "data"
# would also drop pipelines/data/ (gitwildmatch matches a bare name at any depth).
EXCLUDES = ["/.venv", "/data", "/runs", "/mlruns", "/.git"]
JOB_TIMEOUT_S = 150


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))  # all interfaces: Ray's gRPC servers listen on every address
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Head:
    """A Ray head of this test: ports, temp dir, and the environment every client needs."""

    def __init__(self) -> None:
        # Short path: Ray's unix sockets live under it and must stay below 107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
        (self.port, self.dashboard_port, self.client_port, *self.agent_ports) = _free_ports(9)
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.token = secrets.token_hex(32)  # own token: ~/.ray/auth_token is left alone
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(BIN.parent),
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_USAGE_STATS_ENABLED="0",
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
        )
        self.env = env
        self.pid: int | None = None

    def start(self) -> None:
        agent_listen, agent_grpc, metrics, runtime_env_agent, node_manager, object_manager = (
            self.agent_ports)
        cmd = [
            "bash", str(START), "--port", str(self.port),
            "--dashboard-port", str(self.dashboard_port), "--client-port", str(self.client_port),
            "--num-cpus", "2", "--temp-dir", str(self.temp_dir), "--timeout", "60", "--",
            # fixed defaults (e.g. the agent's 52365) would collide with other local Ray instances
            "--dashboard-agent-listen-port", str(agent_listen),
            "--dashboard-agent-grpc-port", str(agent_grpc),
            "--metrics-export-port", str(metrics),
            "--runtime-env-agent-port", str(runtime_env_agent),
            "--node-manager-port", str(node_manager),
            "--object-manager-port", str(object_manager),
        ]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=90)
        pid_file = self.temp_dir / "head.pid"
        if pid_file.exists():
            self.pid = int(pid_file.read_text())
        assert proc.returncode == 0, f"start_ray_head.sh failed:\n{proc.stdout}\n{proc.stderr}"
        assert f"RAY_API_SERVER_ADDRESS={self.dashboard}" in proc.stdout, proc.stdout

    def ray(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    def get(self, path: str, *, token: str | None) -> dict:
        req = urllib.request.Request(self.dashboard + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> list[str]:
        """Stop through the script, then kill and report whatever of this head survived."""
        import psutil

        tracked: list[psutil.Process] = []
        if self.pid is not None:
            for p in psutil.process_iter():
                try:
                    if p.pid == self.pid or os.getsid(p.pid) == self.pid:
                        tracked.append(p)
                except (psutil.Error, OSError):
                    pass
            try:
                tracked += psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                pass
        subprocess.run(["bash", str(STOP), "--temp-dir", str(self.temp_dir), "--timeout", "30"],
                       env=self.env, capture_output=True, text=True, timeout=90)
        _, alive = psutil.wait_procs(set(tracked), timeout=5)
        leaked = []
        for p in alive:
            try:
                leaked.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        return leaked


@pytest.fixture
def ray_head():
    head = Head()
    try:
        head.start()
        yield head
    finally:
        leaked = head.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)
        assert not leaked, f"processes of the Ray head survived stop_ray_head.sh: {leaked}"


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
