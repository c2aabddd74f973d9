"""Run ffmpeg/ffprobe as argv lists under a wall-clock timeout, and name inputs safely.

Every media call goes through here so no code path ever builds a shell string, a hung decoder is
always killed, the output a child may hand to Python is bounded, and a file name that looks like
an option (``-x.mp4``) or a protocol (``concat:...``, ``http://...``) is always read as a plain
local file.
"""
from __future__ import annotations

import os
import resource
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Sequence

_CHUNK = 1 << 16
# A corrupt file can make ffmpeg print an error per packet: only the end of stderr is kept.
STDERR_KEEP = 64 << 10


def input_url(path: str) -> str:
    """An ffmpeg input string that can only mean "this local file".

    ``file:`` plus an absolute path: ffmpeg's file protocol takes the rest verbatim, so names
    beginning with ``-``, containing ``:``, ``;``, quotes, ``$()``, ``%d`` or non-ASCII characters,
    or looking like a URL, are safe. Remote inputs are downloaded first (:mod:`pipelines.io`).
    """
    if path.startswith("file:"):
        path = path[len("file:"):]
    return "file:" + os.path.abspath(path)


@dataclass(frozen=True)
class ToolRun:
    """Outcome of one ffmpeg/ffprobe invocation.

    ``timed_out``: killed at the timeout. ``overflowed``: killed because stdout passed its byte
    limit (``stdout`` then holds exactly the bytes up to the limit). A negative ``returncode``
    otherwise means something else killed it (the OOM killer, a crash).
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    peak_rss_mb: float = 0.0
    overflowed: bool = False

    def stderr_tail(self, limit: int = 400) -> str:
        """The last lines of stderr, decoded leniently, for a manifest ``detail`` column."""
        text = self.stderr[-4 * limit:].decode("utf-8", "replace").strip()
        return text[-limit:].replace("\n", " | ")

    def failure(self, tool: str, timeout_s: float) -> tuple[str, str] | None:
        """``(kind, detail)`` when the run did not finish by itself with status 0, else None.

        ``kind`` is ``timeout``, ``killed`` (by a signal it did not get from us) or ``failed``
        (non-zero exit); a run stopped at its stdout limit is not a failure (the caller decides).
        """
        if self.timed_out:
            return "timeout", f"{tool} ran past {timeout_s:g} s"
        if self.overflowed or self.returncode == 0:
            return None
        tail = self.stderr_tail()
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return "killed", f"{tool} killed by {name}" + (f": {tail}" if tail else "")
        return "failed", f"{tool} exited {self.returncode}" + (f": {tail}" if tail else "")


def _hwm_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a running process in MiB; 0 where /proc is unavailable.

    ``getrusage(RUSAGE_CHILDREN)`` cannot be used for this: a child spawned from a large Python
    process inherits the parent's high-water mark across fork/exec.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _address_space_limit(memory_limit_mb: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that caps the child's address space (RLIMIT_AS), or None for no cap."""
    if not memory_limit_mb:
        return None
    limit = int(memory_limit_mb) << 20

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class _Pump:
    """Reads a child's stdout and stderr as they come, sampling its peak RSS meanwhile."""

    def __init__(self, proc: subprocess.Popen, max_stdout_bytes: int | None) -> None:
        self.proc = proc
        self.max_stdout = max_stdout_bytes
        self.out = bytearray()
        self.err = bytearray()
        self.peak = 0.0

    def run(self, deadline: float) -> str:
        """Read until both pipes close: ``""``, or ``timeout``/``overflow`` when stopped early."""
        pipes = {self.proc.stderr.fileno(): self.err}  # type: ignore[union-attr]
        if self.proc.stdout is not None:
            pipes[self.proc.stdout.fileno()] = self.out
        interval = 0.02
        next_sample = time.monotonic() + interval
        with selectors.DefaultSelector() as selector:
            for fd in pipes:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if now >= deadline:
                    return "timeout"
                for key, _ in selector.select(min(interval, deadline - now)):
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                    elif self._keep(pipes[key.fd], chunk):
                        return "overflow"
                if time.monotonic() >= next_sample:
                    self.peak = max(self.peak, _hwm_mb(self.proc.pid))
                    interval = min(interval * 2, 0.1)
                    next_sample = time.monotonic() + interval
        return ""

    def _keep(self, buffer: bytearray, chunk: bytes) -> bool:
        """Append ``chunk``; True when stdout went past its limit (cut at the limit)."""
        buffer += chunk
        if buffer is self.err:
            if len(buffer) > 2 * STDERR_KEEP:
                del buffer[:-STDERR_KEEP]
            return False
        if self.max_stdout is not None and len(buffer) > self.max_stdout:
            del buffer[self.max_stdout:]
            return True
        return False


def run_tool(
    argv: Sequence[str],
    timeout_s: float,
    capture_stdout: bool = True,
    max_stdout_bytes: int | None = None,
    memory_limit_mb: int | None = None,
) -> ToolRun:
    """Run ``argv`` (no shell) with stdin closed; kill it if it runs past ``timeout_s``.

    stdout is read incrementally and the child is killed once it has written more than
    ``max_stdout_bytes`` (so Python never holds more than that); stderr keeps its last 64 KiB.
    ``memory_limit_mb`` caps the child's address space (RLIMIT_AS): allocations past it fail.
    The child's peak RSS is sampled (every 20-100 ms) so callers can report what a decode needed.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        shell=False,
        preexec_fn=_address_space_limit(memory_limit_mb),
    )
    pump = _Pump(proc, max_stdout_bytes)
    deadline = time.monotonic() + timeout_s
    try:
        stopped = pump.run(deadline)
        if not stopped:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stopped = "timeout"
        if stopped:
            proc.kill()
            proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return ToolRun(proc.returncode, bytes(pump.out), bytes(pump.err), stopped == "timeout",
                   pump.peak, stopped == "overflow")
