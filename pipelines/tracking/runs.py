"""MLflow runs and experiments found by name, and retries: what the training backend and the
publishing of its export share (one module below both, so neither imports the other)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("tsi.tracking")
T = TypeVar("T")
RUN_NAME_TAG = "tsi.run_name"
PENDING_FILE = "mlflow_pending_metrics.json"  # points still unsent when training ended


def with_retries(what: str, fn: Callable[[], T], retries: int, backoff_s: float) -> T:
    """``fn()``, retried ``retries`` times with doubling waits; the last error is re-raised."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # the store's client raises many types
            if attempt == retries:
                raise
            wait = backoff_s * 2**attempt
            log.warning("%s failed (%s); retrying in %.0f s (%d/%d)", what,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                        wait, attempt + 1, retries)
            time.sleep(wait)
    raise AssertionError("unreachable")


def ensure_experiment(client: Any, name: str, artifact_root: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = f"{artifact_root}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def find_run(client: Any, experiment_id: str, run_name: str) -> Any | None:
    quoted = run_name.replace("\\", "\\\\").replace("'", "\\'")
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{quoted}'",
                              max_results=1)
    return runs[0] if runs else None
