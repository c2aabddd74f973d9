"""MLflow's state survives a lost database: backup, drop, restore, read back (item D of issue 20).

A real PostgreSQL (Debian's package, installed by scripts/setup.sh; started here on 127.0.0.1 in a
temporary folder, as the ``postgres`` user when run as root) backs a real ``mlflow server``. Runs,
a registered model with versions and aliases are created through the server; then the same
script the nightly CronJob runs (infra/k8s/mlflow/pg_backup.py) backs both databases up, the
databases are dropped, the restore command recreates them, and a fresh server reads everything
back. Skipped only where PostgreSQL is not installed, never when ``CI`` is set.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "k8s" / "mlflow" / "pg_backup.py"
PASSWORD = "backup-test-pw"
DATABASES = ("mlflow", "mlflow_auth")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root: drop to the package's ``postgres`` user when root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def postgres():
    bin_dir = _pg_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    # its own folder under /tmp: pytest's is private to root, which the postgres user cannot enter
    folder = Path(tempfile.mkdtemp(prefix="tsi-pg-"))
    data, sock_dir = folder / "data", folder / "sock"
    sock_dir.mkdir()
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        for p in (sock_dir, pwfile):
            shutil.chown(p, "postgres")
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow",
                                 "--pwfile", str(pwfile), "--auth=scram-sha-256",
                                 "-E", "UTF8", "--locale=C"]),
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = folder / "server.log"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                                 "-o", f"-h 127.0.0.1 -p {port} -k {sock_dir} -c fsync=off",
                                 "start"]), check=True, capture_output=True, timeout=120)
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "mlflow",
           "PGPASSWORD": PASSWORD, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    try:
        for db in DATABASES:
            _psql(env, "postgres", f"CREATE DATABASE {db};")
        yield env
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def _psql(env: dict, db: str, sql: str) -> str:
    proc = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", db,
                           "-c", sql], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class MlflowServer:
    """``mlflow server`` on the Postgres database, in its own session (stopped by its pid)."""

    def __init__(self, env: dict, artifacts: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        uri = f"postgresql+psycopg2://mlflow:{PASSWORD}@127.0.0.1:{env['PGPORT']}/mlflow"
        self.log = open(artifacts.parent / f"mlflow-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--backend-store-uri", uri,
             "--artifacts-destination", str(artifacts), "--serve-artifacts"],
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(Path(self.log.name).read_text()[-3000:])
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def _state(client, model: str) -> dict:
    """Everything the test compares: runs with params and metrics, versions, aliases."""
    [exp] = [e for e in client.search_experiments() if e.name == "backup-test"]
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.run_name"])
    versions = client.search_model_versions(f"name='{model}'")
    registered = client.get_registered_model(model)
    return {
        "runs": [(r.info.run_id, r.info.run_name, r.data.params, r.data.metrics) for r in runs],
        "versions": sorted((v.version, v.run_id) for v in versions),
        "aliases": dict(registered.aliases),
    }


def _script(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_backup_drop_restore_brings_back_runs_versions_and_aliases(postgres, tmp_path):
    from mlflow.tracking import MlflowClient

    env = postgres
    _psql(env, "mlflow_auth", "CREATE TABLE users (name text); INSERT INTO users VALUES ('a');")
    server = MlflowServer(env, tmp_path / "artifacts")
    try:
        client = MlflowClient(server.url)
        exp = client.create_experiment("backup-test")
        model = "tsi-backup-test"
        client.create_registered_model(model)
        for i, name in enumerate(("run-a", "run-b")):
            run = client.create_run(exp, run_name=name)
            client.log_param(run.info.run_id, "lr", str(0.01 * (i + 1)))
            client.log_metric(run.info.run_id, "top1", 0.5 + i / 10, step=i)
            client.set_terminated(run.info.run_id)
            client.create_model_version(model, f"runs:/{run.info.run_id}/model",
                                        run_id=run.info.run_id)
        client.set_registered_model_alias(model, "champion", "1")
        client.set_registered_model_alias(model, "candidate", "2")
        before = _state(client, model)
    finally:
        server.stop()
    assert len(before["runs"]) == 2 and before["aliases"] == {"champion": "1", "candidate": "2"}

    backups = tmp_path / "backups"
    done = _script(env, "backup", "--dest", str(backups))
    assert done.returncode == 0, done.stderr
    [folder] = list(backups.iterdir())
    assert {p.name for p in folder.iterdir()} == {"mlflow.dump", "mlflow_auth.dump", "SHA256SUMS"}

    for db in DATABASES:
        _psql(env, "postgres", f"DROP DATABASE {db} WITH (FORCE);")
    assert _psql(env, "postgres",
                 "SELECT count(*) FROM pg_database WHERE datname LIKE 'mlflow%'") == "0"

    # a corrupted dump is refused before anything is restored
    bad = tmp_path / "bad" / folder.name
    shutil.copytree(folder, bad)
    with (bad / "mlflow.dump").open("ab") as f:
        f.write(b"x")
    refused = _script(env, "restore", "--source", str(bad))
    assert refused.returncode == 1 and "sha256 differs" in refused.stderr, refused.stderr
    assert _psql(env, "postgres",
                 "SELECT count(*) FROM pg_database WHERE datname = 'mlflow'") == "0"

    restored = _script(env, "restore", "--source", str(backups))  # the parent: newest backup
    assert restored.returncode == 0, restored.stderr
    assert _psql(env, "mlflow_auth", "SELECT name FROM users") == "a"

    server = MlflowServer(env, tmp_path / "artifacts")
    try:
        after = _state(MlflowClient(server.url), model)
    finally:
        server.stop()
    assert after == before
