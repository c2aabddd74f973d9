"""Set up the MLflow identities of one task on a basic-auth tracking server (run as admin).

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \
    TSI_TRAINER_PASSWORD=... TSI_PROMOTER_PASSWORD=... \
    python -m jobs.grant_access --tracking-uri https://mlflow.example --task tsi-kinetics400 \
        [--trainer tsi-trainer] [--promoter tsi-promoter]

Creates both registered models and the experiments of the task as the admin, the two users (or
updates their passwords), and grants: the trainer EDIT on ``{task}-candidates`` and READ on
``{task}``, EDIT on the experiments ``{task}`` and ``{task}-evaluation``; the promoter EDIT on
both registered models and on the experiments ``{task}-promotion`` and ``{task}-nightly``. Only the promoter can then move ``{task}@champion``. Passwords are read
from the environment (Kubernetes Secrets in the deployment), never from arguments.

Exit status: 0 granted; 1 the server refused or failed; 2 missing input.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.grant_access", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    p.add_argument("--task", required=True)
    p.add_argument("--trainer", default="tsi-trainer", help="training identity's user name")
    p.add_argument("--promoter", default="tsi-promoter", help="promotion identity's user name")
    args = p.parse_args(argv)
    from pipelines.report import format_table, start_job_logging

    start_job_logging()
    missing = [name for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                 "TSI_TRAINER_PASSWORD", "TSI_PROMOTER_PASSWORD")
               if not os.environ.get(name)]
    if not args.tracking_uri or missing:
        print(f"error: set --tracking-uri and {', '.join(missing) or 'the passwords'} in the "
              "environment", file=sys.stderr)
        return 2
    from pipelines.tracking.access import Identity, grant_task_access

    try:
        grants = grant_task_access(args.tracking_uri, args.task,
                                   Identity(args.trainer, os.environ["TSI_TRAINER_PASSWORD"]),
                                   Identity(args.promoter, os.environ["TSI_PROMOTER_PASSWORD"]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the server's refusal or failure, in one line
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    print(format_table([{"user": user, "resource": name, "permission": permission}
                        for user, models in grants.items() for name, permission in models.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
