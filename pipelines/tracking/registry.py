"""The registry layout, the packaged model, lineage tags, and whether two versions compare.

Per task two registered models: ``{task}-candidates``, where training registers every finished
model and moves alias ``candidate`` to it, and ``{task}``, the production model that only
promotion writes (alias ``champion``; the replaced one ``previous-champion``). Aliases only, no
stages: so the training identity can be given no right to move ``champion``.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
PREVIOUS_CHAMPION_ALIAS = "previous-champion"
MODEL_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("tsi_model", "pipelines")
CODE_ARTIFACT = "code"  # the packaged model's artifact holding CODE_PACKAGES as one zip
# Tags that must agree for two models' scores to be compared video by video.
INPUT_TAGS = ("tsi.classes_hash", "tsi.clip", "tsi.media")


CANDIDATES_SUFFIX = "-candidates"


def candidates_name(task: str) -> str:
    return f"{task}{CANDIDATES_SUFFIX}"


def production_name(task: str) -> str:
    return task


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# The version tags people filter and read in the UI (a version with ~25 tags showed them as a
# tall, truncated stack in the versions table); everything else :func:`lineage` knows is the
# training run's LINEAGE_ARTIFACT.
VERSION_TAGS = ("tsi.task", "tsi.run_name", "tsi.model", "tsi.export_sha256", "tsi.classes_hash",
                "tsi.num_classes", "tsi.eval_dataset_hash", "tsi.clip", "tsi.media",
                "tsi.code_version", "tsi.metric.val_top1")
LINEAGE_ARTIFACT = "lineage.json"


def lineage(meta: Mapping[str, Any], export_path: str | Path) -> dict[str, str]:
    """Everything an export's metadata says about how it was made, as ``tsi.*`` strings."""
    hashes = meta.get("dataset_hashes") or {}
    record = {
        "tsi.task": str(meta.get("task", "")),
        "tsi.run_name": str(meta.get("run_name", "")),
        "tsi.model": str(meta.get("model", "")),
        "tsi.export_sha256": file_sha256(export_path),
        "tsi.classes_hash": str(hashes.get("classes", "")),
        "tsi.num_classes": str(len(meta.get("classes", []))),
        "tsi.train_dataset_hash": str(hashes.get("train", "")),
        "tsi.selection_dataset_hash": str(hashes.get("selection", "")),
        "tsi.eval_dataset_hash": str(hashes.get("eval", "")),
        "tsi.clip": _canonical(meta.get("clip", {})),
        "tsi.media": _canonical(meta.get("media", {})),
        "tsi.code_version": str(meta.get("code_version", "")),
        "tsi.world_size": str(meta.get("world_size", "")),
        "tsi.config_hash": str(meta.get("config_hash", "")),
        "tsi.global_step": str(meta.get("global_step", "")),
    }
    for key, value in (meta.get("metrics") or {}).items():
        if key.startswith(("val", "selection_")):
            record[f"tsi.metric.{key}"] = f"{float(value):.6g}"
    return record


def lineage_tags(meta: Mapping[str, Any], export_path: str | Path) -> dict[str, str]:
    """The :data:`VERSION_TAGS` of an export: everything needed to refuse a wrong comparison."""
    record = lineage(meta, export_path)
    return {key: record[key] for key in VERSION_TAGS if key in record}


def comparable(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[bool, list[str]]:
    """Whether two versions' scores compare (same class map and input settings), and why not."""
    reasons = [f"{tag} differs ({a.get(tag, '∅')[:60]} vs {b.get(tag, '∅')[:60]})"
               for tag in INPUT_TAGS if a.get(tag) != b.get(tag)]
    return not reasons, reasons


def pip_requirements() -> list[str]:
    """What loading the packaged model needs, pinned to this environment's versions.

    torch is the deployer's choice of build (CPU or CUDA); it is pinned by version only, so the
    ``+cpu`` local label of a CPU wheel does not force a CPU build onto a GPU server.
    """
    from importlib import metadata

    pins = []
    for name in ("torch", "numpy", "mlflow", "msgpack", "simplejpeg", "webdataset",
                 "ffmpeg-python", "pyyaml", "pyarrow"):
        try:
            version = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version}")
    return pins


