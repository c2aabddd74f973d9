"""What the operations jobs add to ``pipelines.cli``: their shared flags and their exit codes.

The ops jobs (evaluate, promote, nightly_eval, predict, fetch_model) exit with
``pipelines.cli``'s codes:

- 0: done (evaluated; promoted; nightly without alarm; predicted; fetched);
- 1: failed unexpectedly (the traceback is in the log above the one-line reason);
- 2: bad input: configuration, missing data or model, a store that does not answer, a model
  whose class map or inputs do not fit, evaluation data a model was trained on (or not proven
  unseen), a served model whose files do not match their recorded hashes, an identity the server
  refuses (403: "permission denied for IDENTITY on RESOURCE");
- 3: a decision the caller must see: the gate said no, a promotion lost a race, a nightly alarm.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from pipelines.cli import EXIT_BAD_INPUT, EXIT_DECISION, ExitCodes, add_overrides

# flag dest -> dotted config key, shared by the jobs that have them
EVAL_FLAGS = {"data": "eval.data", "split": "eval.split", "protocol": "eval.protocol",
              "parts": "eval.parts"}
STORE_FLAGS = {"tracking_uri": "store.tracking_uri", "storage": "store.storage"}
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


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


def add_shared_flags(p: argparse.ArgumentParser, *, eval_flags: bool = True) -> None:
    """After a job's own flags: evaluation data (unless ``eval_flags`` is false), MLflow store,
    overrides."""
    if eval_flags:
        add_eval_flags(p)
    add_store_flags(p)
    add_overrides(p)


def _is_override(arg: str) -> bool:
    """``key.sub=value``, unless a file of that name exists (``v=1.mp4`` is a video then)."""
    return bool(_OVERRIDE.match(arg)) and not os.path.lexists(arg)


def add_videos(p: argparse.ArgumentParser) -> None:
    """After a job's own flags: MLflow store, then videos mixed with overrides."""
    add_store_flags(p)
    p.add_argument("inputs", nargs="*", metavar="VIDEO|key.sub=value",
                   help="video files and config overrides; everything after -- is a video")


def parse_videos(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse with :func:`add_videos`'s inputs split into ``args.videos`` (everything after
    ``--`` is a video) and ``args.overrides``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.overrides = [a for a in args.inputs if _is_override(a)]
    args.videos = [a for a in args.inputs if not _is_override(a)] + argv[cut + 1:] or None
    return args


def exit_codes() -> ExitCodes:
    """The platform's errors an ops job maps to 2 and 3 (imported as a job runs, not on --help)."""
    from pipelines.evaluation.exported import ClassMapMismatch
    from pipelines.tracking.models import ModelNotFound
    from pipelines.ops.promote import PromotionConflict, PromotionRefused
    from pipelines.tracking.connection import TrackingUnavailable

    return {(ValueError, FileNotFoundError, TrackingUnavailable, ModelNotFound, ClassMapMismatch,
             PromotionRefused): EXIT_BAD_INPUT,
            PromotionConflict: EXIT_DECISION}


def permission_denied(exc: BaseException) -> str | None:
    """"permission denied for IDENTITY on RESOURCE" for an MLflow 403, else None."""
    text = str(exc)
    if "403" not in text and "PERMISSION_DENIED" not in text:
        return None
    endpoint = re.search(r"endpoint (\S+)", text)
    who = os.environ.get("MLFLOW_TRACKING_USERNAME") or "anonymous"
    return (f"permission denied for {who} on {endpoint.group(1) if endpoint else 'the request'}"
            " (the MLflow server answered 403: see docs/registry-and-operations.md for who may "
            "write what; jobs.grant_access sets it)")
