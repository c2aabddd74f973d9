"""Pretrained weights from where clusters keep them: a path or URI, staged once per node.

``model.pretrained`` names a file by local path, ``file://``, ``s3://`` or ``gs://`` (anything
:mod:`pipelines.io` reads), or a previous run's export in run storage, whose ``model.pt.sha256``
sidecar (written by the export) gives its hash. The driver checks the object exists and its size
(a metadata request, no download) before any worker starts; then one Ray task per node stages it
into that node's local cache (``TSI_WEIGHTS_CACHE``, default ``~/.cache/tsi/weights``) and checks
``model.pretrained_sha256``, so a wrong file fails the job on the driver, once, naming the file,
instead of every worker retrying it. Workers call :func:`stage` again, which finds the verified
copy (a node that joined later downloads it under the same lock: one download per node, the
other ranks wait).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.io import Storage, is_uri, parent_and_name

SIDECAR = ".sha256"  # beside an export: model.pt.sha256 holds its hex digest


class WeightsUnavailable(FileNotFoundError):
    """The configured weights file does not exist, is empty, or cannot be reached."""


class WeightsMismatch(ValueError):
    """The staged file's sha256 is not the configured one (a wrong or corrupted file)."""


@dataclass(frozen=True)
class PretrainedWeights:
    """A checked reference to a weights file (picklable: it travels to the workers)."""

    location: str  # path or URI
    size: int
    sha256: str | None  # expected hex digest (None: not checked, said in the log)

    @property
    def cache_name(self) -> str:
        key = self.sha256 or hashlib.sha256(f"{self.location}:{self.size}".encode()).hexdigest()
        return f"{key[:32]}-{os.path.basename(self.location.rstrip('/'))[:80]}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_pretrained(location: str | None, sha256: str | None) -> PretrainedWeights | None:
    """On the driver: the file exists and is not empty (metadata only). A run-storage export
    without a configured hash takes its sidecar's."""
    if not location:
        return None
    folder, name = parent_and_name(location)
    try:
        exists = folder.exists(name)
        size = folder.size(name) if exists else 0
    except OSError as exc:
        raise WeightsUnavailable(f"model.pretrained {location}: cannot be reached ({exc})") from None
    if not exists:
        raise WeightsUnavailable(f"model.pretrained {location} does not exist")
    if size == 0:
        raise WeightsUnavailable(f"model.pretrained {location} is empty")
    if sha256 is None and folder.exists(name + SIDECAR):
        sha256 = folder.read_bytes(name + SIDECAR).decode().split()[0]
    if sha256 is not None and len(sha256) != 64:
        raise ValueError(f"model.pretrained_sha256 {sha256!r} is not a sha256 hex digest")
    return PretrainedWeights(location, size, sha256.lower() if sha256 else None)


def cache_dir() -> Path:
    return Path(os.environ.get("TSI_WEIGHTS_CACHE") or Path.home() / ".cache/tsi/weights")


def stage(weights: PretrainedWeights, cache: Path | None = None) -> tuple[str, bool]:
    """This node's verified local copy of ``weights`` and whether this call downloaded it.

    One process per node downloads (an exclusive file lock); the others wait on the lock and
    then find the copy. A copy is only ever published complete and checked (rename).
    """
    if not is_uri(weights.location):  # already on this node's disk: check it, use it in place
        path = Storage.open(weights.location).path()
        if weights.sha256 and sha256_file(path) != weights.sha256:
            raise WeightsMismatch(f"model.pretrained {weights.location}: sha256 is not "
                                  f"model.pretrained_sha256 {weights.sha256}")
        return path, False
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / weights.cache_name
    with open(cache / (weights.cache_name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and target.stat().st_size == weights.size:
            return str(target), False
        folder, name = parent_and_name(weights.location)
        handle, tmp = tempfile.mkstemp(dir=cache, prefix=".part-")
        os.close(handle)
        try:
            folder.download(name, tmp)
            got = sha256_file(tmp)
            if weights.sha256 and got != weights.sha256:
                raise WeightsMismatch(f"model.pretrained {weights.location}: sha256 {got} is not "
                                      f"model.pretrained_sha256 {weights.sha256}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return str(target), True


def write_sidecar(export_path: str | Path) -> str:
    """Write ``{export}.sha256`` beside a local export; returns the digest."""
    digest = sha256_file(export_path)
    Path(str(export_path) + SIDECAR).write_text(f"{digest}  {Path(export_path).name}\n")
    return digest


__all__ = ["PretrainedWeights", "SIDECAR", "WeightsMismatch", "WeightsUnavailable",
           "check_pretrained", "stage", "sha256_file", "write_sidecar"]
