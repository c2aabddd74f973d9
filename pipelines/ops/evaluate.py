"""The one evaluation engine: ``jobs.evaluate``, promotion and nightly evaluation all call it.

A model (registered version or export) is scored on one split of shards as ``parts`` Ray tasks:
task ``i`` reads the shards the loader gives rank ``i`` of ``parts`` (each video exactly once
over all tasks), the driver merges the parts and checks the count against the manifest. The
checkpoint travels through Ray's object store, so tasks on other nodes need no shared disk.
Then one MLflow run records it: metrics (with the reversal probe where the classes declare
order twins: ``reversal_flip``, ``reversal_to_twin``, ``reversal_videos``), per-class table,
confusion matrix, and every video's prediction as ``predictions.parquet`` (key, label, top-k
labels and probabilities, the full probability vector), so any two evaluations can be compared
video by video.
"""
from __future__ import annotations

import getpass
import io
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.cluster import ensure_ray
from pipelines.data.classes import ClassMap
from pipelines.data.twins import twin_indices
from pipelines.evaluation.exported import (
    check_class_map, predict_export, predict_export_with_reversal,
)
from pipelines.evaluation.metrics import ClassificationMetrics, Predictions, classification_metrics
from pipelines.evaluation.predict import merge_predictions
from pipelines.evaluation.reversal import reversal_probe
from pipelines.io import Storage
from pipelines.tracking.models import ModelRef, parse_registry_uri, resolve_model
from pipelines.ops.store import StoreSettings, open_store
from pipelines.shards import contract, manifest
from pipelines.shards.check import check_shards
from pipelines.shards.reader import list_shards

log = logging.getLogger("tsi.ops")
PREDICTIONS_ARTIFACT = "predictions.parquet"
TOP_K = 5


@dataclass(frozen=True)
class EvalSettings:
    """Which shards, how they are scored, and how the work is spread over Ray tasks."""

    data: str | None = None  # dataset root written by jobs.preprocess (local path or URI)
    split: str = "val"
    protocol: Literal["1x1", "10x3"] = "1x1"
    parts: int = 2  # Ray tasks (capped at the number of shards)
    cpus_per_part: float = 1.0
    threads_per_part: int = 1
    batch_size: int = 8
    reversal_probe: bool = True  # with declared order twins: score reversed clips too


@dataclass(frozen=True)
class EvalSplit:
    """One split of a dataset root: its shards, size, class map and dataset hash."""

    root: str
    split: str
    urls: tuple[str, ...]
    videos: int
    classes: tuple[str, ...]
    classes_hash: str
    dataset_hash: str
    keys: frozenset[str] = field(default=frozenset(), repr=False)  # stored videos (manifest)


@dataclass(frozen=True)
class ScoredModel:
    model: ModelRef
    split: EvalSplit
    protocol: str
    predictions: Predictions = field(repr=False)
    metrics: ClassificationMetrics = field(repr=False)
    run_id: str | None = None
    reversal: dict[str, float] = field(default_factory=dict)  # pipelines.evaluation.reversal


def open_eval_split(root: str | None, split: str) -> EvalSplit:
    if not root:
        raise ValueError("no evaluation data: set --data (eval.data) to a preprocessing output")
    storage = Storage.open(root)
    for rel in (contract.CLASSES, f"{split}/{contract.MANIFEST}"):
        if not storage.exists(rel):
            raise FileNotFoundError(f"{storage.uri(rel)} does not exist: run jobs.preprocess "
                                    "for that split first")
    classes = ClassMap.parse(storage.read_bytes(contract.CLASSES).decode("utf-8"),
                             where=storage.uri(contract.CLASSES))
    check_shards(root, split)
    table, keys = manifest.read_split(storage, split)
    return EvalSplit(storage.uri(), split, tuple(list_shards(root, split)), len(keys),
                     classes.names, classes.digest, manifest.dataset_hash(table, classes.names),
                     frozenset(keys))


def _score_part(checkpoint: bytes, urls: list[str], protocol: str, batch_size: int, rank: int,
                parts: int, threads: int, reversal: bool
                ) -> tuple[Predictions, Predictions | None]:
    """Part ``rank``'s predictions, and on the reversed clips when ``reversal`` (else None)."""
    import torch

    torch.set_num_threads(threads)
    with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
        fh.write(checkpoint)
        fh.flush()
        options = dict(protocol=protocol, batch_size=batch_size, rank=rank, world_size=parts,
                       num_workers=0)
        if reversal:
            return predict_export_with_reversal(fh.name, urls, **options)
        return predict_export(fh.name, urls, **options), None


