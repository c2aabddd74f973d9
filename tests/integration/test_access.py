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
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret-1"}
    folder = tmp_path_factory.mktemp("auth") / "server"
    start = subprocess.run([str(REPO / "infra/local/start_mlflow_server.sh"), "--port", str(port),
                            "--dir", str(folder), "--timeout", "150", "--basic-auth"], env=env,
                           capture_output=True, text=True, timeout=200)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield {"url": f"http://127.0.0.1:{port}", "dir": folder}
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
    auth_server = auth_server["url"]
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
    experiment = client.get_experiment_by_name("tsi-auth").experiment_id  # grant_access made it
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "weights", "model/model.pt")
    version = client.create_model_version("tsi-auth-candidates", f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    client.set_registered_model_alias("tsi-auth-candidates", "candidate", version.version)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
        client.copy_model_version(f"models:/tsi-auth-candidates/{version.version}", "tsi-auth")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|already exists"):
        client.create_registered_model("tsi-auth")  # nor take the production model over

    _as(monkeypatch, "tsi-promoter", "promoter-secret-1")  # builds its own version, moves champion
    own = client.create_run(client.get_experiment_by_name("tsi-auth-promotion").experiment_id)
    client.log_text(own.info.run_id, "weights", "model/model.pt")
    copied = client.create_model_version("tsi-auth", f"{own.info.artifact_uri}/model",
                                         run_id=own.info.run_id)
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


TRAINER, PROMOTER = ("tsi-trainer", "trainer-secret-1"), ("tsi-promoter", "promoter-secret-1")


def test_served_files_are_the_promoters_and_every_consumer_verifies_them(
        auth_server, colour_models, monkeypatch, capsys, tmp_path):
    """Issue 19 A, B, F end to end: the trainer registers and evaluates, the promoter promotes,
    rolls back and runs a nightly, all with the permissions jobs.grant_access sets (no 403)."""
    import json

    import requests
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from jobs.evaluate import main as evaluate
    from jobs.grant_access import main as grant
    from jobs.nightly_eval import main as nightly
    from jobs.predict import main as predict
    from jobs.promote import main as promote
    from pipelines.tracking.models import load_served
    from pipelines.tracking.connection import Store
    from pipelines.tracking.publish import publish_export
    from pipelines.tracking.served import MANIFEST_TAG, ServedModelTampered

    url, world, task = auth_server["url"], colour_models, "ops-colour"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("TSI_TRAINER_PASSWORD", TRAINER[1])
    monkeypatch.setenv("TSI_PROMOTER_PASSWORD", PROMOTER[1])
    _as(monkeypatch, "admin", "admin-secret-1")
    assert grant(["--tracking-uri", url, "--task", task]) == 0, capsys.readouterr()
    client = MlflowClient(url)
    data = ["--tracking-uri", url, "--data", str(world["shards"]), "eval.parts=1"]

    _as(monkeypatch, *TRAINER)  # a training run, registrations, then an evaluation: no 403
    from conftest import tiny_train_overrides
    from jobs.train import main as train

    assert train(tiny_train_overrides(world["shards"], tmp_path / "runs", **{
        "model.name": "tsn_r50", "scaling.num_workers": 0, "epochs": 1, "batches_per_epoch": 2,
        "run.name": "as-the-trainer", "task": task, "tracking.backend": "mlflow",
        "tracking.uri": url, "tracking.backoff_s": 0.5})) == 0, capsys.readouterr().err
    [trainer_run] = client.search_runs(
        [client.get_experiment_by_name(task).experiment_id],
        filter_string="tags.`tsi.run_name` = 'as-the-trainer'")
    assert trainer_run.info.status == "FINISHED" and "train_loss" in trainer_run.data.metrics
    bad = publish_export(Store(url, None), world["exports"]["broken"], retries=0).version
    good = publish_export(Store(url, None), world["exports"]["good"], retries=0).version
    assert evaluate(["--model", f"models:/{task}-candidates/{good}", *data]) == 0, \
        capsys.readouterr().err

    _as(monkeypatch, *PROMOTER)  # first champion (floor overridden), then the better model
    gate = ["gate.resamples=500"]
    assert promote(["--task", task, "--candidate", f"models:/{task}-candidates/{bad}", *data,
                    *gate, "gate.absolute_floor=0"]) == 0, capsys.readouterr()
    assert promote(["--task", task, *data, *gate]) == 0, capsys.readouterr()  # @candidate: good
    champion = client.get_model_version_by_alias(task, "champion")
    assert champion.version == "2" and len(champion.tags) <= 15
    manifest = json.loads(champion.tags[MANIFEST_TAG])
    assert {"MLmodel", "python_model.py", "artifacts/model.pt"} <= set(manifest) or \
        any(p.endswith("model.pt") for p in manifest), sorted(manifest)[:10]
    capsys.readouterr()

    _as(monkeypatch, *TRAINER)  # every served file and every decision tag is out of reach
    root = client.get_model_version_download_uri(task, champion.version)
    prefix = root.split("mlflow-artifacts:/", 1)[1].strip("/")
    for rel in manifest:
        answer = requests.put(f"{url}/api/2.0/mlflow-artifacts/artifacts/{prefix}/{rel}",
                              data=b"import os  # the trainer's code", auth=TRAINER, timeout=30)
        assert answer.status_code == 403, (rel, answer.status_code)
    for key in (MANIFEST_TAG, "tsi.export_sha256", "tsi.promotion.decision_run"):
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
            client.set_model_version_tag(task, champion.version, key, "forged")
    run_id = champion.tags["tsi.promotion.decision_run"]
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|Permission denied"):
        client.set_tag(run_id, "tsi.promotion.decision", "pass")

    # a file changed on the artifact store behind the server's back: every consumer refuses
    stored = auth_server["dir"] / "artifacts" / prefix
    target = next(p for p in stored.rglob("*.py") if p.name != "__init__.py")
    original = target.read_bytes()
    target.write_bytes(original + b"\nraise SystemExit('trainer code ran')\n")
    video = str(sorted((world["videos"] / "val").glob("*.mp4"))[0])
    try:
        for who, job in ((TRAINER, lambda: evaluate(["--model", f"models:/{task}@champion",
                                                        *data])),
                         (TRAINER, lambda: predict(["--model", f"models:/{task}@champion",
                                                     "--tracking-uri", url, video])),
                         (PROMOTER, lambda: nightly(["--task", task, *data,
                                                     "evaluate_candidate=false"]))):
            _as(monkeypatch, *who)
            code = job()
            err = capsys.readouterr().err
            assert code in (2, 3) and "differ from the sha256 the promoter recorded" in err, err
        with pytest.raises(ServedModelTampered, match=target.name):
            load_served(f"models:/{task}@champion", url)
    finally:
        target.write_bytes(original)
    _as(monkeypatch, *TRAINER)
    served = load_served(f"models:/{task}@champion", url)
    assert served.metadata.get_params_schema() is not None
    answer = served.predict([video], params={"top_k": 2})[0]
    assert answer["error"] is None and len(answer["labels"]) == 2  # top_k honoured as a param

    _as(monkeypatch, *PROMOTER)  # rollback under the promoter's real permissions, and it sticks
    assert promote(["--task", task, "--rollback", "--tracking-uri", url,
                    "--reason", "test"]) == 0, capsys.readouterr().err
    assert client.get_model_version_by_alias(task, "champion").version == "1"
    assert json.loads(client.get_model_version(task, "2").tags["tsi.rejected"])["reason"] == "test"
    assert client.get_model_version_by_alias(f"{task}-candidates", "candidate").version == bad
    assert promote(["--task", task, *data, *gate]) == 3  # @candidate is the champion's weights
    assert nightly(["--task", task, *data, *gate, "--promote"]) in (0, 3)
    assert promote(["--task", task, "--candidate", f"models:/{task}-candidates/{good}", *data,
                    *gate]) == 2 and "rejected by" in capsys.readouterr().err
    assert client.get_model_version_by_alias(task, "champion").version == "1"
