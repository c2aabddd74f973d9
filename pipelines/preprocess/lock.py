"""One job per output at a time: an exclusive lock on the dataset root, and a fencing token.

Local output (any POSIX disk): ``{output}/_lock.json`` is held with ``flock`` by the driver for
the whole run, so a second run on the same output -- any split -- fails at once with the holder's
pid, host and start time. The kernel drops the lock when the driver dies, so a killed driver
never blocks the next run. The file exists only while a run holds it: the holder removes it
(while still holding the lock) when the run ends, and a run that was refused leaves nothing
behind, not even the output folder if the run created it and nothing else was written there.
A run that locked a file someone removed meanwhile locks the new one instead.

A killed driver may leave shard tasks running for a moment (Ray kills a dead driver's tasks when
it notices). They cannot corrupt the next run: the lock file holds the run id of its holder
(the **fencing token**) and a task re-reads it before it moves a finished shard or manifest part
into place; a task of an older run finds another id and drops its work (:class:`Fenced`). What
remains is the window between that check and one rename, in which a task of the same plan can
only put the identical shard in place.

Object storage has no locks: ``_lock.json`` is then an object holding the run id and a
heartbeat the driver refreshes every ``HEARTBEAT_S``; a run refuses an output whose lock was
refreshed less than ``STALE_S`` ago by another run, and reads its own write back to catch a racing
start. Two runs starting within the same second can still both pass: schedule one job per output
(one RayJob name per dataset) rather than relying on it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipelines.io import Storage
from pipelines.preprocess.errors import PreprocessError

LOCK_NAME = "_lock.json"
HEARTBEAT_S = 30.0
STALE_S = 120.0


class OutputLocked(PreprocessError):
    """Another run holds the output's lock."""


class Fenced(PreprocessError):
    """This task belongs to a run that no longer holds the output's lock: its work is dropped."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _holder(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return (f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, started {holder.get('started', '?')})")


@dataclass
class OutputLock:
    """Context manager holding ``{output}/_lock.json`` for one run; ``run_id`` is its token."""

    output: Storage
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _fd: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _beat: threading.Thread | None = None
    _made_dirs: list[str] = field(default_factory=list)

    def _record(self) -> bytes:
        body = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                "started": _now(), "heartbeat": time.time()}
        return json.dumps(body).encode()

    def __enter__(self) -> "OutputLock":
        if self.output.is_local:
            self._acquire_local()
        else:
            self._acquire_remote()
        return self

    def _acquire_local(self) -> None:
        import fcntl

        self._made_dirs = missing_dirs(self.output.root)
        os.makedirs(self.output.root, exist_ok=True)
        path = self.output.path(LOCK_NAME)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise OutputLocked(
                    f"{self.output.uri()} is being written by {_describe(holder)}; wait for it "
                    "to finish or stop it, then re-run (one job per output at a time)") from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder removed the file between our open and our lock: retry
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._record(), 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_remote(self) -> None:
        if self.output.exists(LOCK_NAME):
            holder = _holder(self.output.read_bytes(LOCK_NAME).decode("utf-8", "replace"))
            age = time.time() - float(holder.get("heartbeat") or 0)
            if holder.get("run_id") != self.run_id and age < STALE_S:
                raise OutputLocked(
                    f"{self.output.uri()} is being written by {_describe(holder)} (heartbeat "
                    f"{age:.0f} s ago); a lock older than {STALE_S:.0f} s is taken over")
        self.output.write_bytes(LOCK_NAME, self._record())
        time.sleep(1.0)  # a run that started at the same moment has written by now
        if holder_id(self.output) != self.run_id:
            raise OutputLocked(f"{self.output.uri()}: another run started at the same time")
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="lock-heartbeat")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if holder_id(self.output) != self.run_id:
                return  # taken over: tasks of this run are fenced from now on
            self.output.write_bytes(LOCK_NAME, self._record())

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.output.path(LOCK_NAME))  # removed while still held (see _same_file)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
            remove_empty_dirs(self._made_dirs)  # only if this run wrote nothing else there
        if self._beat is not None:
            self._stop.set()
            self._beat.join(timeout=5)
            if holder_id(self.output) == self.run_id:
                self.output.delete(LOCK_NAME)


def missing_dirs(path: str) -> list[str]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def remove_empty_dirs(dirs: list[str]) -> None:
    """Remove the folders ``missing_dirs`` listed (deepest first), stopping at one not empty."""
    for path in dirs:
        try:
            os.rmdir(path)
        except OSError:
            return


def _same_file(fd: int, path: str) -> bool:
    """Whether the locked ``fd`` is still the file at ``path`` (not one unlinked meanwhile)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    locked = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (locked.st_dev, locked.st_ino)


def holder_id(output: Storage) -> str | None:
    """Run id recorded in the output's lock, or ``None`` when there is none."""
    try:
        return _holder(output.read_bytes(LOCK_NAME).decode("utf-8", "replace")).get("run_id")
    except (FileNotFoundError, OSError):
        return None


def check_fence(output: Storage, run_id: str | None) -> None:
    """Raise :class:`Fenced` unless ``run_id`` still holds the output (``None``: unfenced)."""
    if run_id is None:
        return
    current = holder_id(output)
    if current != run_id:
        raise Fenced(f"{output.uri()} now belongs to run {current}; this task's run {run_id} "
                     "is stale, its shard is dropped")
