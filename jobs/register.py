"""Register an exported model in MLflow from the file alone (after an outage, or by hand).

    python -m jobs.register --checkpoint runs/train/RUN/model.pt [--tracking-uri URI]
        [--storage DIR] [--no-register]

The export carries its task, run name, classes, dataset hashes, metrics and clip settings; the
model goes to ``{task}-candidates`` with alias ``candidate`` and the lineage tags, attached to
the training run's MLflow run when it exists (found by the run-name tag), else to a new one.
Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded sqlite store
under ``--storage`` (default: the export's own run storage folder).
Config: ``pipelines.tracking.from_export.RegisterConfig``.
Exit status: 0 registered; 1 the store failed during registration; 2 bad input or the store
does not answer.
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli

# flag dest -> the config key it sets
FLAGS = {"checkpoint": "checkpoint", "tracking_uri": "tracking_uri", "storage": "storage",
         "no_register": "no_register", "timeout": "timeout", "retries": "retries"}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.register", __doc__)
    p.add_argument("--checkpoint", required=True, help="an exported model.pt")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--storage", help="run storage whose embedded sqlite store to use")
    p.add_argument("--no-register", action="store_true", help="log the model, do not register it")
    p.add_argument("--timeout", type=float, help="seconds per store request (default 10)")
    p.add_argument("--retries", type=int, help="store request retries (default 3)")
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pipelines.tracking.connection import TrackingUnavailable
    from pipelines.tracking.from_export import RegisterConfig, RegistrationFailed, register_export

    def body() -> int:
        version, store_uri = register_export(cli.resolve_config(RegisterConfig, args, FLAGS))
        if version is not None:
            print(f"registered {version.name} version {version.version} (alias candidate) in "
                  f"{store_uri}")
        return cli.EXIT_OK

    return cli.run(body, {(TrackingUnavailable, ValueError): cli.EXIT_BAD_INPUT,
                          RegistrationFailed: cli.EXIT_FAILED})


if __name__ == "__main__":
    sys.exit(main())
