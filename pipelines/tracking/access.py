"""Who may write what in an MLflow server with basic-auth: the registry layout made enforceable.

Per task (``registry``'s layout), run by an admin before any training:

- both registered models are created **by the admin**, so neither identity owns (and could
  re-grant) them: the creator of a registered model gets MANAGE on it;
- the **training** identity gets EDIT on ``{task}-candidates`` (new versions, the
  ``candidate`` alias) and READ on ``{task}``: it can never move ``champion``;
- the **promotion** identity (promotion, rollback and nightly jobs) gets EDIT on ``{task}``
  (copied versions, ``champion``/``previous-champion``, the lease tag) and on
  ``{task}-candidates`` (the decision tags it writes on candidate versions);
- anonymous requests get nothing: the basic-auth app answers 401 without credentials;
- the experiments are created by the admin too: the trainer gets EDIT on ``{task}`` (training
  runs) and ``{task}-evaluation`` (``jobs.evaluate``), the promoter EDIT on ``{task}-promotion``
  (its evaluation runs, decisions and the served models' files) and ``{task}-nightly``. With the
  server's ``default_permission = READ`` each reads the other's but writes only its own: the
  files of a served model are in no experiment the trainer can write.

Users are created when missing; an existing user's password is updated (so a rotated Kubernetes
Secret takes effect by re-running this). Passwords come from the environment, never from files
in the repository.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from pipelines.tracking.runs import ensure_experiment
from pipelines.tracking.registry import candidates_name, ensure_registered_model, production_name

log = logging.getLogger("tsi.tracking")


@dataclass(frozen=True)
class Identity:
    username: str
    password: str


@dataclass(frozen=True)
class GrantConfig:
    """Who gets access to ``task``; the passwords are never config (see ``PASSWORD_ENV``)."""

    task: str | None = None
    tracking_uri: str | None = None  # default MLFLOW_TRACKING_URI
    trainer: str = "tsi-trainer"  # the training identity's user name
    promoter: str = "tsi-promoter"  # the promotion identity's user name


# the admin's credentials (read by MLflow itself) and the two identities' passwords
PASSWORD_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "TSI_TRAINER_PASSWORD",
                "TSI_PROMOTER_PASSWORD")


def grant_from_environment(cfg: GrantConfig) -> dict[str, dict[str, str]]:
    """:func:`grant_task_access` for ``cfg`` with the passwords in ``PASSWORD_ENV``."""
    tracking_uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    missing = [name for name in PASSWORD_ENV if not os.environ.get(name)]
    if not tracking_uri or missing:
        raise ValueError(f"set --tracking-uri and {', '.join(missing) or 'the passwords'} in the "
                         "environment")
    if not cfg.task:
        raise ValueError("set --task")
    return grant_task_access(tracking_uri, cfg.task,
                             Identity(cfg.trainer, os.environ["TSI_TRAINER_PASSWORD"]),
                             Identity(cfg.promoter, os.environ["TSI_PROMOTER_PASSWORD"]))


def _ensure_user(auth: Any, who: Identity) -> None:
    from mlflow.exceptions import MlflowException

    try:
        auth.create_user(who.username, who.password)
        log.info("created MLflow user %s", who.username)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "exists" not in str(exc):
            raise
        auth.update_user_password(who.username, who.password)
        log.info("MLflow user %s exists; password updated", who.username)


def grant_task_access(tracking_uri: str, task: str, trainer: Identity, promoter: Identity
                      ) -> dict[str, dict[str, str]]:
    """Create users, both registered models and the experiments, grant as above; returns who
    has what (``{user: {"registered model NAME" | "experiment NAME": permission}}``).

    Must run with admin credentials in ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``.
    """
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    if trainer.username == promoter.username:
        raise ValueError("the training and promotion identities must differ")
    auth = AuthServiceClient(tracking_uri)
    client = MlflowClient(tracking_uri)
    for who in (trainer, promoter):
        _ensure_user(auth, who)
    candidates, production = candidates_name(task), production_name(task)
    ensure_registered_model(client, candidates,
                            f"Every finished training run of {task} (alias candidate).")
    ensure_registered_model(client, production,
                            f"Production model of {task}; only promotion writes here.")
    experiments = {name: ensure_experiment(client, name, None) for name in (
        task, f"{task}-evaluation", f"{task}-promotion", f"{task}-nightly")}
    models = {trainer.username: {candidates: "EDIT", production: "READ"},
              promoter.username: {candidates: "EDIT", production: "EDIT"}}
    runs = {trainer.username: {task: "EDIT", f"{task}-evaluation": "EDIT"},
            promoter.username: {f"{task}-promotion": "EDIT", f"{task}-nightly": "EDIT"}}
    grants: dict[str, dict[str, str]] = {}
    for username in models:
        for name, permission in models[username].items():
            auth.grant_user_permission(username, "registered_model", name, permission)
            grants.setdefault(username, {})[f"registered model {name}"] = permission
        for name, permission in runs[username].items():
            auth.grant_user_permission(username, "experiment", experiments[name], permission)
            grants[username][f"experiment {name}"] = permission
    return grants
