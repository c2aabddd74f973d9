"""MLflow runs and experiments found by name, and retries: what the training backend and the
publishing of its export share (one module below both, so neither imports the other)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
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


COUNTER_TAG_PREFIX = "tsi."  # e.g. tsi.epoch, tsi.global_step, tsi.val_videos


def is_counter(key: str) -> bool:
    """A count, not a measurement: the epoch, the global step (already every point's ``step``)
    and numbers of videos (``val_videos``, ``train/videos_seen``…), constant or stepping by one.
    Recorded as run tags, so MLflow draws no chart of them."""
    name = key.rsplit("/", 1)[-1]
    return key in ("epoch", "global_step") or "videos" in name.split("_")


def split_counters(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """``(metrics to chart, counter tags)`` of one epoch's numbers (non-numbers are dropped)."""
    charted: dict[str, float] = {}
    tags: dict[str, str] = {}
    for key, value in metrics.items():
        if not isinstance(value, (int, float)):
            continue
        if is_counter(key):
            tags[COUNTER_TAG_PREFIX + key] = f"{value:g}"
        else:
            charted[key] = float(value)
    return charted, tags


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
