"""Which MLflow store a run uses, and a bounded check that it answers.

Resolution: the config's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
default ``sqlite:///{storage}/mlflow/mlflow.db`` with artifacts in ``{storage}/mlflow/artifacts``
(under the run storage, never a Ray job's temporary working directory). MLflow's HTTP client
retries for minutes by default; every call made here runs under :func:`bounded_http` so an
unreachable server costs seconds, not minutes.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.io import is_uri
from pipelines.train.config import TrackingSettings


class TrackingUnavailable(RuntimeError):
    """The tracking server or store cannot be reached (the message says which and how long)."""


class TrackingPermissionDenied(TrackingUnavailable):
    """The server answers but refuses these credentials (401/403): not an outage; do not wait."""


@dataclass(frozen=True)
class Store:
    """A resolved tracking store: its URI and, for local stores, where artifacts go."""

    uri: str
    artifact_root: str | None  # None: the server decides (proxied artifacts)


def resolve_store(settings: TrackingSettings, storage_path: str) -> Store:
    uri = settings.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        local = not uri.startswith(("http://", "https://", "databricks"))
        root = None
        if local and uri.startswith("sqlite:///"):
            root = Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
        return Store(uri, root.as_uri() if root else None)
    if is_uri(storage_path):
        raise TrackingUnavailable(f"run.storage_path {storage_path} is an object store: the "
                                  "embedded sqlite MLflow store cannot live there; set "
                                  "tracking.uri or MLFLOW_TRACKING_URI to an MLflow server")
    base = Path(storage_path).resolve() / "mlflow"
    base.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{base / 'mlflow.db'}", (base / "artifacts").as_uri())


def use_store(store: Store) -> None:
    """Point MLflow's fluent API (``start_run``, ``log_model``, ``register_model``, ``models:/``
    downloads) at ``store`` without leaking it into the environment.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` for subprocesses; left there,
    every later job of the same process (a second demo, the next test) would resolve that store
    instead of its own configured or embedded default (:func:`resolve_store` reads the variable).
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(store.uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@contextlib.contextmanager
def bounded_http(timeout_s: float, retries: int = 0) -> Iterator[None]:
    """MLflow HTTP calls inside give up after ``timeout_s`` per request and ``retries`` retries."""
    wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout_s))),
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def probe(store: Store, timeout_s: float) -> None:
    """One cheap request against the store; :class:`TrackingUnavailable` if it does not answer."""
    from mlflow import MlflowClient

    try:
        with bounded_http(timeout_s, retries=0):
            MlflowClient(tracking_uri=store.uri).search_experiments(max_results=1)
    except Exception as exc:  # connection refused, timeout, auth, a corrupt sqlite file
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if "error code 401" in str(exc) or "error code 403" in str(exc):
            raise TrackingPermissionDenied(f"MLflow tracking store {store.uri} refused the credentials "
                                  f"of {os.environ.get('MLFLOW_TRACKING_USERNAME') or 'anonymous'}"
                                  f" ({reason})") from None
        raise TrackingUnavailable(
            f"MLflow tracking store {store.uri} did not answer within {timeout_s:g} s "
            f"({reason}); start it or set tracking.uri / MLFLOW_TRACKING_URI") from None