def score(model: ModelRef, split: EvalSplit, settings: EvalSettings) -> ScoredModel:
    """Score ``model`` on ``split`` with Ray tasks; refuses a class map that differs.

    With ``settings.reversal_probe`` and declared order twins among the split's classes, the
    tasks also score every clip reversed in time and the result carries the probe.
    """
    check_class_map(model.meta, split.root, model.label)
    if not split.urls:
        raise ValueError(f"{split.root}/{split.split} has no shards")
    ray = ensure_ray()
    parts = max(1, min(settings.parts, len(split.urls)))
    twins = twin_indices(split.classes) if settings.reversal_probe else {}
    remote = ray.remote(num_cpus=settings.cpus_per_part, max_retries=2)(_score_part)
    blob = ray.put(Path(model.checkpoint).read_bytes())
    began = time.perf_counter()
    futures = [remote.remote(blob, list(split.urls), settings.protocol, settings.batch_size, rank,
                             parts, settings.threads_per_part, bool(twins))
               for rank in range(parts)]
    results = ray.get(futures)
    preds = merge_predictions([forward for forward, _ in results], len(split.classes))
    if len(preds) != split.videos:
        raise RuntimeError(f"scored {len(preds)} videos but {split.root}/{split.split} stores "
                           f"{split.videos}: the shards and the manifest disagree")
    metrics = classification_metrics(preds, len(split.classes))
    reversal = {}
    if twins:
        backward = merge_predictions([b for _, b in results], len(split.classes))
        reversal = reversal_probe(preds, backward, twins)
    log.info("%s on %s/%s (%s, %d tasks): top-1 %.4f, top-5 %.4f over %d videos in %.1f s%s",
             model.label, split.root, split.split, settings.protocol, parts, metrics.top1,
             metrics.top5, metrics.videos, time.perf_counter() - began,
             f"; reversal flip {reversal['reversal_flip']:.4f}" if reversal else "")
    return ScoredModel(model, split, settings.protocol, preds, metrics, reversal=reversal)


def predictions_table(preds: Predictions, classes: tuple[str, ...], top_k: int = TOP_K):
    """One row per video: key, label, top-k labels and probabilities, all probabilities."""
    import pyarrow as pa

    k = min(top_k, len(classes))
    order = np.argsort(-preds.probs, axis=1)[:, :k]
    return pa.table({
        "key": list(preds.keys),
        "label": [classes[int(i)] for i in preds.labels],
        "label_index": preds.labels.astype(np.int32),
        "top_labels": [[classes[int(i)] for i in row] for row in order],
        "top_probabilities": [[float(preds.probs[r, i]) for i in row]
                              for r, row in enumerate(order)],
        "correct": (order[:, 0] == preds.labels),
        "probabilities": [row.tolist() for row in preds.probs.astype(np.float32)],
    })


def who_ran_it() -> str:
    """``user@host`` plus the Ray job id when submitted with ``ray job submit``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    job = os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_JOB_SUBMISSION_ID")
    return f"{user}@{socket.gethostname()}" + (f" (ray job {job})" if job else "")


def model_tags(model: ModelRef) -> dict[str, str]:
    tags = {"tsi.model_source": model.source, "tsi.task": str(model.meta.get("task", "")),
            "tsi.export_sha256": model.tags.get("tsi.export_sha256", "")}
    if model.name:
        tags |= {"tsi.model_name": model.name, "tsi.model_version": str(model.version)}
    return tags


def record(client: Any, experiment_id: str, scored: ScoredModel, *, kind: str,
           run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
    """One finished MLflow run for one scored model; returns its id."""
    from pipelines.tracking.reports import log_classification_report

    split = scored.split
    run = client.create_run(experiment_id, run_name=run_name, tags={
        **model_tags(scored.model), "tsi.kind": kind, "tsi.split": split.split,
        "tsi.dataset_root": split.root, "tsi.eval_dataset_hash": split.dataset_hash,
        "tsi.classes_hash": split.classes_hash, "tsi.protocol": scored.protocol,
        "tsi.ran_by": who_ran_it(), **(tags or {})})
    run_id = run.info.run_id
    try:
        m = scored.metrics
        for key, value in (("top1", m.top1), ("top5", m.top5),
                           ("mean_class_accuracy", m.mean_class_accuracy),
                           ("videos", float(m.videos)), *scored.reversal.items()):
            client.log_metric(run_id, key, float(value))
        log_classification_report(client, run_id, scored.predictions, split.classes,
                                  f"{scored.model.label} on {split.split}")
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / PREDICTIONS_ARTIFACT
            pq.write_table(predictions_table(scored.predictions, split.classes), path)
            client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def load_predictions(client: Any, run_id: str) -> Predictions:
    """An evaluation run's per-video predictions, back from its parquet artifact."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp)
        table = pq.read_table(io.BytesIO(Path(path).read_bytes()))
    probs = np.array(table.column("probabilities").to_pylist(), dtype=np.float32)
    return Predictions(tuple(table.column("key").to_pylist()),
                       np.array(table.column("label_index").to_pylist(), dtype=np.int64), probs)


@dataclass(frozen=True)
class EvaluateConfig:
    """``model``: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or an exported model.pt."""

    model: str | None = None
    experiment: str | None = None  # default: "{task}-evaluation"
    eval: EvalSettings = field(default_factory=EvalSettings)
    store: StoreSettings = field(default_factory=StoreSettings)


def evaluate_model(cfg: EvaluateConfig) -> ScoredModel:
    """Resolve, score and record one model (``jobs.evaluate``)."""
    from pipelines.tracking.runs import ensure_experiment

    if not cfg.model:
        raise ValueError("no model: set --model to models:/NAME@ALIAS, models:/NAME/VERSION or "
                         "a model.pt")
    parse_registry_uri(cfg.model)  # a malformed models:/ URI is refused before anything else
    split = open_eval_split(cfg.eval.data, cfg.eval.split)  # bad input fails before the store
    store, client = open_store(cfg.store)
    ref = resolve_model(cfg.model, client, store.uri)
    scored = score(ref, split, cfg.eval)
    experiment = cfg.experiment or f"{ref.meta.get('task') or 'tsi'}-evaluation"
    experiment_id = ensure_experiment(client, experiment, store.artifact_root)
    name = f"evaluate-{ref.name}-v{ref.version}" if ref.name else "evaluate-export"
    run_id = record(client, experiment_id, scored, kind="evaluate", run_name=name)
    return ScoredModel(**{**scored.__dict__, "run_id": run_id})
