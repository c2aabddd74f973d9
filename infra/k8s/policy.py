"""Policy checks over every rendered manifest of infra/k8s/, without a cluster.

    python infra/k8s/policy.py     # prints each violation, exit 1 if any

Each check takes every (file, document) pair and returns its violations as one-line reasons.
They hold what a security and platform review asks of the manifests (issue 20): pinned images,
resources on every container, non-root pods, every referenced object defined, job inputs read
from URIs or mounted volumes, selectors that pick only their own pods, and the KubeRay rules
JSON Schema cannot express (validation.go of v1.7.0). tests/integration/test_infra_manifests.py runs them.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterator

import yaml

K8S = Path(__file__).resolve().parent
# placeholders the committed example values leave (render.py --site refuses them)
DIGEST = re.compile(r"@sha256:([0-9a-f]{64}|IMAGE_DIGEST_[A-Z0-9]+)$")
EXACT_VERSION = re.compile(r":\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$")
OWN_IMAGE = "/tsi-platform:"
# KubeRay sets these in every Ray container (common/pod.go); a second definition is a conflict
KUBERAY_ENV = {"RAY_CLUSTER_NAME", "RAY_CLUSTER_NAMESPACE", "RAY_ADDRESS", "RAY_IP", "FQ_RAY_IP",
               "RAY_PORT", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
# Secrets made by people (infra/README.md, "Secrets") or by controllers, never committed
SECRETS_BY_HAND = {"tsi-mlflow-db", "tsi-mlflow-admin", "tsi-mlflow-trainer",
                   "tsi-mlflow-promoter", "tsi-mlflow-metrics",
                   "tsi-s3-credentials"}  # the last: static-key fallback only
SECRETS_BY_CONTROLLERS = {"tsi-mlflow-tls"}  # cert-manager (ingress.yaml)
# Containers whose root filesystem stays writable, and why (everything else: read-only)
WRITABLE_ROOT = {"ray-head": "Ray: runtime_env installs, JIT-built ops, library caches in $HOME",
                 "ray-worker": "as ray-head"}
URI = re.compile(r"^(s3|gs|file|models|runs)://|^models:/")

Doc = tuple[str, dict]


def documents(root: Path = K8S) -> list[Doc]:
    docs = []
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("schema/", "src/")) or path.name in ("kustomization.yaml",
                                                               "values.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((rel, doc))
    return docs


def pod_templates(doc: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) of every pod a document makes, KubeRay groups included."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "Job"):
        yield kind, spec["template"]
    elif kind == "CronJob":
        yield kind, spec["jobTemplate"]["spec"]["template"]
    elif kind in ("RayCluster", "RayJob", "RayCronJob"):
        if kind == "RayCronJob":
            spec = spec["jobTemplate"]
        cluster = spec.get("rayClusterSpec", spec)
        yield "head", cluster["headGroupSpec"]["template"]
        for g in cluster.get("workerGroupSpecs", []):
            yield f"group {g['groupName']}", g["template"]


def _containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _each_container(docs: list[Doc]) -> Iterator[tuple[str, dict, dict, dict]]:
    for rel, doc in docs:
        for where, template in pod_templates(doc):
            for c in _containers(template):
                yield f"{rel}: {doc['kind']} {where} container {c['name']}", doc, template, c


def _quantity_gi(q: str) -> float:
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError(f"quantity {q!r}")
    return float(m.group(1)) * units.get(m.group(2) or "", 2**-30)


def check_images(docs: list[Doc]) -> list[str]:
    """Own images by digest (a tag can be pushed again); others by exact version; no aliases."""
    bad = []
    for where, _, _, c in _each_container(docs):
        image = c["image"]
        if OWN_IMAGE in image:
            if not DIGEST.search(image):
                bad.append(f"{where}: {image} is not pinned by digest")
            if re.search(r":[^@]*-gpu(@|$)", image):
                bad.append(f"{where}: {image}: 'gpu' does not say which CUDA build")
        elif image.endswith(":latest") or ":" not in image.split("/")[-1]:
            bad.append(f"{where}: {image} floats (latest or no tag)")
        elif not EXACT_VERSION.search(image):
            bad.append(f"{where}: {image} is not an exact version (major.minor at least)")
    return bad


def check_resources(docs: list[Doc]) -> list[str]:
    """Requests and limits on every container; disk limits above the emptyDirs they hold."""
    bad = []
    for where, _, template, c in _each_container(docs):
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory", "ephemeral-storage"} - set(res.get(kind, {}))
            if missing:
                bad.append(f"{where}: no {kind} for {sorted(missing)}")
        mounted = {m["name"] for m in c.get("volumeMounts", [])}
        disk = sum(_quantity_gi(v["emptyDir"].get("sizeLimit", "0"))
                   for v in template["spec"].get("volumes", [])
                   if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
                   and v["name"] in mounted)
        limit = res.get("limits", {}).get("ephemeral-storage")
        if limit and disk and _quantity_gi(limit) <= disk:
            bad.append(f"{where}: ephemeral-storage limit {limit} <= its emptyDirs ({disk:g}Gi): "
                       "logs and the writable layer would get the pod evicted")
        memory_dirs = sum(_quantity_gi(v["emptyDir"].get("sizeLimit", "0"))
                          for v in template["spec"].get("volumes", [])
                          if v.get("emptyDir", {}).get("medium") == "Memory")
        mem = res.get("limits", {}).get("memory")
        if mem and memory_dirs and _quantity_gi(mem) <= memory_dirs:
            bad.append(f"{where}: memory limit {mem} <= its memory-backed emptyDirs")
    return bad


def check_non_root(docs: list[Doc]) -> list[str]:
    """Non-root pods, no privilege escalation, no capabilities, read-only root where possible."""
    bad = []
    for where, _, template, c in _each_container(docs):
        pod = template["spec"].get("securityContext", {})
        sc = c.get("securityContext", {})
        if not (pod.get("runAsNonRoot") or sc.get("runAsNonRoot")):
            bad.append(f"{where}: runAsNonRoot is not set")
        if 0 in (pod.get("runAsUser"), sc.get("runAsUser")):
            bad.append(f"{where}: runs as uid 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            bad.append(f"{where}: capabilities are not dropped")
        if sc.get("readOnlyRootFilesystem") is not True and c["name"] not in WRITABLE_ROOT:
            bad.append(f"{where}: root filesystem writable without a recorded reason")
        if any(m["mountPath"] == "/mnt/shared" for m in c.get("volumeMounts", [])) and \
                "fsGroup" not in pod:
            bad.append(f"{where}: mounts /mnt/shared without fsGroup (cannot write it)")
    return bad


def _refs(node, key_path: tuple[str, ...]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == key_path[0]:
                if len(key_path) == 1:
                    yield value
                else:
                    yield from _refs(value, key_path[1:])
            yield from _refs(value, key_path)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value, key_path)


def check_references(docs: list[Doc], generated_configmaps: set[str]) -> list[str]:
    """Every Secret, ConfigMap, claim, ServiceAccount and PriorityClass named is defined."""
    defined: dict[str, set[str]] = {}
    for _, doc in docs:
        defined.setdefault(doc["kind"], set()).add(doc["metadata"].get("name", ""))
        for vct in doc.get("spec", {}).get("volumeClaimTemplates", []) or []:
            defined.setdefault("PersistentVolumeClaim", set()).add(vct["metadata"]["name"])
    secrets = SECRETS_BY_HAND | SECRETS_BY_CONTROLLERS
    configmaps = defined.get("ConfigMap", set()) | generated_configmaps
    bad = []
    for rel, doc in docs:
        names = {
            "Secret": [r["name"] for r in _refs(doc, ("secretKeyRef",))]
            + [r for r in _refs(doc, ("secret", "secretName"))]
            + [r for r in _refs(doc, ("tls", "secretName"))]
            + [r["name"] for r in _refs(doc, ("basicAuth", "username"))]
            + [r["name"] for r in _refs(doc, ("basicAuth", "password"))],
            "ConfigMap": [r["name"] for r in _refs(doc, ("configMap",))],
            "PersistentVolumeClaim": list(_refs(doc, ("persistentVolumeClaim", "claimName"))),
            "ServiceAccount": list(_refs(doc, ("serviceAccountName",))),
            "PriorityClass": list(_refs(doc, ("priorityClassName",))),
        }
        known = {"Secret": secrets, "ConfigMap": configmaps}
        for kind, used in names.items():
            have = known.get(kind, defined.get(kind, set()))
            for name in used:
                if name not in have:
                    bad.append(f"{rel}: {doc['kind']} {doc['metadata'].get('name', '')} "
                               f"references {kind} {name!r}, defined nowhere")
    return bad


def check_kuberay_env(docs: list[Doc]) -> list[str]:
    """No container sets what KubeRay sets (RAY_CLUSTER_NAME, ...) or PIP_CONSTRAINT."""
    bad = []
    for where, _, _, c in _each_container(docs):
        for e in c.get("env", []):
            if e["name"] in KUBERAY_ENV:
                bad.append(f"{where}: {e['name']} is KubeRay's to set")
            if e["name"] == "PIP_CONSTRAINT":
                bad.append(f"{where}: PIP_CONSTRAINT leaks the build's pins into the jobs")
    return bad


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_selectors(docs: list[Doc]) -> list[str]:
    """A Service, workload, PDB or NetworkPolicy selector picks the pods of one workload only."""
    pods = [(f"{rel}: {doc['kind']} {doc['metadata'].get('name', '')}",
             template.get("metadata", {}).get("labels", {}))
            for rel, doc in docs for _, template in pod_templates(doc)
            if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]
    bad = []
    for rel, doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "Service":
            selector = spec.get("selector", {})
        elif doc["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            selector = spec.get("selector", {}).get("matchLabels", {})
        elif doc["kind"] == "NetworkPolicy":
            selector = spec.get("podSelector", {}).get("matchLabels", {})
        else:
            continue
        if "ray.io/is-ray-node" in selector:
            continue  # KubeRay's own label: Ray pods only
        owners = [owner for owner, labels in pods if _matches(selector, labels)]
        if len(owners) != 1:
            bad.append(f"{rel}: {doc['kind']} {doc['metadata']['name']} selects {selector} "
                       f"= {owners or 'nothing'} (expected exactly one workload)")
    return bad


def rayjob_specs(docs: list[Doc]) -> Iterator[tuple[str, dict, dict]]:
    for rel, doc in docs:
        if doc["kind"] == "RayJob":
            yield rel, doc, doc["spec"]
        elif doc["kind"] == "RayCronJob":
            yield rel, doc, doc["spec"]["jobTemplate"]


def check_rayjobs(docs: list[Doc]) -> list[str]:
    """Jobs that end: deletion, deadlines, bounded retries; KubeRay v1.7.0 validation.go rules."""
    bad = []
    for rel, doc, spec in rayjob_specs(docs):
        where = f"{rel}: {doc['kind']}"
        if not spec.get("shutdownAfterJobFinishes"):
            bad.append(f"{where}: shutdownAfterJobFinishes is not true (Kueue requires it)")
        if spec.get("ttlSecondsAfterFinished", 0) and not spec.get("shutdownAfterJobFinishes"):
            bad.append(f"{where}: TTL without shutdownAfterJobFinishes (KubeRay refuses it)")
        strategy = spec.get("deletionStrategy")
        if not strategy:
            bad.append(f"{where}: no deletionStrategy")
        elif strategy.get("deletionRules") and spec.get("shutdownAfterJobFinishes"):
            bad.append(f"{where}: deletionRules and shutdownAfterJobFinishes are exclusive")
        elif "deletionRules" not in strategy and not (
                strategy.get("onSuccess", {}).get("policy")
                and strategy.get("onFailure", {}).get("policy")):
            bad.append(f"{where}: deletionStrategy needs onSuccess and onFailure policies")
        elif spec.get("shutdownAfterJobFinishes") and "DeleteNone" in (
                strategy.get("onSuccess", {}).get("policy"),
                strategy.get("onFailure", {}).get("policy")):
            bad.append(f"{where}: DeleteNone with shutdownAfterJobFinishes (KubeRay refuses it)")
        pre, active = spec.get("preRunningDeadlineSeconds"), spec.get("activeDeadlineSeconds")
        if not pre or not active or pre >= active:
            bad.append(f"{where}: needs 0 < preRunningDeadlineSeconds < activeDeadlineSeconds")
        if "backoffLimit" not in spec:
            bad.append(f"{where}: no backoffLimit")
        if bool(spec.get("clusterSelector")) == bool(spec.get("rayClusterSpec")):
            bad.append(f"{where}: exactly one of rayClusterSpec and clusterSelector")
        queued = "kueue.x-k8s.io/queue-name" in doc["metadata"].get("labels", {})
        if queued and spec.get("rayClusterSpec", {}).get("enableInTreeAutoscaling"):
            bad.append(f"{where}: a Kueue-queued RayJob must not autoscale (gang admission)")
    return bad


def check_job_inputs(docs: list[Doc]) -> list[str]:
    """Every path a RayJob's entrypoint reads is a URI or under a volume its pods mount."""
    bad = []
    for rel, doc, spec in rayjob_specs(docs):
        mounts = {m["mountPath"] for _, t in pod_templates(doc) for c in _containers(t)
                  for m in c.get("volumeMounts", [])}
        for arg in shlex.split(spec["entrypoint"])[3:]:
            value = arg.split("=", 1)[1] if "=" in arg and not arg.startswith("-") else arg
            if value.startswith("-") or "/" not in value or URI.match(value):
                continue
            if value.startswith("jobs/configs/"):
                continue  # the image's copy of the repository (the pods' working directory)
            if not any(value == m or value.startswith(m.rstrip("/") + "/") for m in mounts):
                bad.append(f"{rel}: {value} is neither a URI nor on a mounted volume")
    return bad


CHECKS: dict[str, Callable[[list[Doc]], list[str]]] = {
    "images": check_images, "resources": check_resources, "non_root": check_non_root,
    "references": lambda d: check_references(d, generated_configmaps()),
    "kuberay_env": check_kuberay_env, "selectors": check_selectors,
    "rayjobs": check_rayjobs, "job_inputs": check_job_inputs,
}


def generated_configmaps(root: Path = K8S) -> set[str]:
    names = set()
    for path in root.rglob("kustomization.yaml"):
        for gen in yaml.safe_load(path.read_text()).get("configMapGenerator", []):
            names.add(gen["name"])
    return names


def main() -> int:
    docs = documents()
    failed = [f"{name}: {line}" for name, check in CHECKS.items() for line in check(docs)]
    for line in failed:
        print(line)
    print(f"{len(docs)} documents, {len(CHECKS)} checks, {len(failed)} violations")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