def model_signature() -> Any:
    """Params only (``top_k``): without a params schema MLflow drops ``params`` before
    ``predict`` sees them. No input schema: inputs are paths, bytes or base64 strings, which no
    single column type describes."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    return ModelSignature(inputs=None, params=ParamSchema([ParamSpec("top_k", "long", 5)]))


@functools.lru_cache(maxsize=1)
def input_example() -> list[str]:
    """One short generated video (ffmpeg's test pattern, 16 frames of 64x64, ~3 KB) in the JSON
    form ``/invocations`` takes; MLflow saves it beside the model and, when logging, serves it
    once to check that the packaged model answers (a warning if not)."""
    video = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=8:duration=2",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4",
         "-movflags", "frag_keyframe+empty_moov", "pipe:1"],
        check=True, capture_output=True, timeout=60).stdout
    return ["base64:" + base64.b64encode(video).decode()]


def write_code_archive(path: str | Path, root: Path = PACKAGE_ROOT) -> Path:
    """Every ``.py`` of :data:`CODE_PACKAGES` as one zip that Python imports from.

    One file, not ~120: each file of a model is one HTTP request to log it and one to fetch it
    (measured on the auth server: 1.2-4.2 s for the two folders, 0.01-0.35 s for the zip).
    Entries are sorted and dated 1980-01-01, so the same code gives the same bytes (and sha256).
    """
    path = Path(path)
    files = sorted(p for package in CODE_PACKAGES for p in (root / package).rglob("*.py")
                   if "__pycache__" not in p.parts)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            entry = zipfile.ZipInfo(file.relative_to(root).as_posix(), (1980, 1, 1, 0, 0, 0))
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(entry, file.read_bytes())
    return path


def log_packaged_model(export_path: str | Path) -> Any:
    """Log the pyfunc (models-from-code) under the active run; returns MLflow's model info."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        code = write_code_archive(Path(tmp) / "platform-code.zip")
        return mlflow.pyfunc.log_model(
            signature=model_signature(), input_example=input_example(), name="model",
            python_model=str(MODEL_FILE),
            artifacts={"checkpoint": str(export_path), CODE_ARTIFACT: str(code)},
            pip_requirements=pip_requirements(), model_config={"top_k": 5})


def find_version(client: Any, name: str, export_sha: str) -> Any | None:
    """A version of ``name`` already made from this export file (so a retry registers once)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return next((v for v in versions if (v.tags or {}).get("tsi.export_sha256") == export_sha),
                None)


def ensure_registered_model(client: Any, name: str, description: str) -> None:
    """Create the registered model ``name`` unless it exists (another writer may race us)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise


def candidate_description(meta: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """The paragraph a person reads on a candidate version in the MLflow UI."""
    metrics = meta.get("metrics") or {}
    videos = metrics.get("val_videos")
    scored = "not validated"
    if isinstance(metrics.get("val_top1"), (int, float)):
        scored = f"val top-1 {metrics['val_top1']:.3f}" + (
            f" on {int(videos)} videos" if isinstance(videos, (int, float)) else "")
    return (f"Candidate from training run {meta.get('run_name', '?')}: {meta.get('model', '?')} "
            f"for {meta.get('task', '?')} ({tags.get('tsi.num_classes', '?')} classes), epoch "
            f"{meta.get('epoch', '?')}, step {meta.get('global_step', '?')}, {scored}. Export "
            f"sha256 {tags.get('tsi.export_sha256', '')[:12]}… Not served: only jobs.promote, "
            f"after its gate, copies a version to {production_name(str(meta.get('task', '')))}.")


def register(client: Any, model_uri: str, task: str, tags: Mapping[str, str],
             description: str | None = None) -> Any:
    """A new version of ``{task}-candidates`` with ``tags`` (and ``description``); alias
    ``candidate`` moved to it."""
    name = candidates_name(task)
    existing = find_version(client, name, tags["tsi.export_sha256"])
    if existing is None:
        ensure_registered_model(client, name, (
            f"Every finished training run of {task}; alias '{CANDIDATE_ALIAS}' is the "
            f"newest. Promotion copies accepted versions to '{production_name(task)}'."))
        import mlflow

        existing = mlflow.register_model(model_uri, name, tags=dict(tags))
        if description:
            client.update_model_version(name, existing.version, description=description)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, existing.version)
    return existing
