"""Hostile annotations and outputs: nothing they contain may reach outside the configured roots.

Splits that are paths, ``--overwrite`` next to foreign files and links, two runs on one output,
a stale task of a killed run, links out of the videos root, one file named twice, and the exit
status of every way a run can be refused. Most refusals happen before Ray starts; the two job
runs share the session's Ray instance and a four-clip dataset.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import videos as V
from pipelines.io import Storage
from pipelines.config import load_config
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.job import PreprocessError, run_preprocess
from pipelines.preprocess.lock import Fenced, OutputLock, OutputLocked
from pipelines.shards import contract

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
MEDIA = {"fps_cap": 8, "short_side": 64, "min_frames": 4}
HOSTILE_SPLITS = ["../victim", "/abs", "a/b", "..", ".", "tr ain", "x" * 65, "\u202etrain"]


def _write_csv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    videos = tmp_path_factory.mktemp("hostile") / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        V.clip(videos / name, seconds=0.8)
    return videos


@pytest.fixture()
def victim(tmp_path) -> Path:
    """Files outside every root, which no run may touch."""
    folder = tmp_path / "victim"
    folder.mkdir()
    for name in ("keep.txt", "shard-000000.tar", "manifest.parquet"):
        (folder / name).write_text("precious")
    return folder


def _cfg(videos: Path, output: Path, annotations: Path, **extra):
    return load_config(PreprocessConfig, None, flags={"dataset": "hostile", "format": "csv",
                                 "annotations": [str(annotations)], "videos": str(videos),
                                 "output": str(output), "media": MEDIA, **extra})


def _intact(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt", "manifest.parquet",
                                                         "shard-000000.tar"]
    assert all(p.read_text() == "precious" for p in folder.iterdir())


@pytest.mark.parametrize("overwrite", [False, True])
def test_hostile_split_names_are_refused_before_any_work(clips, victim, tmp_path, overwrite):
    output = tmp_path / "out"
    for split in HOSTILE_SPLITS:
        ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x", split), ("b.mp4", "y", "train")],
                         ("path", "label", "split"))
        with pytest.raises(PreprocessError, match="split"):
            run_preprocess(_cfg(clips, output, ann, overwrite=overwrite))
        with pytest.raises(PreprocessError, match="--split"):
            run_preprocess(_cfg(clips, output, ann, overwrite=overwrite, split=split))
    _intact(victim)
    # nothing was written: no class map, no split folder, no lock file, not even the output
    assert not output.exists()


def test_split_folder_linking_out_of_the_output_is_refused(clips, victim, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "train").symlink_to(victim, target_is_directory=True)
    ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x")], ("path", "label"))
    with pytest.raises(PreprocessError, match="outside"):
        run_preprocess(_cfg(clips, output, ann, overwrite=True))
    _intact(victim)


def test_a_second_run_on_a_locked_output_fails_fast(clips, tmp_path):
    output = tmp_path / "out"
    ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x", "val")], ("path", "label", "split"))
    with OutputLock(Storage.open(str(output))) as held:
        with pytest.raises(OutputLocked, match=held.run_id):
            run_preprocess(_cfg(clips, output, ann, split="val"))
        proc = _cli(["--format", "csv", "--annotations", str(ann), "--videos", str(clips),
                     "--output", str(output)])
        assert proc.returncode == 4, proc.stderr
        assert "being written by run" in proc.stderr
    assert not (output / contract.CLASSES).exists()


def test_a_task_of_a_stale_run_publishes_nothing(clips, tmp_path):
    from pipelines.media.decode import DecodeOptions
    from pipelines.preprocess.plan import PlannedSample, ShardSpec
    from pipelines.preprocess.worker import ShardTask, write_shard

    output = tmp_path / "out"
    spec = ShardSpec(0, contract.shard_name(0),
                     (PlannedSample("a", "a", "a.mp4", 0, "x", None, None),))
    with OutputLock(Storage.open(str(output))):  # the new run took over; the task is the old one's
        task = ShardTask(spec, "train", "unit", str(clips), str(output),
                         DecodeOptions(short_side=64, min_frames=4), run_id="killed-run")
        with pytest.raises(Fenced):
            write_shard(task)
    assert not list((output / "train").glob("shard-*"))  # no tar, no temp file
    assert not (output / "train" / contract.PARTS_DIR).exists()


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "jobs.preprocess", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bad_settings_exit_2_with_one_line_before_ray(clips, tmp_path, capsys):
    from jobs.preprocess import main

    ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x")], ("path", "label"))
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    base = ["--format", "csv", "--annotations", str(ann), "--videos", str(clips)]
    out = ["--output", str(tmp_path / "out")]
    cases = {
        "missing config": (base + out + ["--config", str(tmp_path / "nope.yaml")], "nope.yaml"),
        "videos is a file": (["--format", "csv", "--annotations", str(ann), "--videos",
                              str(a_file)] + out, "expected a folder"),
        "output is a file": (base + ["--output", str(a_file)], "expected a folder"),
        "missing annotations": (["--format", "csv", "--annotations", str(tmp_path / "no.csv"),
                                 "--videos", str(clips)] + out, "does not exist"),
        "no shard size": (base + out + ["sharding.videos_per_shard=0"], "videos_per_shard"),
        "no workers": (base + out + ["--workers", "0"], "workers"),
        "bad split": (base + out + ["--split", "../up"], "plain name"),
    }
    for name, (args, needle) in cases.items():
        assert main(args) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (name, lines)
    # and as a user runs it, in a fresh process that never starts Ray
    proc = _cli(cases["videos is a file"][0])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Ray" not in proc.stdout + proc.stderr


def test_a_run_that_stores_nothing_exits_3(tmp_path):
    videos = tmp_path / "elsewhere"
    videos.mkdir()
    (videos / "unrelated.txt").write_text("not a video")
    ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x"), ("b.mp4", "y")], ("path", "label"))
    proc = _cli(["--format", "csv", "--annotations", str(ann), "--videos", str(videos),
                 "--output", str(tmp_path / "out")])
    assert proc.returncode == 3, proc.stderr
    assert "nothing was stored" in proc.stderr
    rows = pq.read_table(tmp_path / "out" / "train" / contract.MANIFEST).to_pylist()
    assert {r["reason"] for r in rows} == {"missing_file"}
    assert all("'a.mp4'" in r["detail"] or "'b.mp4'" in r["detail"] for r in rows)


@pytest.fixture(scope="module")
def hostile_run(ray_local, clips, tmp_path_factory) -> dict:
    """One run over links, aliases, twin extensions, padded names and awkward labels."""
    root = tmp_path_factory.mktemp("hostile-run")
    outside = root / "outside"
    outside.mkdir()
    V.clip(outside / "secret.mp4", seconds=0.8)
    videos = root / "videos"
    videos.mkdir()
    for name in ("x.mp4", "x.mkv", " lead.mp4", "trail .mp4", "real.mp4"):
        V.clip(videos / name, seconds=0.8)
    (videos / "escape.mp4").symlink_to(outside / "secret.mp4")
    (videos / "alias.mp4").symlink_to(videos / "real.mp4")
    (videos / "current").symlink_to(".", target_is_directory=True)  # a loop in the tree
    rows = [("x.mp4", "café"), ("x.mkv", "cafe\u0301"), (" lead.mp4", "b"), ("trail .mp4", "b"),
            ("real.mp4", "b"), ("alias.mp4", "b"), ("escape.mp4", "b"),
            ("x.mp4", "other"), ("real.mp4", "tab\tlabel")]
    ann = _write_csv(root / "ann.csv", rows, ("path", "label"))
    output = root / "out"
    summary = run_preprocess(_cfg(videos, output, ann, sharding={"videos_per_shard": 8}))
    manifest = pq.read_table(output / "train" / contract.MANIFEST).to_pylist()
    return {"summary": summary, "rows": manifest, "output": output, "videos": videos,
            "outside": outside, "annotations": ann}


def test_links_aliases_twins_and_padded_names(hostile_run):
    by_id: dict[str, list[dict]] = {}
    for row in hostile_run["rows"]:
        by_id.setdefault(row["video_id"], []).append(row)
    status = {vid: sorted((r["status"], r["reason"]) for r in rows) for vid, rows in by_id.items()}
    # x.mp4 and x.mkv are two samples; x.mp4 repeated with another label is a conflict
    assert status["x.mp4"] == [("ok", ""), ("rejected", "label_conflict")]
    assert status["x.mkv"] == [("ok", "")]
    assert status[" lead.mp4"] == [("ok", "")] and status["trail .mp4"] == [("ok", "")]
    # a link out of the root is refused at use; a link to a listed file is the same file
    assert status["escape.mp4"] == [("rejected", "link_escapes_root")]
    assert {tuple(s) for s in (status["real.mp4"] + status["alias.mp4"])} == {
        ("ok", ""), ("rejected", "same_file"), ("rejected", "bad_label")}
    assert hostile_run["summary"].stored == 5


def test_labels_are_nfc_and_untrusted_labels_make_no_class(hostile_run):
    from pipelines.data.classes import ClassMap

    classes = ClassMap.load(hostile_run["output"] / contract.CLASSES)
    assert classes.names == ("b", "café")  # both spellings of café are one class
    assert "other" not in classes and "tab\tlabel" not in classes


def test_overwrite_deletes_only_what_the_job_owns(hostile_run, victim):
    split_dir = hostile_run["output"] / "train"
    (split_dir / "notes.txt").write_text("mine")
    (split_dir / "victim-link").symlink_to(victim, target_is_directory=True)
    cfg = _cfg(hostile_run["videos"], hostile_run["output"], hostile_run["annotations"],
               overwrite=True, sharding={"videos_per_shard": 3})  # another plan
    summary = run_preprocess(cfg)
    assert summary.stored == 5
    assert (split_dir / "notes.txt").read_text() == "mine"
    assert (split_dir / "victim-link").is_symlink()
    _intact(victim)
    # six planned samples (the escaping link is refused by its task) at three per shard
    assert len(list(split_dir.glob("shard-*.tar"))) == summary.splits["train"].shards == 2


def test_transient_rejections_are_retried_by_a_plain_rerun(ray_local, clips, tmp_path):
    ann = _write_csv(tmp_path / "ann.csv", [("a.mp4", "x"), ("b.mp4", "y")], ("path", "label"))
    output = tmp_path / "out"
    first = run_preprocess(_cfg(clips, output, ann, media={**MEDIA, "decode_timeout_s": 0.001}))
    assert first.stored == 0
    assert first.splits["train"].stats["rejected_by_reason"] == {"decode_timeout": 2}
    again = run_preprocess(_cfg(clips, output, ann))  # same plan, no --overwrite
    assert again.stored == 2 and again.splits["train"].processed
