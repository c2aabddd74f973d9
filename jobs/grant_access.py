"""Set up the MLflow identities of one task on a basic-auth tracking server (run as admin).

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \
    TSI_TRAINER_PASSWORD=... TSI_PROMOTER_PASSWORD=... \
    python -m jobs.grant_access --tracking-uri https://mlflow.example --task tsi-kinetics400 \
        [--trainer tsi-trainer] [--promoter tsi-promoter]

Creates both registered models and the experiments of the task as the admin, the two users (or
updates their passwords), and grants: the trainer EDIT on ``{task}-candidates`` and READ on
``{task}``, EDIT on the experiments ``{task}`` and ``{task}-evaluation``; the promoter EDIT on
both registered models and on the experiments ``{task}-promotion`` and ``{task}-nightly``.
Only the promoter can then move ``{task}@champion``. Passwords are read from the environment
(Kubernetes Secrets in the deployment), never from arguments or config.
Config: ``pipelines.tracking.access.GrantConfig``.

Exit status: 0 granted; 1 the server refused or failed; 2 missing input.
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli

# flag dest -> the config key it sets
FLAGS = {"tracking_uri": "tracking_uri", "task": "task", "trainer": "trainer",
         "promoter": "promoter"}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.grant_access", __doc__)
    p.add_argument("--tracking-uri", help="the MLflow server (default MLFLOW_TRACKING_URI)")
    p.add_argument("--task", required=True)
    p.add_argument("--trainer", help="training identity's user name (default tsi-trainer)")
    p.add_argument("--promoter", help="promotion identity's user name (default tsi-promoter)")
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.report import format_table
        from pipelines.tracking.access import GrantConfig, grant_from_environment

        grants = grant_from_environment(cli.resolve_config(GrantConfig, args, FLAGS))
        print(format_table([{"user": user, "resource": name, "permission": permission}
                            for user, models in grants.items()
                            for name, permission in models.items()]))
        return cli.EXIT_OK

    return cli.run(body, {ValueError: cli.EXIT_BAD_INPUT})


if __name__ == "__main__":
    sys.exit(main())
