"""What the operations jobs share on the command line: flags, config, overrides, exit codes.

Every job takes ``--config FILE`` (YAML of its config dataclass), its common options as flags,
and ``key.sub=value`` overrides, resolved defaults < YAML < flags < overrides. Exit status:

- 0: done (evaluated; promoted; nightly without alarm; predicted);
- 1: failed unexpectedly (the traceback is in the log above the one-line reason);
- 2: bad input: configuration, missing data or model, a store that does not answer, a model
  whose class map or inputs do not fit, evaluation data a model was trained on (or not proven
  unseen), a served model whose files do not match their recorded hashes, an identity the server
  refuses (403: "permission denied for IDENTITY on RESOURCE");
- 3: a decision the caller must see: the gate said no, a promotion lost a race, a nightly alarm.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipelines.config import ConfigError, load_config

T = TypeVar("T")
log = logging.getLogger("tsi.ops")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DECISION = 0, 1, 2, 3

# flag dest -> dotted config key, shared by the jobs that have them
EVAL_FLAGS = {"data": "eval.data", "split": "eval.split", "protocol": "eval.protocol",
              "parts": "eval.parts"}
STORE_FLAGS = {"tracking_uri": "store.tracking_uri", "storage": "store.storage"}


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with the job's config fields")
    return p


def add_task_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="task name: the registered models {task}-candidates, {task}")


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset root written by jobs.preprocess (eval.data)")
    p.add_argument("--split", help="split to evaluate on (eval.split, default val)")
    p.add_argument("--protocol", choices=("1x1", "10x3"), help="views per video (eval.protocol)")
    p.add_argument("--parts", type=int, help="Ray tasks to spread the videos over (eval.parts)")


def add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI, "
                   "else sqlite under --storage)")
    p.add_argument("--storage", help="run storage holding the embedded sqlite store "
                   "(store.storage, default runs/train)")


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def parse(p: argparse.ArgumentParser, argv: list[str] | None, *, eval_flags: bool = True
          ) -> argparse.Namespace:
    """Add the shared flags (evaluation data, MLflow store, overrides) and parse ``argv``."""
    if eval_flags:
        add_eval_flags(p)
    add_store_flags(p)
    add_overrides(p)
    return p.parse_args(argv)


def resolve(cls: type[T], args: argparse.Namespace, mapping: Mapping[str, str]) -> T:
    """``cls`` from ``--config``, the flags named in ``mapping`` (when given) and overrides."""
    flags: dict[str, Any] = {}
    for dest, dotted in mapping.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        node = flags
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return load_config(cls, args.config, args.overrides, flags=flags)


def permission_denied(exc: BaseException) -> str | None:
    """"permission denied for IDENTITY on RESOURCE" for an MLflow 403, else None."""
    import os
    import re

    text = str(exc)
    if "403" not in text and "PERMISSION_DENIED" not in text:
        return None
    endpoint = re.search(r"endpoint (\S+)", text)
    who = os.environ.get("MLFLOW_TRACKING_USERNAME") or "anonymous"
    return (f"permission denied for {who} on {endpoint.group(1) if endpoint else 'the request'}"
            " (the MLflow server answered 403: see docs/registry-and-operations.md for who may "
            "write what; jobs.grant_access sets it)")


def run(body: Callable[[], int]) -> int:
    """Start job logging, run a job body; map the platform's errors to exit codes."""
    from pipelines.evaluation.exported import ClassMapMismatch
    from pipelines.tracking.models import ModelNotFound
    from pipelines.ops.promote import PromotionConflict, PromotionRefused
    from pipelines.report import start_job_logging
    from pipelines.tracking.connection import TrackingUnavailable

    start_job_logging()
    try:
        return body()
    except (ConfigError, ValueError, FileNotFoundError, TrackingUnavailable, ModelNotFound,
            ClassMapMismatch, PromotionRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PromotionConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DECISION
    except Exception as exc:  # the log holds the traceback; the user gets one line
        denied = permission_denied(exc)
        if denied:
            print(f"error: {denied}", file=sys.stderr)
            return EXIT_BAD_INPUT
        log.exception("job failed")
        print(f"error: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
        return EXIT_FAILED
