"""Register an exported model in MLflow from the file alone (after an outage, or by hand).

    python -m jobs.register --checkpoint runs/train/RUN/model.pt [--tracking-uri URI]
        [--storage DIR] [--no-register]

The export carries its task, run name, classes, dataset hashes, metrics and clip settings; the
model goes to ``{task}-candidates`` with alias ``candidate`` and the lineage tags, attached to
the training run's MLflow run when it exists (found by the run-name tag), else to a new one.
Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded sqlite store
under ``--storage`` (default: the export's own run storage folder).
Exit status: 0 registered; 1 the store failed during registration; 2 bad input or the store
does not answer.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.register", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an exported model.pt")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--storage", help="run storage whose embedded sqlite store to use")
    p.add_argument("--no-register", action="store_true", help="log the model, do not register it")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per store request")
    p.add_argument("--retries", type=int, default=3)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from pipelines.report import start_job_logging

    args = parse_args(argv)
    start_job_logging()
    from pipelines.tracking.connection import TrackingUnavailable, probe, resolve_store
    from pipelines.tracking.publish import publish_export
    from pipelines.train.config import TrackingSettings

    from pipelines.io import is_uri
    from pipelines.train.layout import local_export

    if is_uri(args.checkpoint) and not (args.storage or args.tracking_uri
                                        or os.environ.get("MLFLOW_TRACKING_URI")):
        print(f"error: --checkpoint {args.checkpoint} is in an object store: name the MLflow "
              "server with --tracking-uri or MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2
    try:
        export = Path(local_export(args.checkpoint))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: --checkpoint {exc}", file=sys.stderr)
        return 2
    if not export.is_file():
        print(f"error: --checkpoint {export} is not a file", file=sys.stderr)
        return 2
    storage = args.storage or str(export.resolve().parent.parent)
    store = resolve_store(TrackingSettings(backend="mlflow", uri=args.tracking_uri), storage)
    try:
        probe(store, args.timeout)
        version = publish_export(store, export, register=not args.no_register,
                                 retries=args.retries, timeout_s=args.timeout)
    except (TrackingUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the store failed mid-way: the export is untouched
        print(f"error: registration failed ({type(exc).__name__}: {str(exc)[:300]}); the export "
              f"{export} is untouched, re-run this command", file=sys.stderr)
        return 1
    if version is not None:
        print(f"registered {version.name} version {version.version} (alias candidate) in "
              f"{store.uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
