"""Connecting to Ray, one way for every job: ``RAY_ADDRESS`` when set, else a local instance.

Bottom layer (imports nothing of the platform): preprocessing, evaluation and batch prediction
all start their Ray work through :func:`ensure_ray`, so a job behaves the same on a laptop and
under ``ray job submit``.
"""
from __future__ import annotations

import os
from typing import Any


def ensure_ray() -> Any:
    """The ``ray`` module, connected: ``RAY_ADDRESS`` if set, else a local or new instance."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None)
    return ray
