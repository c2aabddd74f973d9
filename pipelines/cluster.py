"""Connecting to Ray, one way for every job: ``RAY_ADDRESS`` when set, else a local instance;
and naming "this job" so that a retried RayJob resumes its training run.

Bottom layer (imports nothing of the platform): preprocessing, evaluation and batch prediction
all start their Ray work through :func:`ensure_ray`, so a job behaves the same on a laptop and
under ``ray job submit``.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any


def ensure_ray() -> Any:
    """The ``ray`` module, connected: ``RAY_ADDRESS`` if set, else a local or new instance."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None)
    return ray


# KubeRay names a RayJob's Ray cluster and its Ray job ``{RayJob name}-{5 characters}``
# (``rand.String(5)`` of k8s apimachinery: lowercase consonants and digits), and draws both again
# for every retry of the RayJob. The part before the suffix is therefore stable across retries
# and new for every RayJob created with ``metadata.generateName``.
_KUBERAY_SUFFIX = re.compile(
    r"^(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-[bcdfghjklmnpqrstvwxz2456789]{5}$")
RAY_JOB_PLACEHOLDER = "{ray_job}"


def ray_job_submission_id(environ: Mapping[str, str] | None = None) -> str | None:
    """This driver's Ray job submission id (``ray job submit``), else ``None``.

    The job supervisor hands the driver its job config, metadata included, in
    ``RAY_JOB_CONFIG_JSON_ENV_VAR``; read from there so no Ray connection is needed.
    """
    env = os.environ if environ is None else environ
    raw = env.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    value = metadata.get("job_submission_id")
    return str(value) if value else None


def ray_job_name(environ: Mapping[str, str] | None = None) -> str:
    """A name for "this job" that a retry keeps and a new job never reuses.

    Under a KubeRay RayJob (``RAY_CLUSTER_NAME`` set on the head from the pod label
    ``ray.io/cluster``, as ``infra/k8s`` does): the RayJob's name, recovered from the submission
    id and the cluster name, which share it before their random suffixes. Under a plain
    ``ray job submit``: the submission id (pass ``--submission-id`` to retry under the same one).
    Raises ``ValueError`` outside a submitted Ray job.
    """
    env = os.environ if environ is None else environ
    submission = ray_job_submission_id(env)
    if submission is None:
        raise ValueError(f"{RAY_JOB_PLACEHOLDER} names the Ray job, but this process was not "
                           "started by `ray job submit` or a KubeRay RayJob; give a run name")
    job = _KUBERAY_SUFFIX.match(submission)
    cluster = _KUBERAY_SUFFIX.match(env.get("RAY_CLUSTER_NAME", ""))
    if job and cluster and job["name"] == cluster["name"]:
        return job["name"]
    return submission


def expand_ray_job(name: str, environ: Mapping[str, str] | None = None) -> str:
    """``name`` with ``{ray_job}`` replaced by :func:`ray_job_name` (unchanged without it)."""
    if RAY_JOB_PLACEHOLDER not in name:
        return name
    return name.replace(RAY_JOB_PLACEHOLDER, ray_job_name(environ))
