"""Run ffmpeg/ffprobe as argv lists under a wall-clock timeout, and name inputs safely.

Every media call goes through here so no code path ever builds a shell string, a hung decoder is
always killed, and a file name that looks like an option (``-x.mp4``) or a protocol
(``concat:...``) is always read as a plain local file.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Sequence

_REMOTE_PREFIXES = ("http://", "https://")


def input_url(path: str) -> str:
    """An ffmpeg input string that can only mean "this local file" (or an explicit HTTP URL).

    ``file:`` plus an absolute path: ffmpeg's file protocol takes the rest verbatim, so names
    beginning with ``-``, containing ``:``, ``;``, quotes, ``$()`` or non-ASCII characters are safe.
    """
    if path.startswith(_REMOTE_PREFIXES):
        return path
    if path.startswith("file:"):
        path = path[len("file:"):]
    return "file:" + os.path.abspath(path)


@dataclass(frozen=True)
class ToolRun:
    """Outcome of one ffmpeg/ffprobe invocation; ``timed_out`` means it was killed."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    peak_rss_mb: float = 0.0

    def stderr_tail(self, limit: int = 400) -> str:
        """The last lines of stderr, decoded leniently, for a manifest ``detail`` column."""
        text = self.stderr.decode("utf-8", "replace").strip()
        return text[-limit:].replace("\n", " | ")


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


def run_tool(argv: Sequence[str], timeout_s: float, capture_stdout: bool = True) -> ToolRun:
    """Run ``argv`` (no shell) with stdin closed; kill it if it runs past ``timeout_s``.

    While waiting, the child's peak RSS is sampled (every 20-100 ms) so callers can report the
    memory a decode needed.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        shell=False,
    )
    deadline = time.monotonic() + timeout_s
    peak = 0.0
    interval = 0.02
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                out, err = proc.communicate(timeout=max(0.0, min(interval, remaining)))
                return ToolRun(proc.returncode, out or b"", err or b"", False, peak)
            except subprocess.TimeoutExpired:
                peak = max(peak, _hwm_mb(proc.pid))
                interval = min(interval * 2, 0.1)
                if time.monotonic() >= deadline:
                    break
        proc.kill()
        out, err = proc.communicate()
        return ToolRun(proc.returncode, out or b"", err or b"", True, peak)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
