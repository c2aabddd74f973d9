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

Local listings follow this policy for symbolic links (one iterative ``os.scandir`` walk: no
recursion limit, no memory beyond the list of files and one entry per folder), so that
links inside a videos root can neither loop, nor duplicate files, nor pull in files from
elsewhere:

- **file links are listed** under their own name, wherever they point; the target is checked
  again when the file is used (:meth:`Storage.real_path`, which refuses one outside the root).
  A link whose target is outside the root is also reported (``link_escapes_root``), a dangling
  one is reported and not listed (``broken_link``);
- **directory links are descended only if** their real path is inside the root's real path and
  no folder listed so far has that real path. Folders reached without links are listed first,
  so a link such as ``current -> .`` or ``up -> ..`` (``symlink_loop``) or ``all -> train``
  (``symlink_alias``) adds nothing: every file appears once, under its link-free name. A link to
  a folder outside the root is not followed (``link_escapes_root``); point the videos root at
  where the data really lives instead;
- a folder that cannot be read is skipped (``unreadable_dir``); the walk goes on;
- a FIFO, socket or device (or a link to one) is listed like a file and reported
  (``not_a_regular_file``): a row that names it is then refused for what it is, never read
  (opening a FIFO would block) and never mistaken for a missing file.

Each skipped link or folder is a :class:`ListingProblem` ``(path, kind, detail)``, returned by
:meth:`Storage.list_tree` and logged by :meth:`Storage.list_files`. Object stores have no links:
they are listed as before (one recursive listing) and report nothing.

S3 settings come from the standard AWS environment (``AWS_ACCESS_KEY_ID``…, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]`` for S3-compatible servers); GCS from the
default Google credentials.
"""
from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow.fs as pafs

log = logging.getLogger("tsi.io")

# A location is ``scheme://rest`` or a local path. ``file://`` is local: it names a path on this
# machine and is opened with the local filesystem, never through a network client.
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)

# Environment that configures object-storage clients; the job forwards it to its tasks.
STORAGE_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
    "AWS_EC2_METADATA_DISABLED", "GOOGLE_APPLICATION_CREDENTIALS",
)


def storage_env() -> dict[str, str]:
    """The object-store client settings of this process, to hand to the tasks it starts."""
    return {k: os.environ[k] for k in STORAGE_ENV if k in os.environ}


def scheme(location: str) -> str | None:
    """The lower-cased scheme of ``scheme://…`` (``"file"`` included), else ``None``."""
    match = _URI.match(location)
    return match.group(1).lower() if match else None


def is_uri(location: str) -> bool:
    """True for object-store and other remote locations (``s3://``, ``gs://``…), not ``file://``.

    This is the platform's one answer to "is this a URI": everything else is a local path.
    """
    return scheme(location) not in (None, "file")


def local_path(location: str) -> str:
    """Absolute local path of a plain path or a ``file://`` URI (``ValueError`` for remote ones)."""
    if is_uri(location):
        raise ValueError(f"{location} is not a local path")
    if scheme(location) == "file":
        location = _URI.match(location).group(2)  # type: ignore[union-attr]
    return os.path.abspath(location)


def _s3_filesystem() -> pafs.FileSystem:
    kwargs: dict[str, object] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs["region"] = region or "us-east-1"  # never let pyarrow probe the bucket's region
    # keys from the environment travel with the filesystem object: Ray Train's controller and
    # workers unpickle it in processes that may not have this environment (without keys, each
    # process uses the default chain: instance profile, IRSA / workload identity)
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem for ``location`` and the root path inside it (no trailing slash)."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), local_path(location)
    name = scheme(location)
    rest = _URI.match(location).group(2).strip("/")  # type: ignore[union-attr]
    if name in ("s3", "s3a"):
        return _s3_filesystem(), rest
    if name in ("gs", "gcs"):
        return pafs.GcsFileSystem(), rest
    import fsspec  # other schemes: whatever fsspec implementation is installed

    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(name))), rest


class PathEscapesRoot(ValueError):
    """A path under a local root that resolves (through links or ``..``) to outside the root."""

    def __init__(self, path: str, real: str, root: str) -> None:
        super().__init__(f"{path} resolves to {real}, outside {root}")
        self.path = path
        self.real = real
        self.root = root


# Kinds of :class:`ListingProblem` (see the module docstring for the policy).
SYMLINK_LOOP = "symlink_loop"
SYMLINK_ALIAS = "symlink_alias"
LINK_ESCAPES_ROOT = "link_escapes_root"
BROKEN_LINK = "broken_link"
UNREADABLE_DIR = "unreadable_dir"
NOT_A_REGULAR_FILE = "not_a_regular_file"


class ListingProblem(NamedTuple):
    """A link or folder the local walk skipped or flagged; ``path`` is relative to the listing."""

    path: str
    kind: str
    detail: str


