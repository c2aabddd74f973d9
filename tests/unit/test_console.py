"""The main job's console (pipelines/console.py): what a person sees, and what goes to the log.

The capture works on file descriptors, so each case runs a small real program in a child
process (a pipe, or a pseudo-terminal for the TTY case) that writes the kinds of noise the main
job meets: prints, raw writes to fd 1 and 2, a child process, library warnings, log records.
The real main job's console is checked by .ci/run on the smoke profile (tests/console_check.py).
"""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from console_check import problems

from pipelines.console import (EpochProgress, ShownPrediction, epoch_poller, metric_columns,
                               summary_lines)
from pipelines.train.tracking import FileTracking

REPO = Path(__file__).resolve().parents[1]

NOISY_JOB = textwrap.dedent("""
    import logging, os, subprocess, sys, time, warnings
    from pipelines.console import Console, progress, say

    def stages():
        print("noise from print")
        os.write(1, b"noise on fd 1\\n")
        os.write(2, b"\\x1b[36m(RayTrainWorker pid=1)\\x1b[0m noise on fd 2\\n")
        subprocess.run(["sh", "-c", "echo noise from a child process"], check=True)
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Use x",
                      FutureWarning)
        warnings.warn("an actionable warning", UserWarning)
        with warnings.catch_warnings():  # as MLflow wraps some calls: its filter before ours
            warnings.simplefilter("once", category=UserWarning)
            warnings.warn("\\x1b[33mAdd type hints to the `predict` method to x", UserWarning)
        say("[1/2] first stage")
        with progress("[2/2] shards", unit="shards"):
            for done in (1, 2, 3):
                logging.getLogger("tsi.preprocess").info("shard %d done", done,
                                                         extra={"progress": (done, 3)})
                time.sleep(float(sys.argv[2]))
        say("[2/2] second stage")
        if sys.argv[3] == "fail":
            raise RuntimeError("the stage broke")

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    console = Console(sys.argv[1], name="job")
    print("LOG", console.log_path, flush=True)
    try:
        with console:
            stages()
    except RuntimeError as exc:  # what jobs/demo.py does: one line, the traceback in the log
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print("after the console")
""")


