"""Extract the ray.io/v1 openAPIV3Schema of KubeRay's CRDs into one small gzipped JSON Schema.

    python infra/k8s/schema/extract_kuberay_schema.py --git-dir PATH/TO/kuberay/.git \
        [--ref v1.7.0]     # writes infra/k8s/schema/kuberay-v1.7.0.json.gz

Reads ray-operator/config/crd/bases/ray.io_{rayclusters,rayjobs,raycronjobs}.yaml at the tag's
commit (recorded in the output's ``$comment``), keeps the ``v1`` version's ``spec`` only (status
is written by the operator, not by us), drops ``description`` texts (most of the 3 MB), and
adds ``additionalProperties: false`` to every object schema that lists its ``properties`` and
does not preserve unknown fields. That last step is what the API server does to a CRD object
under ``kubectl apply``'s default ``--validate=strict`` (unknown fields are an error, not
silently pruned), so a typo fails the test instead of being dropped on the cluster.
CEL rules (``x-kubernetes-validations``) stay in the file but JSON Schema does not run them; the
ones the platform relies on are re-checked by infra/k8s/policy.py.
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CRDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayCronJob": "raycronjobs"}
CRD_DIR = "ray-operator/config/crd/bases"


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True,
                          text=True).stdout


def _trim(node):
    """Drop descriptions; close object schemas the way strict field validation does."""
    if isinstance(node, list):
        return [_trim(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _trim(v) for k, v in node.items() if k != "description"}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def extract(git_dir: str, ref: str) -> dict:
    commit = _git(git_dir, "rev-parse", f"{ref}^{{commit}}").strip()
    kinds = {}
    for kind, plural in CRDS.items():
        crd = yaml.safe_load(_git(git_dir, "show", f"{commit}:{CRD_DIR}/ray.io_{plural}.yaml"))
        [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        kinds[kind] = _trim(v1["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (f"KubeRay {ref} (github.com/ray-project/kuberay commit {commit}), "
                     f"{CRD_DIR}/ray.io_{{rayclusters,rayjobs,raycronjobs}}.yaml, v1 spec "
                     "schemas; descriptions dropped, objects closed (strict field validation); "
                     "written by infra/k8s/schema/extract_kuberay_schema.py"),
        "kuberay_ref": ref, "kuberay_commit": commit,
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"enum": list(CRDS)},
                       "metadata": {"type": "object"}, "spec": {"type": "object"}},
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}},
                   "then": {"properties": {"spec": {"$ref": f"#/$defs/{kind}"}}}}
                  for kind in CRDS],
        "$defs": kinds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--git-dir", required=True, help="a clone or bare mirror of ray-project/kuberay")
    p.add_argument("--ref", default="v1.7.0")
    args = p.parse_args(argv)
    schema = extract(args.git_dir, args.ref)
    out = HERE / f"kuberay-{args.ref}.json.gz"
    data = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    out.write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(data)} uncompressed), "
          f"commit {schema['kuberay_commit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
