"""A Ray head of a test module, started and stopped with infra/local's scripts (the tests of
``ray job submit``: tests/integration/test_cluster_mode.py and test_node_failure.py).

Own ports, temp dir and token, so it never touches the session's ``ray_local`` or
``~/.ray/auth_token``; stopped by its own process id/session, never with ``ray stop``.
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
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = REPO / "infra" / "local" / "start_ray_head.sh"
STOP = REPO / "infra" / "local" / "stop_ray_head.sh"
BIN = Path(sys.executable).parent
# The documented command's excludes (infra/local/README.md). Anchored with "/": a bare "data"
# would also drop pipelines/data/ (gitwildmatch matches a bare name at any depth).
EXCLUDES = ["/.venv", "/data", "/runs", "/mlruns", "/.git"]
NODE_LABEL = "tsi-test-node"  # a worker node's own name (its temp dir) among the nodes' labels


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

    def __init__(self, *, num_cpus: int = 2,
                 extra_env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
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
        env.update(extra_env or {})
        self.env = env
        self.pid: int | None = None

    def start(self) -> None:
        agent_listen, agent_grpc, metrics, runtime_env_agent, node_manager, object_manager = (
            self.agent_ports)
        cmd = [
            "bash", str(START), "--port", str(self.port),
            "--dashboard-port", str(self.dashboard_port), "--client-port", str(self.client_port),
            "--num-cpus", str(self.num_cpus), "--temp-dir", str(self.temp_dir),
            "--timeout", "60", "--",
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
        return _kill_survivors(alive)


    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes as the dashboard's state API lists them."""
        reply = self.get("/api/v0/nodes?detail=1&limit=100", token=self.token)
        return [n for n in reply["data"]["result"]["result"] if n["state"] == "ALIVE"]


def _session_processes(leader: int) -> list:
    """Every process of the session ``leader`` started (setsid) and their descendants."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == leader:
                found[p.pid] = p
        except (psutil.Error, OSError):
            pass
    for p in list(found.values()):
        try:
            found.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return list(found.values())


class WorkerNode:
    """A worker node of a ``Head``: ``ray start --address --block`` in its own session, with its
    own temp dir, ports and CPUs. ``kill()`` is a node failure (SIGKILL to its raylet, then to
    every worker of the node, by pid); ``stop()`` a clean shutdown."""

    def __init__(self, head: Head, *, num_cpus: int = 1) -> None:
        self.head = head
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))
        self.num_cpus = num_cpus
        self.proc: subprocess.Popen | None = None

    def launch(self) -> None:
        """Start ``ray start``; ``wait_joined`` waits for the node to be alive in the cluster."""
        (agent_listen, agent_grpc, metrics, runtime_env_agent, node_manager,
         object_manager) = _free_ports(6)
        cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
               "--address", f"127.0.0.1:{self.head.port}",
               "--num-cpus", str(self.num_cpus), "--temp-dir", str(self.temp_dir),
               "--labels", json.dumps({NODE_LABEL: self.temp_dir.name}),
               "--dashboard-agent-listen-port", str(agent_listen),
               "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics),
               "--runtime-env-agent-port", str(runtime_env_agent),
               "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager)]
        log = open(self.temp_dir / "node.log", "w")  # noqa: SIM115 (the node's lifetime)
        self.proc = subprocess.Popen(cmd, env=self.head.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
        log.close()

    def wait_joined(self, timeout: float = 90) -> None:
        import time

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.node_id:
            assert self.proc.poll() is None, (self.temp_dir / "node.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker node did not join in time"
            new = [n for n in self.head.alive_nodes()
                   if (n.get("labels") or {}).get(NODE_LABEL) == self.temp_dir.name]
            if new:
                self.node_id = new[0]["node_id"]
            else:
                time.sleep(1)

    node_id: str | None = None

    def start(self, timeout: float = 90) -> None:
        self.launch()
        self.wait_joined(timeout)

    def raylet_pid(self) -> int:
        """The node's raylet: the process of this node's session that runs Ray's raylet binary
        (found through the session this node's ``ray start`` leads, not by name machine-wide)."""
        assert self.proc is not None
        for p in _session_processes(self.proc.pid):
            try:
                if Path(p.exe()).name == "raylet":
                    return p.pid
            except Exception:  # noqa: BLE001 - a process that just ended
                pass
        raise AssertionError(f"no raylet among the processes of node {self.node_id}")

    def kill(self) -> list[int]:
        """A node failure: SIGKILL to the raylet, then to every process of the node."""
        import psutil

        assert self.proc is not None
        raylet = psutil.Process(self.raylet_pid())
        members = _session_processes(self.proc.pid)
        raylet.kill()
        for p in members:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(members, timeout=10)
        self.proc.wait(timeout=10)
        return [p.pid for p in members]

    def stop(self) -> list[str]:
        """SIGTERM to ``ray start --block`` (it stops its node), then SIGKILL what survives."""
        import psutil

        if self.proc is None:
            return []
        members = _session_processes(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
        _, alive = psutil.wait_procs(members, timeout=20)
        leaked = _kill_survivors(alive)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leaked


@contextmanager
def running_head() -> Iterator[Head]:
    """A started head; on exit it is stopped and nothing of it may survive."""
    head = Head()
    try:
        head.start()
        yield head
    finally:
        leaked = head.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)
        assert not leaked, f"processes of the Ray head survived stop_ray_head.sh: {leaked}"


def _kill_survivors(alive) -> list[str]:
    """SIGKILL processes that outlived a stop; what they were, for the test's leak assertion."""
    import psutil

    leaked = []
    for p in alive:
        try:
            leaked.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return leaked