def _run_on_a_pipe(tmp_path: Path, fail: bool = False) -> tuple[subprocess.CompletedProcess, Path]:
    proc = subprocess.run([sys.executable, "-c", NOISY_JOB, str(tmp_path), "0",
                           "fail" if fail else "ok"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    log = Path(proc.stdout.splitlines()[0].split(" ", 1)[1])
    return proc, log


def test_the_terminal_gets_stage_lines_only_and_the_log_gets_everything(tmp_path):
    proc, log = _run_on_a_pipe(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == ["[1/2] first stage", "[2/2] second stage",
                                            "after the console"]
    assert proc.stderr == ""
    assert problems(proc.stdout) == []
    text = log.read_text()
    for noise in ("noise from print", "noise on fd 1", "noise on fd 2",
                  "noise from a child process", "an actionable warning", "shard 3 done",
                  "[1/2] first stage"):
        assert noise in text, noise
    assert "all_gather_into_tensor" not in text and "Add type hints" not in text  # named
    assert "after the console" not in text


def test_a_failing_stage_leaves_its_traceback_in_the_log_not_on_the_terminal(tmp_path):
    proc, log = _run_on_a_pipe(tmp_path, fail=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr == "error: the stage broke\n"  # the job's one line, on the terminal
    assert "Traceback" in log.read_text() and "the stage broke" in log.read_text()


def test_on_a_tty_a_live_progress_line_is_drawn_in_place_without_colour(tmp_path):
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", NOISY_JOB, str(tmp_path), "1.2", "ok"],
                            cwd=REPO, stdin=child, stdout=child, stderr=child,
                            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"})
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(main)
    seen = b"".join(chunks).decode()
    assert "\x1b" not in seen and "noise" not in seen
    assert "\r[2/2] shards  [" in seen and "/3 shards" in seen
    lines = [line.split("\r")[-1].strip() for line in seen.replace("\r\n", "\n").split("\n")]
    assert [line for line in lines if line.startswith("[")] == ["[1/2] first stage",
                                                                 "[2/2] second stage"]


def test_training_progress_comes_from_the_epochs_rank_0_logs(tmp_path):
    """The wrapper keeps the wrapped backend's records and adds the poller's file."""
    progress_file = tmp_path / "logs" / "epochs.jsonl"
    tracking = EpochProgress(FileTracking(), str(progress_file))
    poll = epoch_poller(progress_file, 4)
    handle = tracking.begin("run-1", {}, str(tmp_path / "run"))
    assert poll() is None  # nothing trained yet
    logger = tracking.epoch_logger(handle)
    logger.log_epoch({"train_loss": 1.5, "val_top1": 0.25}, step=3, epoch=1)
    logger.log_epoch({"train_loss": 1.25, "val_top1": float("nan")}, step=6, epoch=2)
    logger.close()
    assert poll() == (2.0, 4.0, "loss 1.250  val top-1 0.250")  # the last real validation
    kept = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in kept] == [1, 2]


def test_the_summary_shows_every_metric_the_gate_the_showcase_and_the_ui():
    lines = summary_lines(
        split="eval", videos=256,
        models=[("tsi_r50", {"top1": 0.84, "within_pair": 0.9, "pair_accuracy": 0.93,
                             "top5": 1.0, "videos": 256, "reversal_flip": 0.71},
                 "demo-tsi_r50-1"),
                ("tsn_r50", {"top1": 0.47, "within_pair": 0.5, "pair_accuracy": 0.94,
                             "top5": 1.0, "videos": 256, "reversal_flip": float("nan")},
                 "demo-tsn_r50-1")],
        decisions=[("tsi_r50 v1", "promoted to demo v1: top-1 0.84 reaches the floor 0.5"),
                   ("tsn_r50 v2", "refused: top-1 gain -0.3700 < min_gain 0.005")],
        champion="models:/demo@champion",
        predictions=[ShownPrediction("a.mp4", "move_up", ("move_up", "move_down"), (0.6, 0.3)),
                     ShownPrediction("b.mp4", "move_down", ("move_up", "move_down"), (0.5, 0.4))],
        tracking_uri="sqlite:////x/mlflow.db", log_path="/x/logs/demo.log")
    text = "\n".join(lines)
    header = lines[1].split()
    assert header[:5] == ["model", "top-1", "within", "pair", "pair"]
    assert "reversal flip" in lines[1]  # a metric the table was never told about
    assert "nan" not in text and problems(text) == []
    tsn = next(line for line in lines if line.startswith("tsn_r50"))
    assert tsn.split()[:6] == ["tsn_r50", "0.470", "0.500", "0.940", "1.000", "-"]
    assert "gate  tsi_r50 v1: promoted to demo v1: top-1 0.84 reaches the floor 0.5" in lines
    assert "gate  tsn_r50 v2: refused: top-1 gain -0.3700 < min_gain 0.005" in lines
    showcase = [line.split() for line in lines if ".mp4" in line]
    assert [row[:3] for row in showcase] == [["a.mp4", "move_up", "yes"],
                                            ["b.mp4", "move_down", "no"]]
    assert any("mlflow ui --backend-store-uri 'sqlite:////x/mlflow.db'" in line for line in lines)
    assert lines[-1] == "full logs: /x/logs/demo.log"


def test_metric_columns_put_known_metrics_first_and_skip_non_numbers():
    assert metric_columns([{"reversal_flip": 0.1, "top1": 0.5, "note": "x", "videos": 8},
                           {"within_pair": 0.5, "extra": 1}]) == [
        "top1", "within_pair", "reversal_flip", "extra"]


@pytest.mark.parametrize("text, found", [
    ("a\nb\n", []),
    ("a\na\n", ["duplicate line: 'a'"]),
    ("\x1b[36mx\x1b[0m\n", ["colour code in: '\\x1b[36mx\\x1b[0m'"]),
    ("val top1 nan\n", ["nan in: 'val top1 nan'"]),
    ("x: UserWarning: y\n", ["warning in: 'x: UserWarning: y'"]),
])
def test_the_console_check_names_each_problem(text, found):
    assert problems(text) == found
