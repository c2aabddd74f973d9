"""The tracking protocol the trainer calls, and the two implementations that need no server.

Lifecycle (each side is one call, so a backend such as MLflow plugs in without the trainer
knowing it): the **driver** calls :meth:`Tracking.begin` before any worker starts (a backend
checks it can reach its store here and creates or finds the run) and gets a small picklable
handle; **rank 0** calls :meth:`Tracking.epoch_logger` with that handle inside the worker and
logs each epoch with the trainer's global step; the **driver** calls :meth:`Tracking.end`
after ``fit`` with the exported checkpoint.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Protocol


class EpochLogger(Protocol):
    def log_epoch(self, metrics: Mapping[str, float], *, step: int, epoch: int) -> None: ...

    def close(self) -> None: ...


class Tracking(Protocol):
    def check(self) -> None:
        """Fail fast (seconds) when the backend cannot be reached: before any data is read."""
        ...

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]: ...

    def epoch_logger(self, handle: Mapping[str, Any]) -> EpochLogger: ...

    def end(self, handle: Mapping[str, Any], export_path: str,
            summary: Mapping[str, Any]) -> None: ...

    def fail(self, handle: Mapping[str, Any], reason: str, summary: Mapping[str, Any]) -> None:
        """The run ended without a publishable model (e.g. its export check failed)."""
        ...

    def resolve_weights(self, source: str, workdir: str) -> tuple[str, str]:
        """A registered model's (``models:/...``) verified checkpoint under ``workdir``, and
        which version it is (``NAME vN``): the registry lives in the tracking backend."""
        ...


def no_registry(source: str) -> tuple[str, str]:
    """What a backend without a model registry answers to ``models:/`` weights."""
    raise ValueError(f"model.pretrained {source}: registered models are read from MLflow; use "
                     "tracking.backend=mlflow (or the export's path or URI)")


class _Silent:
    def log_epoch(self, metrics: Mapping[str, float], *, step: int, epoch: int) -> None:
        pass

    def close(self) -> None:
        pass


class NoTracking:
    """Records nothing (tests, or a run whose logs are enough)."""

    def check(self) -> None:
        pass

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
        return {"run_name": run_name}

    def epoch_logger(self, handle: Mapping[str, Any]) -> EpochLogger:
        return _Silent()

    def end(self, handle: Mapping[str, Any], export_path: str, summary: Mapping[str, Any]) -> None:
        pass

    def fail(self, handle: Mapping[str, Any], reason: str, summary: Mapping[str, Any]) -> None:
        pass

    def resolve_weights(self, source: str, workdir: str) -> tuple[str, str]:
        return no_registry(source)


class _JsonLines:
    """One JSON object per epoch, to stdout (``tsi.metrics {...}``) or appended to a file."""

    def __init__(self, run_name: str, path: str | None = None) -> None:
        self.run_name = run_name
        self.path = path

    def log_epoch(self, metrics: Mapping[str, float], *, step: int, epoch: int) -> None:
        record = {"run": self.run_name, "epoch": epoch, "step": step, **metrics}
        line = json.dumps(record, sort_keys=True, default=float)
        if self.path is None:
            print("tsi.metrics " + line, flush=True)
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def close(self) -> None:
        pass


class StdoutTracking:
    """One ``tsi.metrics {json}`` line per epoch in the job log (greppable, no server needed)."""

    def check(self) -> None:
        pass

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
        return {"run_name": run_name}

    def epoch_logger(self, handle: Mapping[str, Any]) -> EpochLogger:
        return _JsonLines(str(handle["run_name"]))

    def end(self, handle: Mapping[str, Any], export_path: str, summary: Mapping[str, Any]) -> None:
        print("tsi.export " + json.dumps({"run": handle["run_name"], "path": export_path,
                                           **summary}, sort_keys=True, default=str),
              file=sys.stdout, flush=True)

    def fail(self, handle: Mapping[str, Any], reason: str, summary: Mapping[str, Any]) -> None:
        print("tsi.failed " + json.dumps({"run": handle["run_name"], "reason": reason,
                                           **summary}, sort_keys=True, default=str),
              file=sys.stdout, flush=True)

    def resolve_weights(self, source: str, workdir: str) -> tuple[str, str]:
        return no_registry(source)


class FileTracking(StdoutTracking):
    """Epochs appended to ``{run_dir}/metrics.jsonl`` (needs storage every rank 0 can reach)."""

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
        if "://" in run_dir:
            raise ValueError(f"tracking.backend=jsonl appends to a local file; {run_dir} is an "
                             "object store: use tracking.backend=mlflow or stdout")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return {"run_name": run_name, "path": str(Path(run_dir) / "metrics.jsonl")}

    def epoch_logger(self, handle: Mapping[str, Any]) -> EpochLogger:
        return _JsonLines(str(handle["run_name"]), str(handle["path"]))


BACKENDS: dict[str, type] = {"none": NoTracking, "stdout": StdoutTracking, "jsonl": FileTracking}


def builtin_tracking(name: str) -> Tracking:
    """A backend of this package (``none``, ``stdout``, ``jsonl``); ``mlflow`` lives in
    :mod:`pipelines.tracking`, above the trainer, and is passed in by the job."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ValueError(f"tracking backend {name!r} is not built in ({sorted(BACKENDS)}); "
                         "pass it to run_training(tracking=...)") from None