def _inside(path: str, root: str) -> bool:
    """True if the (resolved) ``path`` is ``root`` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _LocalWalk:
    """One local listing under the link policy of the module docstring, without recursion."""

    def __init__(self, root_real: str, recursive: bool) -> None:
        self.root_real = root_real
        self.recursive = recursive
        self.files: list[str] = []
        self.problems: list[ListingProblem] = []
        self._visited: set[tuple[int, int]] = set()
        self._dir_links: list[tuple[str, str, str]] = []  # (rel, target, real path of its folder)

    def run(self, base_real: str) -> None:
        self._walk("", base_real)
        # Directory links come last, when every folder reachable without links is known.
        pending = deque(sorted(self._dir_links))
        self._dir_links = []
        while pending:
            self._follow(*pending.popleft())
            pending.extend(sorted(self._dir_links))
            self._dir_links = []

    def _report(self, rel: str, kind: str, detail: str) -> None:
        self.problems.append(ListingProblem(rel or ".", kind, detail))

    def _walk(self, rel_top: str, real_top: str) -> None:
        stack = [(rel_top, real_top)]
        while stack:
            rel, real = stack.pop()
            try:
                st = os.stat(real)
            except OSError as exc:
                self._report(rel, UNREADABLE_DIR, f"{type(exc).__name__}: {exc.strerror}")
                continue
            if (st.st_dev, st.st_ino) in self._visited:  # a link or bind mount to a listed folder
                self._report(rel, SYMLINK_ALIAS, f"-> {real}, listed under its own name")
                continue
            self._visited.add((st.st_dev, st.st_ino))
            try:
                with os.scandir(real) as entries:
                    for entry in entries:
                        child = f"{rel}/{entry.name}" if rel else entry.name
                        if entry.is_symlink():
                            self._link(child, entry.path, real)
                        elif entry.is_dir(follow_symlinks=False):
                            if self.recursive:
                                stack.append((child, entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            self.files.append(child)
                        else:  # a FIFO, socket or device: listed, so its row says what it is
                            self._report(child, NOT_A_REGULAR_FILE, "listed; refused when used")
                            self.files.append(child)
            except OSError as exc:
                self._report(rel, UNREADABLE_DIR, f"{type(exc).__name__}: {exc.strerror}")

    def _link(self, rel: str, path: str, folder_real: str) -> None:
        try:
            target = os.path.realpath(path, strict=True)
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            self._report(rel, SYMLINK_LOOP if loop else BROKEN_LINK,
                         f"-> {os.readlink(path)}: {exc.strerror}")
            return
        if os.path.isdir(target):
            if self.recursive:
                self._dir_links.append((rel, target, folder_real))
            return
        if not os.path.isfile(target):
            self._report(rel, NOT_A_REGULAR_FILE, f"-> {target} (listed; refused when used)")
        if not _inside(target, self.root_real):
            self._report(rel, LINK_ESCAPES_ROOT, f"-> {target} (listed; refused when used)")
        self.files.append(rel)

    def _follow(self, rel: str, target: str, folder_real: str) -> None:
        if not _inside(target, self.root_real):
            self._report(rel, LINK_ESCAPES_ROOT, f"-> {target}: not followed")
        elif _inside(folder_real, target):
            self._report(rel, SYMLINK_LOOP, f"-> {target}, a folder it is in: not followed")
        else:
            self._walk(rel, target)


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
        """Files under ``rel`` as paths relative to it, sorted (problems are logged).

        See :meth:`list_tree`; a missing folder lists as empty.
        """
        files, problems = self.list_tree(rel, recursive)
        if problems:
            shown = "; ".join(f"{p.path}: {p.kind} {p.detail}" for p in problems[:5])
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            log.warning("listing %s skipped %d links/folders: %s%s", self.uri(rel),
                        len(problems), shown, more)
        return files

    def list_tree(self, rel: str = "", recursive: bool = True
                  ) -> tuple[list[str], list[ListingProblem]]:
        """Files under ``rel`` (relative to it, sorted) and what the walk skipped or flagged.

        Local roots follow the link policy of the module docstring; a folder ``rel`` that
        resolves outside the root lists nothing. Object stores report no problems.
        """
        base = self.path(rel)
        if not self.is_local:
            selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
            files = [posixpath.relpath(info.path, base)
                     for info in self.fs.get_file_info(selector)
                     if info.type == pafs.FileType.File]
            return sorted(files), []
        root_real = os.path.realpath(self.root)
        base_real = os.path.realpath(base)
        if not _inside(base_real, root_real):
            return [], [ListingProblem(".", LINK_ESCAPES_ROOT,
                                       f"{base} resolves to {base_real}, outside {root_real}")]
        if not os.path.isdir(base_real):
            return [], []
        walk = _LocalWalk(root_real, recursive)
        walk.run(base_real)
        return sorted(walk.files), sorted(walk.problems)

    def real_path(self, rel: str) -> str:
        """The resolved path of ``rel`` (links and ``..`` followed) for a local root.

        It must lie inside the root's resolved path, else :class:`PathEscapesRoot` names both;
        a path that does not exist resolves as far as it can (the caller's open then fails).
        Object stores have no links: ``path(rel)``.
        """
        path = self.path(rel)
        if not self.is_local:
            return path
        real = os.path.realpath(path)
        root = os.path.realpath(self.root)
        if not _inside(real, root):
            raise PathEscapesRoot(path, real, root)
        return real

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


def parent_and_name(location: str) -> tuple[Storage, str]:
    """The folder holding the file at a path or URI, as a :class:`Storage`, and its name."""
    if is_uri(location):
        parent, _, name = location.rstrip("/").rpartition("/")
        return Storage.open(parent), name
    path = local_path(location)
    return Storage.open(os.path.dirname(path)), os.path.basename(path)


def read_bytes(location: str) -> bytes:
    """A whole small file (annotations, class lists) at a path or URI; ``OSError`` if unreadable."""
    storage, name = parent_and_name(str(location))
    return storage.read_bytes(name)


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole small file at a local path or URI (locally via a temporary name and rename)."""
    storage, name = parent_and_name(str(location))
    storage.write_bytes(name, data)
