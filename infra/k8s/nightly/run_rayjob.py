"""Create one RayJob from a template and wait until it ends: the CronJob pod's whole program.

    python run_rayjob.py --template rayjob-nightly-eval.yaml --name "$JOB_NAME" [--poll-s 30]

Run by ``cronjob.yaml`` (concurrencyPolicy Forbid), so a night's Kubernetes Job lasts exactly as
long as its RayJob and the next night cannot start while one runs. The RayJob is named after
the CronJob's Job: a retried pod of the same Job finds the RayJob it created (HTTP 409) and
waits on it instead of starting a second one. Exit status:

- 0 the Ray job SUCCEEDED;
- 3 the RayJob ended and did not succeed (a nightly alarm, a failure, a stop): the night's
  answer. cronjob.yaml's podFailurePolicy fails the Job at once on it, without pod retries;
- 1 the Kubernetes API could not be reached or refused us after in-process retries with
  exponential backoff: an error, which the Job retries with a new pod;
- 2 bad arguments (also final).

Talks to the Kubernetes API with the pod's service-account token, read again for every request:
the kubelet rotates the projected token (bound tokens expire, default one hour), and a night's
wait outlives it. RBAC in cronjob.yaml; only the standard library and PyYAML are needed.
"""
from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PLACEHOLDER = "__RAYJOB_NAME__"
TERMINAL_FAILED = {"Failed", "ValidationFailed"}  # KubeRay v1 JobDeploymentStatus values
ENDED_BADLY = 3   # the RayJob's own answer: final, not retried
API_ERROR = 1     # could not talk to the API server: retried by the Job
RETRYABLE_HTTP = {401, 403, 408, 429, 500, 502, 503, 504}  # 401/403: a token mid-rotation


def outcome(status: dict[str, Any]) -> int | None:
    """The exit status for a RayJob ``status``, or ``None`` while it has not ended.

    ``Complete`` means the Ray job reached a terminal state; only SUCCEEDED is a success.
    ``Failed`` is terminal here because the nightly template sets ``backoffLimit: 0`` (with
    retries KubeRay moves a failed RayJob on to ``Retrying``, which is not terminal).
    """
    deployment = status.get("jobDeploymentStatus", "")
    if deployment == "Complete":
        return 0 if status.get("jobStatus") == "SUCCEEDED" else ENDED_BADLY
    if deployment in TERMINAL_FAILED:
        return ENDED_BADLY
    return None


class Api:
    """The few Kubernetes API calls this needs, authenticated as the pod's service account.

    ``token_file`` is read on every request (the kubelet replaces it before it expires).
    """

    def __init__(self, server: str, token_file: Path, namespace: str,
                 context: ssl.SSLContext | None):
        self.server, self.token_file = server, Path(token_file)
        self.namespace, self.context = namespace, context

    @classmethod
    def in_cluster(cls) -> Api:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        context = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
        return cls(f"https://{host}:{port}", ACCOUNT / "token",
                   (ACCOUNT / "namespace").read_text().strip(), context)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
            return json.loads(resp.read())

    def _rayjobs(self) -> str:
        return f"/apis/ray.io/v1/namespaces/{self.namespace}/rayjobs"

    def create(self, rayjob: dict) -> bool:
        """True when created, False when a RayJob of that name exists already."""
        try:
            self._call("POST", self._rayjobs(), rayjob)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                return False
            raise

    def status(self, name: str) -> dict:
        return self._call("GET", f"{self._rayjobs()}/{name}").get("status") or {}


def load_rayjob(template: Path, name: str) -> dict:
    """The template with its placeholder name replaced; refuses a template without one."""
    text = template.read_text()
    if PLACEHOLDER not in text:
        raise ValueError(f"{template}: no {PLACEHOLDER} to name the RayJob")
    doc = yaml.safe_load(text.replace(PLACEHOLDER, name))
    if doc.get("kind") != "RayJob":
        raise ValueError(f"{template}: kind {doc.get('kind')!r}, expected RayJob")
    return doc


def retrying(call, *, what: str, log, attempts: int = 6, first_s: float = 1.0,
             sleep=time.sleep):
    """``call()``, retried on transient API errors with exponential backoff (1, 2, 4 ... s).

    Only errors back off; a RayJob that is still running is polled at the steady ``poll_s``.
    """
    for attempt in range(attempts):
        try:
            return call()
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRYABLE_HTTP or attempt == attempts - 1:
                raise
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == attempts - 1:
                raise
            reason = str(exc)
        delay = first_s * 2 ** attempt
        log(f"{what}: {reason}; retrying in {delay:g} s")
        sleep(delay)
    raise AssertionError("unreachable")


def run(api: Api, rayjob: dict, *, poll_s: float, log=print, backoff_s: float = 1.0) -> int:
    name = rayjob["metadata"]["name"]
    created = retrying(lambda: api.create(rayjob), what=f"create RayJob {name}", log=log,
                       first_s=backoff_s)
    log(f"RayJob {name}: {'created' if created else 'exists (an earlier attempt): waiting on it'}")
    last = None
    while True:
        status = retrying(lambda: api.status(name), what=f"read RayJob {name}", log=log,
                          first_s=backoff_s)
        now = (status.get("jobDeploymentStatus"), status.get("jobStatus"))
        if now != last:
            log(f"RayJob {name}: deployment {now[0] or '-'}, job {now[1] or '-'}")
            last = now
        code = outcome(status)
        if code is not None:
            if code:
                log(f"RayJob {name} did not succeed: {status.get('reason', '')} "
                    f"{status.get('message', '')}".rstrip())
            return code
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", required=True, type=Path)
    p.add_argument("--name", required=True, help="the RayJob's name (the CronJob's Job name)")
    p.add_argument("--poll-s", type=float, default=30.0)
    args = p.parse_args(argv)
    if len(args.name) > 47:  # KubeRay: a RayJob's cluster name "{name}-xxxxx" must fit 53
        print(f"error: RayJob name {args.name!r} is longer than 47 characters", file=sys.stderr)
        return 2
    try:
        rayjob = load_rayjob(args.template, args.name)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return run(Api.in_cluster(), rayjob, poll_s=args.poll_s, log=lambda m: print(m, flush=True))
    except (OSError, KeyError, urllib.error.URLError) as exc:
        print(f"error: Kubernetes API: {exc}", file=sys.stderr)
        return API_ERROR


if __name__ == "__main__":
    sys.exit(main())
