"""MLflow as the trainer's tracking backend: one training run is one MLflow run.

- ``check`` (driver, before any data is read): a bounded probe of the store.
- ``begin`` (driver, before workers start): the task's experiment, then the run tagged with the
  training run name (found again on a restart or re-submission, else created with the
  flattened config as params and the YAML as an artifact).
- ``epoch_logger`` (rank 0): metrics with the global step as ``step`` (counters, i.e. epoch,
  step and video counts, as run tags: no chart of a count), system metrics; a store
  that stops answering mid-run delays logging (points are kept and sent with the next epoch,
  with a warning) and never stops training.
- ``end`` (driver, after ``fit``): classes, dataset stats, per-class table, curves and confusion
  PNGs, the packaged model, registration into ``{task}-candidates`` with alias ``candidate`` and
  the lineage tags; retried with backoff. If the store stays away, the error says how to
  register the export later with ``python -m jobs.register``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import flatten_keys
from pipelines.tracking.connection import (
    Store,
    TrackingUnavailable,
    bounded_http,
    probe,
    resolve_store,
)
from pipelines.tracking.runs import (
    PENDING_FILE,
    RUN_NAME_TAG,
    ensure_experiment,
    find_run,
    split_counters,
    with_retries,
)
from pipelines.train.config import TrackingSettings

log = logging.getLogger("tsi.tracking")
MAX_PENDING = 10_000  # metric points kept while the store is away


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.01}}`` → ``{"optim.lr": "0.01"}`` (MLflow params are flat strings)."""
    return {name: json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)
            for name, value in flatten_keys(dict(tree), prefix).items()}


