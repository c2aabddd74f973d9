"""MLflow for real: the tracked training run, the packaged model, registration, serving, outages.

The session's tiny TSI run (conftest ``trained``) is tracked in the embedded sqlite store and
registered; the TSN export is registered over HTTP into a real ``mlflow server`` (one per
session) with ``jobs.register``; an outage is a loopback proxy the test closes and reopens.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from proxy import TcpProxy

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[2]


def _sqlite(trained) -> str:
    return f"sqlite:///{Path(trained['storage']) / 'mlflow' / 'mlflow.db'}"


def _eval_videos(trained, count: int = 2) -> list[Path]:
    videos = Path(trained["shards"]).parent / "videos" / "val"
    return sorted(videos.glob("*.mp4"))[:count]


def test_the_training_run_is_one_mlflow_run_with_curves_tables_and_a_candidate(trained):
    from mlflow import MlflowClient

    from pipelines.tracking.runs import find_run
    from pipelines.tracking.registry import candidates_name, comparable

    client = MlflowClient(_sqlite(trained))
    experiment = client.get_experiment_by_name("tsi-tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one training run is one MLflow run
    run = find_run(client, experiment.experiment_id, "tiny-tsi")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["optim.lr"] == "0.02" and params["model.layers"] == "[1, 1, 1, 1]"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [6, 12, 18]  # the global step
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"config.yaml", "classes.json", "dataset_stats.json", "per_class_accuracy.json",
            "plots/training_curves.png", "plots/confusion_matrix.png"} <= artifacts
    version = client.get_model_version_by_alias(candidates_name("tsi-tiny"), "candidate")
    tags = version.tags
    for tag in ("tsi.run_name", "tsi.export_sha256", "tsi.classes_hash", "tsi.eval_dataset_hash",
                "tsi.clip", "tsi.media", "tsi.code_version", "tsi.metric.val_top1",
                "tsi.mlflow_run_id"):
        assert tags.get(tag), tag
    assert tags["tsi.mlflow_run_id"] == run.info.run_id and len(tags) <= 15  # readable in the UI
    lineage = json.loads(Path(client.download_artifacts(run.info.run_id, "lineage.json"))
                         .read_text())
    assert lineage["tsi.world_size"] == "2" and lineage["tsi.config_hash"]  # the rest is here
    assert lineage["tsi.train_dataset_hash"] and lineage["tsi.export_sha256"] == tags[
        "tsi.export_sha256"]
    ok, why = comparable(tags, {**tags, "tsi.clip": '{"frames": 16}'})
    assert not ok and "tsi.clip" in why[0] and comparable(tags, dict(tags)) == (True, [])


def test_packaged_model_predicts_in_a_fresh_process_as_evaluation_does(trained, tmp_path):
    """mp4, the same stream remuxed into mkv, raw bytes, and an unreadable file, in one call."""
    from pipelines.evaluation.exported import evaluate_export

    videos = _eval_videos(trained)
    mkv = tmp_path / "remuxed.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", f"file:{videos[0]}",
                    "-c", "copy", f"file:{mkv}"], check=True)
    as_base64 = "base64:" + base64.b64encode(videos[1].read_bytes()).decode()
    inputs = [str(videos[0]), str(mkv), as_base64, str(tmp_path / "missing.mp4")]
    script = ("import json, sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
              "m = mlflow.pyfunc.load_model('models:/tsi-tiny-candidates@candidate'); "
              "print('RESULT ' + json.dumps(m.predict(json.loads(sys.argv[2])))); "
              "import pipelines; print('CODE ' + pipelines.__file__)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", script, _sqlite(trained), json.dumps(inputs)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    code = next(l for l in proc.stdout.splitlines() if l.startswith("CODE "))[5:]
    assert not Path(code).is_relative_to(REPO), code  # the model's shipped copy, not this checkout
    assert "platform-code.zip" in code, code  # one archive, imported as it is
    evaluation = evaluate_export(trained["tsi"].export_path, str(trained["shards"]), "val")
    classes = evaluation.classes
    expected = {key: classes[int(evaluation.predictions.probs[i].argmax())]
                for i, key in enumerate(evaluation.predictions.keys)}
    assert out[0]["labels"][0] == expected[videos[0].stem] == out[1]["labels"][0]
    assert out[0]["probabilities"] == pytest.approx(out[1]["probabilities"], abs=1e-5)
    assert out[2]["labels"][0] == expected[videos[1].stem] and out[2]["error"] is None
    assert out[3]["labels"] == [] and "missing_file" in out[3]["error"]
    assert len(out[0]["labels"]) == 5 and sum(out[0]["probabilities"]) <= 1.0 + 1e-6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_register_over_http_then_serve_answers_invocations_the_same(trained, mlflow_server):
    import mlflow

    from jobs.register import main as register_main

    export = trained["tsn"].export_path
    assert register_main(["--checkpoint", export, "--tracking-uri", mlflow_server["url"]]) == 0
    assert register_main(["--checkpoint", export, "--tracking-uri", mlflow_server["url"]]) == 0
    client = mlflow.MlflowClient(mlflow_server["url"])
    versions = client.search_model_versions("name = 'tsi-synthetic-candidates'")
    assert len(versions) == 1  # registering the same file twice makes one version
    assert versions[0].description.startswith("Candidate from training run tiny-tsn: tsn_r50")
    video = _eval_videos(trained, 1)[0]
    payload = ["base64:" + base64.b64encode(video.read_bytes()).decode()]
    mlflow.set_tracking_uri(mlflow_server["url"])
    packaged = mlflow.pyfunc.load_model("models:/tsi-synthetic-candidates@candidate")
    direct = packaged.predict(payload)
    # the saved input example is a video the model answers; top_k is honoured as a param
    [example] = packaged.predict(list(packaged.input_example), params={"top_k": 2})
    assert example["error"] is None and len(example["labels"]) == 2
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server["url"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/tsi-synthetic-candidates@candidate",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not come up"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": payload}).encode(),
            headers={"Content-Type": "application/json"})
        served = json.loads(urllib.request.urlopen(request, timeout=120).read())["predictions"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert served[0]["labels"] == direct[0]["labels"]
    assert served[0]["probabilities"] == pytest.approx(direct[0]["probabilities"], abs=1e-6)


def test_an_unreachable_store_fails_the_job_in_seconds(trained, mlflow_server, capsys):
    from jobs.train import main as train_main

    proxy = TcpProxy(mlflow_server["port"])
    proxy.close()
    began = time.monotonic()
    code = train_main(["--data", str(trained["shards"]), "--storage", str(trained["storage"]),
                       "tracking.backend=mlflow", f"tracking.uri={proxy.url}",
                       "tracking.probe_timeout_s=2", "scaling.num_workers=0"])
    assert code == 2 and time.monotonic() - began < 20
    assert "did not answer" in capsys.readouterr().err
    proxy.shutdown()


def test_an_outage_mid_run_loses_nothing(trained, mlflow_server, tmp_path):
    """Closed after the run starts, reopened before the end: every epoch and the model arrive."""
    from mlflow import MlflowClient

    from conftest import tiny_train_overrides
    from pipelines.tracking import make_tracking
    from pipelines.tracking.runs import find_run
    from pipelines.config import load_config
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import run_training

    proxy = TcpProxy(mlflow_server["port"])
    cfg = load_config(TrainConfig, None, tiny_train_overrides(trained["shards"], tmp_path, **{
        "scaling.num_workers": 0, "run.name": "outage", "task": "tsi-outage",
        "model.name": "tsn_r50", "epochs": 2, "batches_per_epoch": 2,
        "tracking.backend": "mlflow", "tracking.uri": proxy.url,
        "tracking.probe_timeout_s": 2, "tracking.backoff_s": 1, "tracking.retries": 6}))
    direct = MlflowClient(mlflow_server["url"])
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=run_training(cfg, tracking=make_tracking(cfg))), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120

    def begun() -> bool:  # the run exists and holds its config: begin() is done
        experiment = direct.get_experiment_by_name("tsi-outage")
        runs = direct.search_runs([experiment.experiment_id]) if experiment else []
        return bool(runs) and any(a.path == "config.yaml"
                                  for a in direct.list_artifacts(runs[0].info.run_id))

    while not begun():
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.1)
    proxy.close()  # every epoch and the end of training happen in the outage
    run_dir = tmp_path / "outage"
    while not (run_dir / "model.pt").exists():
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.2)
    time.sleep(1.5)  # the first publishing attempts fail
    proxy.open()
    thread.join(timeout=180)
    proxy.shutdown()
    assert "result" in outcome, "training or publishing did not finish"
    experiment = direct.get_experiment_by_name("tsi-outage")
    run = find_run(direct, experiment.experiment_id, "outage")
    assert [m.step for m in direct.get_metric_history(run.info.run_id, "train_loss")] == [2, 4]
    assert direct.get_model_version_by_alias("tsi-outage-candidates", "candidate").version == "1"
    assert not (run_dir / "mlflow_pending_metrics.json").exists()
