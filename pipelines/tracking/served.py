"""The served model: rebuilt by the promoter from platform code, every file's hash on record.

A candidate version lives in the trainer's experiment, where the trainer can overwrite any of
its files after promotion. So promotion never serves it: on a pass the promoter logs a **new**
packaged model into its own experiment (``{task}-promotion``, where the trainer has READ only)
from three platform-written things — this installation's ``pyfunc_model.py``, this
installation's ``tsi_model`` and ``pipelines`` (one zip, the ``code`` artifact), and the
candidate's checkpoint after its sha256 was checked (weights are read with ``weights_only=True``; nothing in it is
executed) — registers it as a version of ``{task}`` and records the sha256 of every file of
that model as JSON in the version tag ``tsi.served.sha256``. Only the promoter (and the admin)
can write tags on ``{task}``.

Every consumer verifies before use (:func:`fetch_verified`): the model folder is downloaded, and
its set of files and each file's sha256 must equal the tag; any difference (a file changed on
the artifact store behind the server's back, added or removed) is :class:`ServedModelTampered`.
``pipelines.tracking.models.load_served`` is the pyfunc loader that verifies before MLflow imports the model's code;
``mlflow.pyfunc.load_model('models:/...')`` and ``mlflow models serve -m models:/...`` directly
would run whatever the store holds: serve a folder fetched by ``python -m jobs.fetch_model``.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_TAG = "tsi.served.sha256"


class ServedModelTampered(ValueError):
    """The served model's files differ from what the promoter recorded (the message says how)."""


def folder_manifest(folder: str | Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``folder``."""
    root = Path(folder)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out


def verify_folder(folder: str | Path, expected: dict[str, str], label: str) -> None:
    found = folder_manifest(folder)
    changed = sorted(p for p in expected if p in found and found[p] != expected[p])
    missing = sorted(set(expected) - set(found))
    added = sorted(set(found) - set(expected))
    if changed or missing or added:
        parts = [f"{what}: {', '.join(paths[:5])}{' …' if len(paths) > 5 else ''}"
                 for what, paths in (("changed", changed), ("missing", missing),
                                     ("added", added)) if paths]
        raise ServedModelTampered(f"{label}: the served files differ from the sha256 the "
                                  f"promoter recorded in {MANIFEST_TAG} ({'; '.join(parts)}); "
                                  "refusing to use it")


def expected_manifest(version: Any) -> dict[str, str]:
    label = f"{version.name} v{version.version}"
    raw = (version.tags or {}).get(MANIFEST_TAG)
    if not raw:
        raise ServedModelTampered(f"{label} has no {MANIFEST_TAG} tag: it was not built by "
                                  "promotion, so nothing vouches for its files; refusing it")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ServedModelTampered(f"{label}: {MANIFEST_TAG} is not JSON") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ServedModelTampered(f"{label}: {MANIFEST_TAG} lists no files")
    return manifest


def fetch_verified(client: Any, version: Any, tracking_uri: str, dest: str | Path) -> Path:
    """Download the whole model folder of ``version`` into ``dest`` and verify every file."""
    import mlflow

    manifest = expected_manifest(version)
    root = client.get_model_version_download_uri(version.name, version.version)
    Path(dest).mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=root, dst_path=str(dest),
                                                     tracking_uri=tracking_uri))
    verify_folder(local, manifest, f"{version.name} v{version.version}")
    return local


def build_served_version(client: Any, production: str, experiment_id: str, checkpoint: str,
                         run_name: str, tags: dict[str, str], description: str,
                         tracking_uri: str) -> Any:
    """Log the platform's packaged model of ``checkpoint`` under a new promoter run, register
    it as a version of ``production`` with the file hashes; returns the version."""
    import mlflow

    from pipelines.tracking.connection import Store, use_store
    from pipelines.tracking.registry import log_packaged_model

    use_store(Store(tracking_uri, None))
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                          tags={"tsi.kind": "served-model"}) as run:
        info = log_packaged_model(checkpoint)
    version = client.create_model_version(production, source=info.model_uri,
                                          run_id=run.info.run_id, tags=tags,
                                          description=description, model_id=info.model_id)
    # hashed as consumers will download it (until the tag exists, every consumer refuses it)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(production, version.version),
            dst_path=tmp, tracking_uri=tracking_uri)
        manifest = folder_manifest(local)
    client.set_model_version_tag(production, version.version, MANIFEST_TAG,
                                 json.dumps(manifest, sort_keys=True))
    return client.get_model_version(production, version.version)
