"""Against a real ``mlflow server --app-name basic-auth``: the training identity registers
candidates but cannot move ``champion``; the promotion identity can; anonymous can do neither."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def auth_server(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret-1"}
    folder = tmp_path / "server"
    start = subprocess.run([str(REPO / "infra/local/start_mlflow_server.sh"), "--port", str(port),
                            "--dir", str(folder), "--timeout", "150", "--basic-auth"], env=env,
                           capture_output=True, text=True, timeout=200)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([str(REPO / "infra/local/stop_mlflow_server.sh"), "--dir", str(folder)],
                       env=env, capture_output=True, timeout=60)


def _as(monkeypatch, user: str | None, password: str | None = None) -> None:
    for key, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def test_only_the_promoter_can_move_champion(auth_server, monkeypatch, capsys):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from jobs.grant_access import main

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("TSI_TRAINER_PASSWORD", "trainer-secret-1")
    monkeypatch.setenv("TSI_PROMOTER_PASSWORD", "promoter-secret-1")
    _as(monkeypatch, "admin", "admin-secret-1")
    assert main(["--tracking-uri", auth_server, "--task", "tsi-auth"]) == 0, capsys.readouterr()
    client = MlflowClient(auth_server)

    _as(monkeypatch, "tsi-trainer", "trainer-secret-1")  # trains, logs, registers a candidate
    experiment = client.create_experiment("tsi-auth")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "weights", "model/model.pt")
    version = client.create_model_version("tsi-auth-candidates", f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    client.set_registered_model_alias("tsi-auth-candidates", "candidate", version.version)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
        client.copy_model_version(f"models:/tsi-auth-candidates/{version.version}", "tsi-auth")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|already exists"):
        client.create_registered_model("tsi-auth")  # nor take the production model over

    _as(monkeypatch, "tsi-promoter", "promoter-secret-1")  # copies and moves champion
    copied = client.copy_model_version(f"models:/tsi-auth-candidates/{version.version}",
                                       "tsi-auth")
    client.set_registered_model_alias("tsi-auth", "champion", copied.version)
    client.set_model_version_tag("tsi-auth-candidates", version.version,
                                 "tsi.promotion.decision", "pass")

    _as(monkeypatch, "tsi-trainer", "trainer-secret-1")
    assert client.get_model_version_by_alias("tsi-auth", "champion").version == copied.version
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
        client.set_registered_model_alias("tsi-auth", "champion", copied.version)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
        client.delete_registered_model_alias("tsi-auth", "champion")

    _as(monkeypatch, None)  # anonymous: neither reads the registry nor writes it
    with pytest.raises(MlflowException, match="401|nauthorized|credentials"):
        client.get_model_version_by_alias("tsi-auth", "champion")
    with pytest.raises(MlflowException, match="401|nauthorized|credentials"):
        client.set_registered_model_alias("tsi-auth", "champion", copied.version)
    _as(monkeypatch, "tsi-trainer", "wrong-password")
    with pytest.raises(MlflowException, match="401|nauthorized|credentials"):
        client.search_registered_models()
