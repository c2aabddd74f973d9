"""Shared output for benchmarks: a plain-text table and a JSON record with the machine's state.

Timings on a shared 2-core machine are noisy, so every benchmark reports ratios against a
baseline measured in the same run, and records the load average before and after.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from pipelines.report import format_table  # noqa: F401  (re-exported for benchmarks)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_state() -> dict[str, Any]:
    """CPU count, load average and library versions, recorded beside every result."""
    state: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch

        state["torch"] = torch.__version__
        state["torch_threads"] = torch.get_num_threads()
        state["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return state


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``results/{name}.json`` and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def earlier_runs(name: str, settings: dict[str, Any], keys: tuple[str, ...],
                 wanted: Any) -> list[dict[str, Any]]:
    """The runs an interrupted earlier invocation left in ``{name}.json`` (``--resume``): only
    if it was made with the same ``settings[k]`` for every ``k`` in ``keys``, and only those
    ``wanted(run)`` accepts."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    changed = [k for k in keys if earlier.get("settings", {}).get(k) != settings[k]]
    if changed:
        raise SystemExit(f"{path} was made with other {', '.join(changed)}: not resuming")
    return [run for run in earlier.get("runs", []) if wanted(run)]
