"""Which model a job means, and its checkpoint file, without running any code that came with it.

A source is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or an exported ``model.pt`` path.
For a candidate version (``{task}-candidates``) only two files are downloaded: ``MLmodel`` (YAML,
read as data, to find where the packaged model keeps its ``checkpoint`` artifact) and that
checkpoint, which is then read with ``torch.load(weights_only=True)`` by the platform's own code;
its SHA-256 must match the version's ``tsi.export_sha256`` tag. Any other registered model is a
production model: its whole folder is downloaded and every file must match the sha256 the
promoter recorded (:mod:`pipelines.tracking.served`), or it is refused.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.evaluation.exported import export_metadata
from pipelines.io import is_uri
from pipelines.tracking.registry import CANDIDATES_SUFFIX, file_sha256, lineage_tags
from pipelines.tracking.served import fetch_verified
from pipelines.train.layout import local_export

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[A-Za-z0-9_-]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)$")


class ModelNotFound(LookupError):
    """The registry has no such model, version or alias (the message says which)."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: where its checkpoint is on this machine and what it is."""

    source: str
    checkpoint: str
    meta: dict[str, Any] = field(repr=False)
    tags: dict[str, str] = field(repr=False)
    name: str | None = None
    version: str | None = None
    served_dir: str | None = None  # production versions: the verified model folder

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.name else self.checkpoint


def parse_registry_uri(source: str) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of a ``models:/`` URI; None for anything else."""
    for pattern in (_ALIAS, _VERSION):
        match = pattern.match(source)
        if match:
            parts = match.groupdict()
            return parts["name"], parts.get("alias"), parts.get("version")
    if source.startswith("models:/"):
        raise ValueError(f"{source!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return None


def get_version(client: Any, name: str, alias: str | None, version: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            what = f"alias {alias!r}" if alias else f"version {version}"
            raise ModelNotFound(f"registered model {name!r} has no {what}") from None
        raise


def checkpoint_path(spec: Any, version: Any) -> str:
    """Where a packaged model's MLmodel (parsed YAML) keeps the ``checkpoint`` artifact."""
    try:
        relative = spec["flavors"]["python_function"]["artifacts"]["checkpoint"]["path"]
    except (KeyError, TypeError):
        raise ValueError(f"{version.name} v{version.version} is not a TSI packaged model "
                         "(its MLmodel names no 'checkpoint' artifact)") from None
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ValueError(f"{version.name} v{version.version}: artifact path {relative!r} leaves "
                         "the model folder")
    return relative


def download_checkpoint(client: Any, version: Any, tracking_uri: str, dest: str | Path) -> Path:
    """The version's ``checkpoint`` artifact in ``dest`` (``MLmodel`` is read as YAML only)."""
    import mlflow

    root = client.get_model_version_download_uri(version.name, version.version).rstrip("/")
    mlmodel = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"{root}/MLmodel", dst_path=str(dest), tracking_uri=tracking_uri))
    relative = checkpoint_path(yaml.safe_load(mlmodel.read_text()), version)
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"{root}/{relative}", dst_path=str(dest), tracking_uri=tracking_uri))


def resolve_model(source: str, client: Any, tracking_uri: str,
                  workdir: str | Path | None = None) -> ModelRef:
    """A ``models:/`` URI or an export path → :class:`ModelRef` (checkpoint on local disk)."""
    parsed = parse_registry_uri(source)
    if parsed is None:
        if is_uri(source):  # an export in object-store run storage
            source_path = local_export(source, str(workdir) if workdir else None)
            meta = export_metadata(source_path)
            return ModelRef(source, source_path, meta, lineage_tags(meta, Path(source_path)))
        path = Path(source)
        if not path.is_file():
            raise ModelNotFound(f"{source} is neither a models:/ URI nor an exported model file")
        meta = export_metadata(path)
        return ModelRef(source, str(path), meta, lineage_tags(meta, path))
    name, alias, number = parsed
    version = get_version(client, name, alias, number)
    dest = Path(workdir or tempfile.mkdtemp(prefix="tsi-model-")) / f"{name}-v{version.version}"
    dest.mkdir(parents=True, exist_ok=True)
    tags = dict(version.tags or {})
    if not name.endswith(CANDIDATES_SUFFIX):  # production: every served file verified
        folder = fetch_verified(client, version, tracking_uri, dest)
        spec = yaml.safe_load((folder / "MLmodel").read_text())
        checkpoint = folder / checkpoint_path(spec, version)
        return ModelRef(source, str(checkpoint), export_metadata(checkpoint), tags, name,
                        str(version.version), served_dir=str(folder))
    checkpoint = download_checkpoint(client, version, tracking_uri, dest)
    expected = tags.get("tsi.export_sha256")
    if expected and file_sha256(checkpoint) != expected:
        raise ValueError(f"{name} v{version.version}: the checkpoint artifact does not match the "
                         "version's tsi.export_sha256 tag (modified after registration?)")
    return ModelRef(source, str(checkpoint), export_metadata(checkpoint), tags, name,
                    str(version.version))


def load_served(model_uri: str, tracking_uri: str | None = None) -> Any:
    """The pyfunc of a production version, loaded only after every file verified."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    ref = resolve_model(model_uri, MlflowClient(uri), uri)
    if ref.served_dir is None:
        raise ValueError(f"{model_uri}: only production versions (built by promotion) are "
                         "served; candidates are evaluated, not loaded")
    return mlflow.pyfunc.load_model(ref.served_dir)
