"""Publish an exported model to MLflow: reports, the packaged model, the registry version.

Called by the MLflow backend after ``fit`` and by ``python -m jobs.register --checkpoint PATH``
with nothing but the export file: everything needed (task, run name, classes, hashes, metrics,
clip and media settings, where the data lives) is inside it. Each step is retried with backoff
and is safe to repeat (a version already made from the same file is reused, not duplicated).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.tracking.runs import (
    PENDING_FILE,
    RUN_NAME_TAG,
    ensure_experiment,
    find_run,
    split_counters,
    with_retries,
)
from pipelines.tracking.connection import Store, bounded_http, use_store
from pipelines.tracking.registry import (
    CANDIDATE_ALIAS,
    LINEAGE_ARTIFACT,
    candidates_name,
    find_version,
    lineage,
    lineage_tags,
    log_packaged_model,
)
from pipelines.tracking.registry import candidate_description
from pipelines.tracking.registry import register as register_version

log = logging.getLogger("tsi.tracking")
PREDICTIONS_FILE = "eval_predictions.npz"  # written beside the export by the trainer


def _predictions(export_path: Path, num_classes: int):
    from pipelines.evaluation.metrics import Predictions

    path = export_path.with_name(PREDICTIONS_FILE)
    if not path.exists():
        return None
    data = np.load(path)
    return Predictions(tuple(str(k) for k in data["keys"]), data["labels"], data["probs"])


def _dataset_stats(meta: dict[str, Any]) -> dict[str, Any]:
    """``stats.json`` of the splits the model saw, read where the data lives (skipped if not)."""
    from pipelines.io import Storage

    data = (meta.get("config") or {}).get("data") or {}
    out: dict[str, Any] = {}
    try:
        storage = Storage.open(meta["dataset_root"])
        for split in {data.get("train_split"), data.get("eval_split")} - {None}:
            rel = f"{split}/stats.json"
            if storage.exists(rel):
                out[split] = json.loads(storage.read_bytes(rel))
    except Exception as exc:  # the export outlives its data, or this host cannot reach it
        log.warning("dataset stats not logged: %s", exc)
    return out


def _send_pending(client: Any, run_id: str, export_path: Path) -> None:
    """Metric points rank 0 could not send during an outage (kept beside the export)."""
    from mlflow.entities import Metric

    path = export_path.with_name(PENDING_FILE)
    if not path.exists():
        return
    points = [Metric(k, float(v), int(t), int(s)) for k, v, t, s in json.loads(path.read_text())]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start:start + 1000])
    path.unlink()
    log.info("sent %d metric points kept during an outage", len(points))


def _reports(client: Any, run_id: str, meta: dict[str, Any], export_path: Path) -> None:
    """classes.json, dataset stats, per-class table, training curves and confusion matrix."""
    import matplotlib.pyplot as plt

    from pipelines.tracking.plots import training_curves
    from pipelines.tracking.reports import log_classification_report

    classes = list(meta["classes"])
    client.log_dict(run_id, {"format": "tsi-classes", "version": 1,
                             "num_classes": len(classes), "classes": classes}, "classes.json")
    stats = _dataset_stats(meta)
    if stats:
        client.log_dict(run_id, stats, "dataset_stats.json")
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
               for key in ("train_loss", "train_top1", "val_top1", "selection_top1", "lr")}
    figure = training_curves(history)
    client.log_figure(run_id, figure, "plots/training_curves.png")
    plt.close(figure)
    preds = _predictions(export_path, len(classes))
    if preds is None:
        log.warning("no %s beside %s: confusion matrix and per-class table skipped",
                    PREDICTIONS_FILE, export_path)
        return
    log_classification_report(client, run_id, preds, classes,
                              f"{meta.get('run_name', '')}: evaluation split")


def _run_for(client: Any, store: Store, meta: dict[str, Any], run_id: str | None) -> str:
    """The MLflow run of the export's training run: given, found by its tag, or created."""
    if run_id:
        return run_id
    task = str(meta.get("task") or "tsi")
    experiment_id = ensure_experiment(client, task, store.artifact_root)
    run_name = str(meta.get("run_name") or Path(meta.get("export_path", "model")).stem)
    found = find_run(client, experiment_id, run_name)
    if found is not None:
        return found.info.run_id
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={RUN_NAME_TAG: run_name, "tsi.task": task,
                                  "tsi.registered_from": "jobs.register"})
    charted, counters = split_counters(meta.get("metrics") or {})
    for key, value in charted.items():
        client.log_metric(run.info.run_id, key, value, step=int(meta.get("global_step", 0)))
    for key, value in counters.items():
        client.set_tag(run.info.run_id, key, value)
    return run.info.run_id


def publish_export(store: Store, export_path: str | Path, *, run_id: str | None = None,
                   register: bool = True, retries: int = 5, backoff_s: float = 2.0,
                   timeout_s: float = 10.0) -> Any:
    """Log reports and the packaged model to the run, register it; returns the version (or None)."""
    import mlflow
    from mlflow import MlflowClient

    from tsi_model.weights import read_state_dict

    export_path = Path(export_path).resolve()
    _, meta = read_state_dict(str(export_path))
    if "classes" not in meta or "task" not in meta:
        raise ValueError(f"{export_path} is not an exported training checkpoint")
    client = MlflowClient(tracking_uri=store.uri)
    use_store(store)
    with bounded_http(timeout_s, retries=0):
        run_id = with_retries("finding the MLflow run",
                              lambda: _run_for(client, store, meta, run_id), retries, backoff_s)
        with_retries("sending kept metrics", lambda: _send_pending(client, run_id, export_path),
                     retries, backoff_s)
        with_retries("logging reports", lambda: _reports(client, run_id, meta, export_path),
                     retries, backoff_s)

        with_retries("logging the lineage", lambda: client.log_dict(
            run_id, lineage(meta, export_path), LINEAGE_ARTIFACT), retries, backoff_s)
        tags = lineage_tags(meta, export_path) | {"tsi.mlflow_run_id": run_id}
        name = candidates_name(str(meta["task"]))
        version = with_retries("looking for an earlier registration",
                               lambda: find_version(client, name, tags["tsi.export_sha256"]),
                               retries, backoff_s) if register else None
        if version is not None:  # this very file was registered before: only the alias moves
            with_retries("moving the alias", lambda: client.set_registered_model_alias(
                name, CANDIDATE_ALIAS, version.version), retries, backoff_s)
            log.info("%s version %s was already made from %s; alias candidate points at it",
                     name, version.version, export_path)
        else:
            def package() -> Any:
                with mlflow.start_run(run_id=run_id):
                    return log_packaged_model(export_path)

            info = with_retries("logging the packaged model", package, retries, backoff_s)
            if register:
                version = with_retries(
                    "registering the model",
                    lambda: register_version(client, info.model_uri, str(meta["task"]), tags,
                                             candidate_description(meta, tags)),
                    retries, backoff_s)
                log.info("registered %s version %s (alias candidate) from %s", version.name,
                         version.version, export_path)
        with_retries("finishing the MLflow run",
                     lambda: client.set_terminated(run_id, status="FINISHED"), retries, backoff_s)
    return version


__all__ = ["PREDICTIONS_FILE", "publish_export"]
