"""The MLflow store an operations job talks to, probed before any work (seconds, not minutes).

Same resolution as training (``pipelines.tracking.connection``): ``tracking_uri``, else
``MLFLOW_TRACKING_URI``, else the embedded sqlite store under ``storage`` (default
``runs/train``, the training default, so laptop runs find each other's models).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.tracking.connection import Store, probe, resolve_store, use_store
from pipelines.train.config import TrackingSettings


@dataclass(frozen=True)
class StoreSettings:
    tracking_uri: str | None = None
    storage: str = "runs/train"
    timeout_s: float = 10.0


def open_store(settings: StoreSettings) -> tuple[Store, Any]:
    """The resolved store and a client for it; ``TrackingUnavailable`` if it does not answer."""
    from mlflow import MlflowClient

    store = resolve_store(TrackingSettings(backend="mlflow", uri=settings.tracking_uri),
                          settings.storage)
    probe(store, settings.timeout_s)
    use_store(store)
    return store, MlflowClient(tracking_uri=store.uri)