class _EpochLogger:
    """Rank 0's logger: epoch metrics (kept and resent while the store is away), system metrics.

    Every MLflow request of this process, MLflow's own system-metrics thread included, is bounded
    for the logger's lifetime: with MLflow's defaults (7 retries, doubling waits) one outage
    would stall the end of training for minutes in the monitor's ``get_run``.
    """

    def __init__(self, handle: Mapping[str, Any], timeout_s: float) -> None:
        from mlflow import MlflowClient

        self.handle = dict(handle)
        self.timeout_s = timeout_s
        self.bounded = contextlib.ExitStack()
        self.bounded.enter_context(bounded_http(timeout_s, retries=0))
        self.client = MlflowClient(tracking_uri=handle["uri"])
        self.pending: list[Any] = []
        self.counters: dict[str, str] = {}  # latest epoch, step and video counts, as run tags
        self.monitor = None
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self.monitor = SystemMetricsMonitor(handle["run_id"], sampling_interval=10,
                                                resume_logging=True, tracking_uri=handle["uri"])
            self.monitor.start()
        except Exception as exc:  # psutil missing, or the store away: metrics still flow
            log.warning("system metrics are off: %s", exc)

    def log_epoch(self, metrics: Mapping[str, float], *, step: int, epoch: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        charted, counters = split_counters(metrics)
        self.pending += [Metric(key, value, now, step) for key, value in charted.items()]
        self.pending = self.pending[-MAX_PENDING:]
        self.counters.update(counters)
        self._flush()

    def _flush(self) -> None:
        from mlflow.entities import RunTag

        try:
            while self.pending or self.counters:
                tags = [RunTag(k, v) for k, v in self.counters.items()]
                self.client.log_batch(self.handle["run_id"], metrics=self.pending[:1000],
                                      tags=tags)
                del self.pending[:1000]
                self.counters = {}
        except Exception as exc:
            log.warning("MLflow did not take %d metric points (%s); training goes on, they are "
                        "sent with the next epoch", len(self.pending),
                        str(exc).splitlines()[0][:200])

    def close(self) -> None:
        """Last flush; points the store still refuses go to the run folder for ``end`` to send."""
        self._flush()
        if self.pending and self.handle.get("run_dir"):
            path = Path(self.handle["run_dir"]) / PENDING_FILE
            rows = [[m.key, m.value, m.timestamp, m.step] for m in self.pending]
            path.write_text(json.dumps(rows))
            log.warning("%d metric points kept in %s; they are sent when the model is published",
                        len(rows), path)
        if self.monitor is not None:
            try:
                self.monitor.finish()  # bounded: its last get_run and flush fail fast if away
            except Exception as exc:
                log.warning("system metrics did not finish cleanly: %s", exc)
        self.bounded.close()


@dataclass
class MlflowTracking:
    """The ``mlflow`` backend of :class:`pipelines.train.tracking.Tracking` (picklable)."""

    settings: TrackingSettings
    storage_path: str
    task: str
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.store = resolve_store(self.settings, self.storage_path)

    @property
    def experiment(self) -> str:
        return self.settings.experiment or self.task

    def check(self) -> None:
        probe(self.store, self.settings.probe_timeout_s)

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
        from mlflow import MlflowClient

        def start() -> dict[str, Any]:
            client = MlflowClient(tracking_uri=self.store.uri)
            experiment_id = ensure_experiment(client, self.experiment, self.store.artifact_root)
            found = find_run(client, experiment_id, run_name)
            if found is not None:
                run_id = found.info.run_id
                client.update_run(run_id, status="RUNNING")
                log.info("MLflow run %s continues training run %s", run_id, run_name)
            else:
                run = client.create_run(experiment_id, run_name=run_name, tags={
                    RUN_NAME_TAG: run_name, "tsi.task": self.task, "tsi.run_dir": run_dir})
                run_id = run.info.run_id
                from mlflow.entities import Param

                params = [Param(k[:250], v[:6000]) for k, v in flatten(config).items()]
                for start_at in range(0, len(params), 100):
                    client.log_batch(run_id, params=params[start_at:start_at + 100])
                client.log_text(run_id, yaml.safe_dump(json.loads(json.dumps(config, default=str)),
                                                       sort_keys=False), "config.yaml")
            return {"uri": self.store.uri, "experiment_id": experiment_id, "run_id": run_id,
                    "run_name": run_name, "run_dir": run_dir}

        with bounded_http(self.settings.probe_timeout_s, retries=0):
            try:
                return with_retries("creating the MLflow run", start, 1, self.settings.backoff_s)
            except Exception as exc:
                raise TrackingUnavailable(f"could not create the MLflow run in {self.store.uri}: "
                                          f"{str(exc).splitlines()[0][:300]}") from None

    def epoch_logger(self, handle: Mapping[str, Any]):
        return _EpochLogger(handle, self.settings.probe_timeout_s)

    def fail(self, handle: Mapping[str, Any], reason: str, summary: Mapping[str, Any]) -> None:
        """Tag the run with why it has no published model and end it FAILED."""
        from mlflow import MlflowClient

        def record() -> None:
            client = MlflowClient(tracking_uri=self.store.uri)
            client.set_tag(handle["run_id"], "tsi.failure", reason[:5000])
            client.set_tag(handle["run_id"], "tsi.export", str(summary.get("export", "")))
            client.set_terminated(handle["run_id"], status="FAILED")

        with bounded_http(self.settings.probe_timeout_s, retries=0):
            with_retries("recording the failed run", record, self.settings.retries,
                         self.settings.backoff_s)

    def resolve_weights(self, source: str, workdir: str) -> tuple[str, str]:
        """Production versions verified file by file (promoter's hashes), candidates by their
        checkpoint's ``tsi.export_sha256``: weights nobody vouches for are refused."""
        from mlflow import MlflowClient

        from pipelines.tracking.models import resolve_model

        ref = resolve_model(source, MlflowClient(tracking_uri=self.store.uri), self.store.uri,
                            workdir)
        return ref.checkpoint, ref.label

    def end(self, handle: Mapping[str, Any], export_path: str, summary: Mapping[str, Any]) -> None:
        from pipelines.tracking.publish import publish_export

        publish_export(self.store, export_path, run_id=handle["run_id"],
                       register=self.settings.register, retries=self.settings.retries,
                       backoff_s=self.settings.backoff_s, timeout_s=self.settings.probe_timeout_s)
