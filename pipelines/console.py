"""What the main job shows a person at a terminal, and where the rest of its output goes.

One ``python -m jobs.demo`` runs Ray, Ray Train, DeepSpeed, MLflow and ffmpeg, and each writes
its own lines: worker output forwarded by Ray (with colour codes, and twice under Ray Train's
print patch), per-report ``TrainingReport(...)`` lines, library warnings nobody can act on. A
person needs one line per stage, a progress line while a long stage runs, and the summary.

:class:`Console` sends this process's stdout and stderr to ``{folder}/{stamp}.log`` at the file
descriptor level, so Ray's forwarded worker lines, child processes and C++ logs follow them, and
keeps the terminal for :func:`say` (stage lines, also copied into the log) and :func:`progress`
(one live line on a TTY; nothing between stage lines otherwise, so CI logs stay short). No
colour codes are written anywhere by this module. Bottom layer: imports nothing of the platform;
:class:`EpochProgress` wraps any object with the training tracking protocol by duck typing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# Set before Ray starts a local instance (its workers inherit them); an existing cluster keeps
# its own settings, and the console is clean either way because worker output goes to the log.
QUIET_ENV = {
    "RAY_COLOR_PREFIX": "0",  # no ANSI colour around the "(RayTrainWorker pid=…)" prefixes
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # a worker's print() once, not again through logging
}

# Warnings raised by libraries about their own internals, which a user of the main job cannot
# act on: (message start, category). Each is named; nothing else is filtered.
UNACTIONABLE_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # DeepSpeed's ZeRO calls torch's deprecated collective (torch 2.13); not our call site
    ("`torch.distributed.all_gather_into_tensor` is deprecated", FutureWarning),
    # MLflow's pyfunc logging: the platform's model takes video paths, not typed tensors
    ("\x1b[33mAdd type hints to the `predict` method", UserWarning),
    ("\x1b[1;33mAn input example was not provided when logging the model", UserWarning),
)

PROGRESS_ATTRIBUTE = "progress"  # logging extra: ``(done, total)`` or ``(done, total, unit)``


def quiet_libraries(environ: dict[str, str] | None = None) -> None:
    """Apply :data:`QUIET_ENV` (unless already set) and the warning filters, here and in the
    Python processes started from here (``PYTHONWARNINGS``: Ray workers, and the interpreter
    MLflow starts to infer a model's requirements)."""
    env = os.environ if environ is None else environ
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    specs = []
    for message, category in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=_escape(message), category=category)
        if ":" not in message and "," not in message:  # what PYTHONWARNINGS can spell
            specs.append(f"ignore:{message}:{category.__name__}")
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS", ""), *specs]))
    if not getattr(warnings.showwarning, "drops_unactionable", False):
        warnings.showwarning = _dropping_unactionable(warnings.showwarning)


def _escape(message: str) -> str:
    import re

    return re.escape(message)


