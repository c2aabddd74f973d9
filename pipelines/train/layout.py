"""Where a training run's files live: one object names every file of a run folder.

A run folder is ``{run.storage_path}/{run name}`` on local disk or an object store (``s3://``,
``gs://``): Ray Train writes its ``checkpoint_*`` folders there and the driver writes the export
beside them. Everything that reads or writes a run folder (the driver's resume checks, the
export, evaluation and registration of a run) goes through :class:`RunFolder`, so no code joins
a URI with ``pathlib`` (``Path("s3://b")`` is ``s3:/b``) and no file name is spelled twice.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from pipelines.io import Storage, is_uri, parent_and_name

EXPORT = "model.pt"  # the exported model (tsi_model checkpoint)
PREDICTIONS = "eval_predictions.npz"  # the exported epoch's per-video evaluation scores
METRICS = "metrics.jsonl"  # epochs, when tracking.backend=jsonl
EXPORT_CHECK_FAILED = "export_check_failed.json"  # written when the export check fails
STATE = "tsi_state.json"  # in every checkpoint folder: epoch, step, world size, config hash
COMPLETE = "tsi_complete"  # written into a Ray Train checkpoint once every rank's upload is done
LOCAL_CHECKPOINT = "checkpoint_local_"  # the in-process loop's own folders (written in place)
CONFIG = "tsi_config.json"  # in every checkpoint folder: the resolved config that trained it
PRETRAINED = "pretrained.pt"  # models:/ weights, pinned at the run's first start (+ .sha256)
PRETRAINED_SOURCE = "pretrained_source.json"  # which registered version that copy is
_CHECKPOINT = re.compile(r"(checkpoint_[^/]+)/" + re.escape(STATE))


def resolve_storage(location: str) -> str:
    """An object-store URI as given, a local path made absolute (Ray workers run elsewhere)."""
    return location.rstrip("/") if is_uri(location) else os.path.abspath(location)


@dataclass(frozen=True)
class RunFolder:
    """The folder of run ``name`` under ``storage`` (a path or URI)."""

    storage: str
    name: str

    @property
    def files(self) -> Storage:
        return Storage.open(self.uri)

    @property
    def uri(self) -> str:
        base = resolve_storage(self.storage)
        return f"{base}/{self.name}" if is_uri(base) else os.path.join(base, self.name)

    @property
    def is_local(self) -> bool:
        return not is_uri(self.storage)

    def location(self, rel: str) -> str:
        """A file of the run as a path or URI (for logs, metadata and readers)."""
        return self.files.uri(rel)

    @property
    def export_uri(self) -> str:
        return self.location(EXPORT)

    def checkpoints(self) -> list[tuple[str, dict]]:
        """``(folder name, its state)`` of every complete checkpoint of the run, oldest first.

        Ray Train uploads a checkpoint's files in no particular order, so a node that dies
        mid-upload leaves a folder that may hold a state file but not every rank's shards: a
        folder counts once it holds the :data:`COMPLETE` marker (:meth:`mark_complete`), or is an
        in-process run's own folder, written in place with the state file last.
        """
        files = self.files
        listed = files.list_files("", recursive=True)
        marked = {rel.rsplit("/", 1)[0] for rel in listed if rel.endswith("/" + COMPLETE)}
        found = []
        for rel in listed:
            match = _CHECKPOINT.fullmatch(rel)
            if match and (match.group(1) in marked or match.group(1).startswith(LOCAL_CHECKPOINT)):
                found.append((match.group(1), json.loads(files.read_bytes(rel))))
        return sorted(found, key=lambda pair: pair[1].get("global_step", 0))

    def mark_complete(self, epoch: int, global_step: int) -> str | None:
        """Mark the newest checkpoint folder of ``epoch``/``global_step`` complete (rank 0, after
        ``ray.train.report`` returned on every rank); its name, or None if none is there."""
        files = self.files
        candidates = []
        for rel in files.list_files("", recursive=True):
            match = _CHECKPOINT.fullmatch(rel)
            if match:
                state = json.loads(files.read_bytes(rel))
                if state.get("epoch") == epoch and state.get("global_step") == global_step:
                    candidates.append(match.group(1))
        if not candidates:
            return None
        newest = max(candidates)  # Ray names them checkpoint_<UTC time>: a retry's is newer
        files.write_bytes(f"{newest}/{COMPLETE}", b"")
        return newest


def local_export(location: str, dest: str | None = None) -> str:
    """An export by path or URI as a local file (with its companions beside it).

    A local export is used in place. An object-store one is downloaded with its
    ``eval_predictions.npz`` and ``model.pt.sha256`` (when present) into ``dest`` (default: a
    new temporary folder) and checked against that digest: a partly written or swapped object
    is refused, not loaded.
    """
    import tempfile

    from pipelines.train.weights import SIDECAR, sha256_file

    if not is_uri(location):
        return Storage.open(location).path()
    remote, name = parent_and_name(location)
    if not remote.exists(name):
        raise FileNotFoundError(f"{location} does not exist")
    folder = dest or tempfile.mkdtemp(prefix="tsi-export-")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    remote.download(name, target)
    if remote.exists(PREDICTIONS):
        remote.download(PREDICTIONS, os.path.join(folder, PREDICTIONS))
    if remote.exists(name + SIDECAR):
        expected = remote.read_bytes(name + SIDECAR).decode().split()[0]
        if sha256_file(target) != expected:
            raise ValueError(f"{location}: the downloaded file does not match its "
                             f"{name + SIDECAR} ({expected[:12]}...)")
    return target


__all__ = ["COMPLETE", "CONFIG", "EXPORT", "EXPORT_CHECK_FAILED", "METRICS", "PREDICTIONS", "RunFolder",
           "STATE", "local_export", "resolve_storage"]
