"""Local folders and object storage (``s3://``, ``gs://``, any fsspec URI) behind one small API.

Built on ``pyarrow.fs`` (a core dependency, native S3 and GCS clients); other schemes go
through fsspec. Choices, so CPU nodes need no shared disk:

- the videos root is listed **once** by the driver (one recursive listing, not 240k HEADs);
- a task **downloads** each remote video to a local temp file before ffprobe/ffmpeg see it,
  rather than handing ffmpeg a presigned URL: mp4s with the index at the end make ffmpeg issue
  range requests over HTTP, which fail or hang in ways a local file does not, and ffprobe's
  packet count must see the same bytes the decoder sees;
- shards are **written locally and uploaded when complete**; an object appears only when its
  upload finishes, so a remote shard is never half-written. Local writes go to a temporary name
  and are renamed.

S3 settings come from the standard AWS environment (``AWS_ACCESS_KEY_ID``…, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]`` for S3-compatible servers); GCS from the
default Google credentials.
"""
from __future__ import annotations

import os
import posixpath
import re
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")

# Environment that configures object-storage clients; the job forwards it to its tasks.
STORAGE_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
    "AWS_EC2_METADATA_DISABLED", "GOOGLE_APPLICATION_CREDENTIALS",
)


def is_uri(location: str) -> bool:
    return bool(_URI.match(location)) and not location.startswith("file://")


def _s3_filesystem() -> pafs.FileSystem:
    kwargs: dict[str, object] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs["region"] = region or "us-east-1"  # never let pyarrow probe the bucket's region
    return pafs.S3FileSystem(**kwargs)


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem for ``location`` and the root path inside it (no trailing slash)."""
    match = _URI.match(location)
    if location.startswith("file://") or not match:
        path = location[len("file://"):] if location.startswith("file://") else location
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme, rest = match.group(1).lower(), match.group(2).strip("/")
    if scheme in ("s3", "s3a"):
        return _s3_filesystem(), rest
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(), rest
    import fsspec  # other schemes: whatever fsspec implementation is installed

    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme))), rest


@dataclass
class Storage:
    """A root folder; every method takes paths relative to it (posix separators)."""

    location: str
    fs: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str) -> "Storage":
        fs, root = _filesystem(location)
        if isinstance(fs, pafs.LocalFileSystem):
            return cls(root, fs, root)  # absolute: tasks may run in another working directory
        return cls(location.rstrip("/"), fs, root)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, rel: str = "") -> str:
        """Path inside the filesystem (local: absolute path)."""
        return posixpath.join(self.root, rel) if rel else self.root

    def uri(self, rel: str = "") -> str:
        """User-facing name (a local path or ``scheme://...``) for logs and manifests."""
        if self.is_local:
            return self.path(rel)
        return f"{self.location}/{rel}" if rel else self.location

    def child(self, rel: str) -> "Storage":
        return Storage.open(self.uri(rel))

    # ------------------------------------------------------------------ reading
    def list_files(self, rel: str = "", recursive: bool = True) -> list[str]:
        """Files under ``rel`` as paths relative to it, sorted."""
        base = self.path(rel)
        selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                out.append(posixpath.relpath(info.path, base))
        return sorted(out)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def size(self, rel: str) -> int:
        return int(self.fs.get_file_info(self.path(rel)).size or 0)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as fh:
            return fh.read()

    def download(self, rel: str, local_path: str) -> None:
        """Copy one file to a local path (streamed, never whole in memory)."""
        pafs.copy_files(self.path(rel), local_path, source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())

    # ------------------------------------------------------------------ writing
    def _tmp_name(self, rel: str) -> str:
        return f"{self.path(rel)}.tmp-{uuid.uuid4().hex[:12]}"

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file; locally through a temporary name and a rename."""
        if not self.is_local:
            with self.fs.open_output_stream(self.path(rel)) as fh:
                fh.write(data)
            return
        os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        tmp = self._tmp_name(rel)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path(rel))
        except BaseException:
            _unlink(tmp)
            raise

    def upload(self, local_path: str, rel: str) -> None:
        """Put a finished local file at ``rel`` (local: move or copy + rename)."""
        target = self.path(rel)
        if not self.is_local:
            pafs.copy_files(local_path, target, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(local_path, target)
            return
        except OSError:  # another device: copy under a temporary name, then rename
            pass
        tmp = self._tmp_name(rel)
        try:
            pafs.copy_files(local_path, tmp)
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass

    def delete_dir(self, rel: str) -> None:
        try:
            self.fs.delete_dir(self.path(rel))
        except FileNotFoundError:
            pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