def _dropping_unactionable(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` minus :data:`UNACTIONABLE_WARNINGS`: MLflow re-enables user
    warnings inside some of its calls (``catch_warnings`` + ``simplefilter("once")``), which
    puts its filter before ours; the display hook is the one place that sees every warning."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if any(text.startswith(start) and issubclass(category, kind)
               for start, kind in UNACTIONABLE_WARNINGS):
            return
        show(message, category, filename, lineno, file, line)
    showwarning.drops_unactionable = True  # type: ignore[attr-defined]
    return showwarning


class _Live:
    """The one live line on a TTY: redrawn in place, cleared before any other line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = _is_tty(stream)
        self.lock = threading.RLock()
        self.shown = False

    def draw(self, text: str) -> None:
        if not self.tty:
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        with self.lock:
            self.stream.write("\r" + text[:width].ljust(width))
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
                self.stream.write("\r" + " " * width + "\r")
                self.shown = False

    def line(self, text: str) -> None:
        with self.lock:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Console:
    """The main job's terminal: stage lines and progress there, everything else in the log.

    ``with Console(folder) as console:`` redirects file descriptors 1 and 2 to the log file until
    the block ends; Ray is shut down first when this process connected to it, so no forwarded
    worker line reaches the terminal afterwards. An exception leaving the block is written to
    the log with its traceback, and re-raised for the job to report in one line.
    """

    def __init__(self, folder: str | Path, *, name: str = "main-job") -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.log_path = Path(folder).resolve() / f"{name}-{stamp}.log"
        self._saved: tuple[int, int] | None = None
        self._live: _Live | None = None
        self._log: Any = None

    @property
    def live(self) -> _Live:
        if self._live is None:
            raise RuntimeError("the console is not started (use it as a context manager)")
        return self._live

    def __enter__(self) -> Console:
        global _ACTIVE
        quiet_libraries()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        self._live = _Live(terminal)
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 (closed in __exit__)
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        _ACTIVE = self
        return self

    def __exit__(self, kind, exc, tb) -> None:
        global _ACTIVE
        if exc is not None:
            print("".join(traceback.format_exception(kind, exc, tb)), file=sys.stderr,
                  flush=True)
        _stop_ray()
        sys.stdout.flush()
        sys.stderr.flush()
        _ACTIVE = None
        self.live.clear()
        if self._saved is not None:
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for fd in self._saved:
                os.close(fd)
            self._saved = None
        self._log.close()
        self.live.stream.close()

    def say(self, text: str) -> None:
        """A line for the person at the terminal, copied into the log where it happened."""
        self.live.line(text)
        print(text, flush=True)  # fd 1 is the log file inside the block


def _stop_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        ray.shutdown()


_ACTIVE: Console | None = None


def say(text: str) -> None:
    """A stage line: on the active console's terminal, else plain stdout (tests, benchmarks)."""
    if _ACTIVE is not None:
        _ACTIVE.say(text)
    else:
        print(text, flush=True)


def active_log() -> Path | None:
    """The log file of the active console (``None`` outside one)."""
    return _ACTIVE.log_path if _ACTIVE is not None else None


@dataclass
class _State:
    done: float = 0
    total: float | None = None
    unit: str = ""
    detail: str = ""


class Progress:
    """A long stage's live line: ``label [#####.....] 3/14 epochs  detail  42 s``.

    Drawn once a second on a TTY by a background thread, which also calls ``poll`` (a function
    returning ``(done, total, detail)`` or ``None``) to learn how far a stage run elsewhere has
    come. Off a TTY nothing is drawn; the stage's closing line is the caller's.
    """

    def __init__(self, label: str, live: _Live | None, *, total: float | None = None,
                 unit: str = "", poll: Callable[[], tuple[float, float | None, str] | None]
                 | None = None, interval_s: float = 1.0) -> None:
        self.label = label
        self.live = live
        self.state = _State(total=total, unit=unit)
        self.poll = poll
        self.interval_s = interval_s
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, done: float, total: float | None = None, detail: str | None = None,
               unit: str | None = None) -> None:
        self.state.done = done
        if total is not None:
            self.state.total = total
        if detail is not None:
            self.state.detail = detail
        if unit is not None:
            self.state.unit = unit

    def text(self) -> str:
        s = self.state
        parts = [self.label]
        if s.total:
            filled = int(20 * min(s.done / s.total, 1.0))
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {s.done:g}/{s.total:g}"
                         + (f" {s.unit}" if s.unit else ""))
        if s.detail:
            parts.append(s.detail)
        parts.append(f"{time.monotonic() - self.began:.0f} s")
        return "  ".join(parts)

    def _tick(self) -> None:
        if self.poll is not None:
            try:
                found = self.poll()
            except Exception:  # a progress source that cannot be read never stops the stage
                found = None
            if found is not None:
                self.update(*found)
        if self.live is not None:
            self.live.draw(self.text())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    def start(self) -> Progress:
        if self.live is not None and self.live.tty:
            self._tick()
            self._thread = threading.Thread(target=self._run, name="console-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live is not None:
            self.live.clear()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.began


class _ProgressRecords(logging.Handler):
    """Log records that carry ``extra={"progress": (done, total[, unit])}`` move the bar."""

    def __init__(self, bar: Progress) -> None:
        super().__init__(logging.DEBUG)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        value = getattr(record, PROGRESS_ATTRIBUTE, None)
        if value is not None:
            done, total, *unit = value
            self.bar.update(done, total, unit=unit[0] if unit else None)


@contextlib.contextmanager
def progress(label: str, *, total: float | None = None, unit: str = "",
             poll: Callable[[], tuple[float, float | None, str] | None] | None = None
             ) -> Iterator[Progress]:
    """A live line for the block (see :class:`Progress`); log records with a ``progress``
    extra (e.g. the preprocessing job's one per finished shard) move it."""
    bar = Progress(label, _ACTIVE.live if _ACTIVE is not None else None, total=total, unit=unit,
                   poll=poll).start()
    handler = _ProgressRecords(bar)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield bar
    finally:
        root.removeHandler(handler)
        bar.stop()


# ---- training epochs: rank 0 appends one line per epoch, the driver's bar reads the last ----

class _TeeEpochs:
    """The wrapped backend's epoch logger, plus one JSON line per epoch in ``path``."""

    def __init__(self, inner: Any, path: str) -> None:
        self.inner = inner
        self.path = path

    def log_epoch(self, metrics: Mapping[str, float], *, step: int, epoch: int) -> None:
        self.inner.log_epoch(metrics, step=step, epoch=epoch)
        record = {"epoch": epoch, "step": step,
                  **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
        except OSError:  # rank 0 on another node: no progress shown, training unaffected
            pass

    def close(self) -> None:
        self.inner.close()


@dataclass
class EpochProgress:
    """A training tracking backend (``pipelines.train.tracking.Tracking``) that also writes each
    epoch to ``path`` for :func:`epoch_poller`; picklable when the wrapped one is."""

    inner: Any
    path: str

    def check(self) -> None:
        self.inner.check()

    def begin(self, run_name: str, config: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text("")
        return self.inner.begin(run_name, config, run_dir)

    def epoch_logger(self, handle: Mapping[str, Any]) -> _TeeEpochs:
        return _TeeEpochs(self.inner.epoch_logger(handle), self.path)

    def end(self, handle: Mapping[str, Any], export_path: str, summary: Mapping[str, Any]) -> None:
        self.inner.end(handle, export_path, summary)

    def fail(self, handle: Mapping[str, Any], reason: str, summary: Mapping[str, Any]) -> None:
        self.inner.fail(handle, reason, summary)


def epoch_poller(path: str | Path, epochs: int) -> Callable[[], tuple[float, float, str] | None]:
    """``(epochs done, epochs, "loss 1.234  val top-1 0.456")`` from the lines of ``path``: the
    last epoch's loss and the latest validation (epochs without one show the one before)."""
    def poll() -> tuple[float, float, str] | None:
        try:
            records = [json.loads(line) for line in
                       Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError):  # not there yet, or a line being written
            return None
        if not records:
            return None
        validated = [r for r in records if _finite(r.get("val_top1"))]
        shown = [f"loss {records[-1]['train_loss']:.3f}" if _finite(
            records[-1].get("train_loss")) else "",
                 f"val top-1 {validated[-1]['val_top1']:.3f}" if validated else ""]
        return float(records[-1]["epoch"]), float(epochs), "  ".join(filter(None, shown))
    return poll


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---- the closing summary ----

# Column titles of well-known metrics; any other metric key becomes a column named after it.
METRIC_TITLES = {"top1": "top-1", "within_pair": "within pair", "pair_accuracy": "pair acc.",
                 "top5": "top-5"}
HIDDEN_METRICS = ("videos",)  # stated once in the title, not per row


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every numeric metric key of the rows, well-known ones first, in first-seen order."""
    keys: list[str] = []
    for metrics in rows:
        keys += [k for k, v in metrics.items() if isinstance(v, (int, float))
                 and not isinstance(v, bool) and k not in keys and k not in HIDDEN_METRICS]
    return [k for k in METRIC_TITLES if k in keys] + [k for k in keys if k not in METRIC_TITLES]


def title(key: str) -> str:
    return METRIC_TITLES.get(key, key.replace("_", " "))


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return out


def _cell(value: Any) -> str:
    """A table cell: fractions to 3 decimals, counts as integers; missing or not-a-number as
    ``-``, never ``nan``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) > 1 else f"{value:.3f}"
    return str(value)


@dataclass(frozen=True)
class ShownPrediction:
    """One eval video as the champion saw it."""

    video: str
    true_label: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]


def summary_lines(*, split: str, models: Sequence[tuple[str, Mapping[str, Any], str]],
                  decisions: Sequence[tuple[str, str]], champion: str | None,
                  predictions: Sequence[ShownPrediction], no_prediction: str = "",
                  tracking_uri: str | None, log_path: str | Path | None = None,
                  videos: int | None = None) -> list[str]:
    """The table the main job ends with.

    ``models``: ``(model, metrics, run name)``; every numeric metric gets a column, so a new
    metric appears without editing this. ``decisions``: ``(model, gate decision)`` lines.
    """
    columns = metric_columns([m for _, m, _ in models])
    shown = f"{videos} videos, " if videos else ""
    lines = [f"summary: {split} split ({shown}one centre clip per video; within pair = top-1 "
             "among videos whose order-pair was right: 0.5 is blind to frame order)"]
    lines += format_table([[name, *(_cell(metrics.get(k)) for k in columns), run]
                           for name, metrics, run in models],
                          ["model", *(title(k) for k in columns), "MLflow run"])
    for name, decision in decisions:
        lines.append(f"gate  {name}: {decision}")
    if predictions:
        lines.append(f"{champion} on {len(predictions)} {split} videos:")
        rows = [[p.video, p.true_label,
                 "yes" if p.labels and p.labels[0] == p.true_label else "no",
                 ", ".join(f"{label} {prob:.2f}" for label, prob in
                           list(zip(p.labels, p.probabilities))[:2])] for p in predictions]
        lines += ["  " + line for line in
                  format_table(rows, ["video", "true label", "right", "predicted (top 2)"])]
    elif no_prediction:
        lines.append(no_prediction)
    if tracking_uri:
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri '{tracking_uri}' "
                     "--host 127.0.0.1 --port 5000  (then http://127.0.0.1:5000/#/experiments"
                     "?workflowType=machine_learning)")
    if log_path:
        lines.append(f"full logs: {log_path}")
    return lines


__all__ = ["Console", "EpochProgress", "Progress", "ShownPrediction", "UNACTIONABLE_WARNINGS",
           "active_log", "epoch_poller", "metric_columns", "progress", "quiet_libraries", "say",
           "summary_lines"]
