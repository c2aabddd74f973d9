"""Register an exported model from the file alone: after an outage, or by hand.

The export carries everything its registration needs (task, run name, classes, dataset hashes,
metrics, clip settings), so a training run whose final registration failed is finished here
without retraining; the export itself is never changed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.io import is_uri
from pipelines.tracking.connection import TrackingUnavailable, probe, resolve_store
from pipelines.tracking.publish import publish_export
from pipelines.train.config import TrackingSettings
from pipelines.train.layout import local_export


class RegistrationFailed(RuntimeError):
    """The store failed mid-way; the export is untouched and the job can be re-run."""


@dataclass(frozen=True)
class RegisterConfig:
    checkpoint: str | None = None  # an exported model.pt, by path or URI
    tracking_uri: str | None = None  # default MLFLOW_TRACKING_URI, else sqlite under storage
    storage: str | None = None  # default: the export's own run storage folder
    no_register: bool = False  # log the model to its run, do not register it
    timeout: float = 10.0  # seconds per store request
    retries: int = 3


def register_export(cfg: RegisterConfig) -> tuple[Any, str]:
    """Publish ``cfg.checkpoint`` to its run and ``{task}-candidates``; (version or None, URI).

    ``ValueError`` / ``TrackingUnavailable`` for bad input or a store that does not answer,
    :class:`RegistrationFailed` when the store fails during registration.
    """
    if not cfg.checkpoint:
        raise ValueError("set --checkpoint (an exported model.pt)")
    if is_uri(cfg.checkpoint) and not (cfg.storage or cfg.tracking_uri
                                       or os.environ.get("MLFLOW_TRACKING_URI")):
        raise ValueError(f"--checkpoint {cfg.checkpoint} is in an object store: name the MLflow "
                         "server with --tracking-uri or MLFLOW_TRACKING_URI")
    try:
        export = Path(local_export(cfg.checkpoint))
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"--checkpoint {exc}") from exc
    if not export.is_file():
        raise ValueError(f"--checkpoint {export} is not a file")
    storage = cfg.storage or str(export.resolve().parent.parent)
    store = resolve_store(TrackingSettings(backend="mlflow", uri=cfg.tracking_uri), storage)
    try:
        probe(store, cfg.timeout)
        version = publish_export(store, export, register=not cfg.no_register,
                                 retries=cfg.retries, timeout_s=cfg.timeout)
    except (TrackingUnavailable, ValueError):
        raise
    except Exception as exc:  # the store failed mid-way: the export is untouched
        raise RegistrationFailed(
            f"registration failed ({type(exc).__name__}: {str(exc)[:300]}); the export "
            f"{export} is untouched, re-run this command") from exc
    return version, store.uri
