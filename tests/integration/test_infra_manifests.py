"""Every manifest in infra/ parses and validates offline, and what it names exists.

- built-in kinds against the Kubernetes OpenAPI schemas bundled by ``kubernetes-validate``
  (strict: an unknown field fails), KubeRay kinds against the upstream KubeRay v1.7.0 CRD schemas
  (infra/k8s/schema/kuberay-v1.7.0.json.gz, objects closed as under strict field validation)
  with their pod templates checked as core/v1 PodTemplates;
- the policy checks of infra/k8s/policy.py over every manifest, each shown to catch its defect;
- every Ray pod fits the allocatable resources of its node type (table below);
- the rendered KubeRay manifests are current (``infra/k8s/render.py --check``);
- names within KubeRay's length limits; no secret value written into a manifest;
- each RayJob entrypoint's module, flags and config files exist, and the configs load;
- the Ray cluster-launcher YAML validates against the schema shipped with the installed Ray.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib
import importlib.util
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
KUBE_VERSION = "1.33"  # the oldest Kubernetes the manifests target (CronJob timeZone: >= 1.27)
SCHEMA = json.loads(gzip.decompress((K8S / "schema" / "kuberay-v1.7.0.json.gz").read_bytes()))
KUBERAY_COMMIT = "59d663aeec13760646da3db9c1cf8cfe883e30b7"  # tag v1.7.0 of ray-project/kuberay
# one validator: jsonschema.validate would re-check the 660 kB schema itself on every call
KUBERAY_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# CRDs of other operators: no schema offline; their fields are checked by name below
OTHER_CRDS = ("monitoring.coreos.com/",)
# KubeRay v1.7.0 controllers/ray/utils/constant.go; Kubernetes: a Service is a DNS label, a
# CronJob leaves room for its Jobs' 11-character suffix; other objects are DNS subdomains
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayCronJob": 36, "Service": 63, "CronJob": 52}
GENERATED_SUFFIX = 5  # metadata.generateName: the API server appends 5 characters
PLACEHOLDERS = ("__RAYJOB_NAME__",)
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)


def _policy():
    sys.path.insert(0, str(K8S))
    try:
        return importlib.import_module("policy")
    finally:
        sys.path.pop(0)


policy = _policy()
DOCS = [(f"infra/k8s/{rel}", d) for rel, d in policy.documents()]
KUBERAY = [(rel, d) for rel, d in DOCS if d["apiVersion"].startswith("ray.io/")]
BUILTIN = [(rel, d) for rel, d in DOCS
           if not d["apiVersion"].startswith(("ray.io/", *OTHER_CRDS))]


def _pod_templates(doc: dict) -> list[dict]:
    spec = doc["spec"]
    if doc["kind"] == "RayCronJob":
        spec = spec["jobTemplate"]
    cluster = spec.get("rayClusterSpec", spec)
    return ([cluster["headGroupSpec"]["template"]]
            + [g["template"] for g in cluster.get("workerGroupSpecs", [])])


def _rayjob_specs() -> list[tuple[str, dict]]:
    out = []
    for rel, doc in KUBERAY:
        if doc["kind"] == "RayJob":
            out.append((rel, doc["spec"]))
        elif doc["kind"] == "RayCronJob":
            out.append((rel, doc["spec"]["jobTemplate"]))
    return out


def test_the_rendered_kuberay_manifests_are_current():
    proc = subprocess.run([sys.executable, str(K8S / "render.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_every_kind_of_the_platform_is_there():
    kinds = {d["kind"] for _, d in DOCS}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob", "ServiceAccount", "Role",
            "RoleBinding", "Deployment", "Service", "StatefulSet", "Job",
            "PersistentVolumeClaim", "NetworkPolicy", "PodDisruptionBudget", "PriorityClass",
            "ResourceQuota", "Ingress", "PodMonitor", "PrometheusRule"} <= kinds, kinds
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"]
                  for _, d in KUBERAY if d["kind"] == "RayJob"}
    assert {"preprocess", "train", "evaluate", "promote", "predict", "nightly-eval"} <= components


@pytest.mark.parametrize("rel,doc", BUILTIN, ids=[f"{r}:{d['kind']}" for r, d in BUILTIN])
def test_builtin_kinds_validate_against_the_kubernetes_schema(rel, doc):
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("rel,doc", KUBERAY, ids=[f"{r}:{d['kind']}" for r, d in KUBERAY])
def test_kuberay_kinds_validate_and_their_pods_are_valid_pods(rel, doc):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in KUBERAY_VALIDATOR.iter_errors(doc)]
    assert not errors, "\n".join(errors)
    for template in _pod_templates(doc):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                      "metadata": {"name": "check"}, "template": template},
                                     KUBE_VERSION, strict=True)


def test_the_schema_is_kuberays_own_at_the_pinned_commit():
    assert SCHEMA["kuberay_commit"] == KUBERAY_COMMIT and SCHEMA["kuberay_ref"] == "v1.7.0"
    job = SCHEMA["$defs"]["RayJob"]["properties"]
    # fields of v1.7.0 that a hand-written subset lacked
    assert {"deletionStrategy", "preRunningDeadlineSeconds", "managedBy"} <= set(job)


def test_the_kuberay_schema_rejects_what_the_operator_would_reject_or_ignore():
    rel, doc = next((r, d) for r, d in KUBERAY if d["kind"] == "RayJob")
    validator = KUBERAY_VALIDATOR
    bad = [
        ("typo", lambda s: s.update(shutdownAfterJobFinish=True)),
        ("autoscaler requests misplaced",
         lambda s: s["rayClusterSpec"]["autoscalerOptions"].update(requests={"cpu": "1"})),
        ("start params not strings",
         lambda s: s["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0})),
        ("unknown deletion policy",
         lambda s: s["deletionStrategy"]["onSuccess"].update(policy="DeleteEverything")),
        ("pre-running deadline of 0", lambda s: s.update(preRunningDeadlineSeconds=0)),
        ("group field misspelt",
         lambda s: s["rayClusterSpec"]["workerGroupSpecs"][0].update(maxReplica=3)),
    ]
    for what, change in bad:
        broken = json.loads(json.dumps(doc))
        change(broken["spec"])
        assert list(validator.iter_errors(broken)), f"{what} was accepted"


def test_the_schema_script_writes_what_is_committed(tmp_path):
    """The committed schema is the script's output for the cited commit (needs a KubeRay clone:
    KUBERAY_GIT_DIR; skipped without one, as offline CI has none)."""
    git_dir = os.environ.get("KUBERAY_GIT_DIR")
    if not git_dir:
        pytest.skip("set KUBERAY_GIT_DIR to a ray-project/kuberay clone to re-extract the schema")
    spec = importlib.util.spec_from_file_location(
        "extract_kuberay_schema", K8S / "schema" / "extract_kuberay_schema.py")
    extract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract)
    assert extract.extract(git_dir, "v1.7.0") == SCHEMA


@pytest.mark.parametrize("rel,doc", DOCS, ids=[f"{r}:{d['kind']}" for r, d in DOCS])
def test_names_fit_and_no_secret_is_written_into_a_manifest(rel, doc):
    meta = doc["metadata"]
    name = meta.get("name") or meta["generateName"] + "x" * GENERATED_SUFFIX
    limit = MAX_NAME.get(doc["kind"], 253)
    if name not in PLACEHOLDERS:
        assert len(name) <= limit, f"{rel}: {doc['kind']} name {name!r} > {limit} characters"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), f"{rel}: {name!r}"

    def walk(node):
        if isinstance(node, dict):
            if "name" in node and ("value" in node or "valueFrom" in node):
                if SECRETISH.search(str(node["name"])):
                    assert "value" not in node, f"{rel}: {node['name']} has a literal value"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(doc)
    assert doc["kind"] != "Secret", f"{rel}: Secrets are created by hand, never committed"


def test_the_nightly_cronjob_waits_for_its_rayjob_and_never_overlaps():
    [cron] = [d for _, d in BUILTIN if d["kind"] == "CronJob"
              and d["metadata"]["name"] == "tsi-nightly-eval"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"][:2] == ["python", "/nightly/run_rayjob.py"]
    kustom = yaml.safe_load((K8S / "nightly" / "kustomization.yaml").read_text())
    files = kustom["configMapGenerator"][0]["files"]
    assert {"rayjob-nightly-eval.yaml", "run_rayjob.py"} == set(files)
    for name in [*files, *kustom["resources"]]:
        assert (K8S / "nightly" / name).is_file(), name
    rules = cron["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "run-rayjob",
                                                 "operator": "In", "values": [2, 3]}} in rules
    [role] = [d for _, d in BUILTIN if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                              "verbs": ["create", "get"]}]
    # the night's RayJob is not retried by KubeRay: Failed is final, so the pod's wait ends
    template = yaml.safe_load((K8S / "nightly" / "rayjob-nightly-eval.yaml").read_text())
    assert template["spec"]["backoffLimit"] == 0
    assert template["spec"]["activeDeadlineSeconds"] < (
        cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"])


def _run_rayjob_module():
    """infra/k8s/nightly/run_rayjob.py, imported as the CronJob pod runs it (a plain script)."""
    sys.path.insert(0, str(K8S / "nightly"))
    try:
        return importlib.import_module("run_rayjob")
    finally:
        sys.path.pop(0)


def test_the_run_rayjob_program_maps_kuberay_states_to_exit_codes(tmp_path):
    run_rayjob = _run_rayjob_module()
    outcome = run_rayjob.outcome
    assert outcome({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}) == 0
    # 3: the RayJob's own answer (final: podFailurePolicy fails the Job without retries)
    assert outcome({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}) == 3
    assert outcome({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}) == 3
    assert outcome({"jobDeploymentStatus": "ValidationFailed"}) == 3
    for waiting in ({}, {"jobDeploymentStatus": "Initializing"},
                    {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
                    {"jobDeploymentStatus": "Retrying"}):
        assert outcome(waiting) is None, waiting
    doc = run_rayjob.load_rayjob(K8S / "nightly" / "rayjob-nightly-eval.yaml",
                                 "tsi-nightly-eval-29400000")
    assert doc["metadata"]["name"] == "tsi-nightly-eval-29400000"
    plain = tmp_path / "plain.yaml"
    plain.write_text("kind: RayJob\nmetadata: {name: fixed}\n")
    with pytest.raises(ValueError, match="__RAYJOB_NAME__"):
        run_rayjob.load_rayjob(plain, "x")


# ----------------------------------------------------------------- what the entrypoints name
CONFIG_CLASSES = {
    "jobs.train": "pipelines.train.config:TrainConfig",
    "jobs.preprocess": "pipelines.preprocess.config:PreprocessConfig",
    "jobs.evaluate": "pipelines.ops.evaluate:EvaluateConfig",
    "jobs.promote": "pipelines.ops.promote:PromoteConfig",
    "jobs.nightly_eval": "pipelines.ops.nightly:NightlyConfig",
    "jobs.predict": "pipelines.ops.predict:PredictConfig",
}
ENTRYPOINTS = [(rel, spec["entrypoint"]) for rel, spec in _rayjob_specs()]


def _help(module: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    return out.getvalue()


@pytest.mark.parametrize("rel,entrypoint", ENTRYPOINTS, ids=[r for r, _ in ENTRYPOINTS])
def test_entrypoints_name_existing_jobs_flags_and_configs(rel, entrypoint):
    from pipelines.config import load_config

    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"], entrypoint
    module, args = argv[2], argv[3:]
    assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
    usage = _help(module)
    for flag in (a for a in args if a.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", usage), f"{rel}: {module} has no {flag}"
    if "--config" in args:
        config = args[args.index("--config") + 1]
        assert (REPO / config).is_file(), f"{rel}: {config} is missing"
        mod, cls = CONFIG_CLASSES[module].split(":")
        load_config(getattr(importlib.import_module(mod), cls), REPO / config)
    if module == "jobs.train":  # the whole resolution, as the job does it
        from jobs import train
        from pipelines import cli
        from pipelines.train.config import TrainConfig

        cfg = cli.resolve_config(TrainConfig, train.parser().parse_args(args), train.FLAGS)
        assert cfg.run.name == "{ray_job}" and cfg.scaling.use_gpu
        # nothing on a local disk no pod has: weights, data and runs are object-storage URIs
        for value in (cfg.model.pretrained, cfg.data.root, cfg.run.storage_path):
            assert policy.URI.match(str(value)), f"{rel}: {value} is not a URI"


# -------------------------------------------------------------------- Ray cluster launcher
def test_the_cluster_launcher_yaml_validates_against_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    launcher = REPO / "infra" / "ray-cluster" / "aws-gpu.yaml"
    config = yaml.safe_load(launcher.read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # drivers only
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    assert "RAY_AUTH_MODE=token" in " ".join(config["head_start_ray_commands"])
    for name, node in types.items():  # a current DLAMI by parameter, and S3 by instance role
        assert node["node_config"]["ImageId"] != "latest_dlami", name  # Ubuntu 18.04, CUDA 11
        assert node["node_config"]["IamInstanceProfile"]["Arn"], name
    assert "Ubuntu 22.04" in launcher.read_text() and "ssm get-parameter" in launcher.read_text()


def test_run_rayjob_creates_once_and_waits_for_the_end(tmp_path):
    """The CronJob pod's protocol against a stand-in for the Kubernetes API (two endpoints on
    127.0.0.1; there is no API server here): create (409 when a retried pod finds its RayJob),
    then poll until a terminal state. The service-account token is read from its file for every
    request: the stand-in rotates it mid-wait and refuses the old one (401), as an API server
    does once a bound token expired."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    run_rayjob = _run_rayjob_module()
    token = tmp_path / "token"
    token.write_text("sa-token-1\n")
    seen: dict = {"posts": [], "auth": [], "gets": 0, "valid": "Bearer sa-token-1"}
    states = iter([{}, {"jobDeploymentStatus": "Initializing"},
                   {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
                   {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}])

    class Api(BaseHTTPRequestHandler):
        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            seen["auth"].append(self.headers["Authorization"])
            if self.headers["Authorization"] != seen["valid"]:
                self._reply(401, {"kind": "Status", "reason": "Unauthorized"})
                return False
            return True

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self._authorised():
                seen["posts"].append((self.path, body["metadata"]["name"]))
                self._reply(201 if len(seen["posts"]) == 1 else 409, body)

        def do_GET(self):  # noqa: N802
            seen["gets"] += 1
            if seen["gets"] == 2:  # the kubelet rotates the token; the old one expires
                token.write_text("sa-token-2\n")
                seen["valid"] = "Bearer sa-token-2"
            if self._authorised():
                self._reply(200, {"status": next(states)})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = run_rayjob.Api(f"http://127.0.0.1:{server.server_port}", token, "ml", None)
        doc = run_rayjob.load_rayjob(K8S / "nightly" / "rayjob-nightly-eval.yaml", "night-1")
        lines: list[str] = []
        assert run_rayjob.run(api, doc, poll_s=0.01, log=lines.append, backoff_s=0.01) == 0
        assert seen["posts"] == [("/apis/ray.io/v1/namespaces/ml/rayjobs", "night-1")]
        assert seen["auth"].count("Bearer sa-token-1") == 3  # POST, GET, the refused GET
        assert "Bearer sa-token-2" in seen["auth"]
        assert any("HTTP 401; retrying" in line for line in lines)
        states = iter([{"jobDeploymentStatus": "Failed", "jobStatus": "FAILED",
                        "reason": "AppFailed"}])
        assert run_rayjob.run(api, doc, poll_s=0.01, log=lines.append) == 3  # 409: re-attached
        assert any("exists (an earlier attempt)" in line for line in lines)
        assert any("AppFailed" in line for line in lines)
    finally:
        server.shutdown()


def test_run_rayjob_backs_off_on_api_errors_only():
    """Transient API errors are retried 1, 2, 4 ... s apart, then raised (exit 1, a pod retry);
    a refusal that retrying cannot fix (404) is raised at once."""
    import urllib.error

    run_rayjob = _run_rayjob_module()
    slept: list[float] = []
    calls = iter([urllib.error.HTTPError("u", 503, "busy", {}, None),
                  urllib.error.URLError("connection refused"),
                  urllib.error.HTTPError("u", 500, "oops", {}, None), {"ok": True}])

    def flaky():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert run_rayjob.retrying(flaky, what="x", log=lambda m: None,
                               sleep=slept.append) == {"ok": True}
    assert slept == [1.0, 2.0, 4.0]

    def always_busy():
        raise urllib.error.HTTPError("u", 503, "busy", {}, None)

    slept.clear()
    with pytest.raises(urllib.error.HTTPError):
        run_rayjob.retrying(always_busy, what="x", log=lambda m: None, sleep=slept.append)
    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0]

    def missing():
        raise urllib.error.HTTPError("u", 404, "gone", {}, None)

    slept.clear()
    with pytest.raises(urllib.error.HTTPError):
        run_rayjob.retrying(missing, what="x", log=lambda m: None, sleep=slept.append)
    assert slept == []


def _render_module():
    spec = importlib.util.spec_from_file_location("render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_a_kueue_queue_every_rayjob_is_queued_and_gang_admitted():
    """values kueue_queue set: the queue label on every RayJob, no autoscaler and every group at
    its maximum (Kueue admits the whole cluster's quota at once), shutdownAfterJobFinishes kept
    (Kueue's webhook refuses a RayJob without it); still valid against KubeRay's schema."""
    render = _render_module()
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    files = render.render({**values, "kueue_queue": "tsi-gpu"})
    docs = [(name, d) for name, text in files.items() for d in yaml.safe_load_all(text)
            if d and d.get("kind") == "RayJob"]
    assert len(docs) >= 6
    for name, doc in docs:
        assert doc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "tsi-gpu", name
        cluster = doc["spec"]["rayClusterSpec"]
        assert "enableInTreeAutoscaling" not in cluster, name
        for g in cluster["workerGroupSpecs"]:
            assert g["replicas"] == g["minReplicas"] == g["maxReplicas"], (name, g["groupName"])
        assert not list(KUBERAY_VALIDATOR.iter_errors(doc)), name
    assert policy.check_rayjobs(docs) == []
