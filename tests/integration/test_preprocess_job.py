"""The Ray preprocessing job end to end on the session's local Ray: good, broken and awkward
videos; read-back with webdataset and Ray Data; a second split; resume after SIGKILL."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import simplejpeg

import videos as V
from pipelines.data.classes import ClassMap
from pipelines.config import load_config
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.job import PreprocessError, run_preprocess
from pipelines.shards import contract
from pipelines.shards.reader import (
    decode_frames, list_shards, open_shards, sample_label, sample_meta,
)

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
LABELS = ('passing "ball", fast', "it's raining", "Ünïcode label")
CONFIG_YAML = """\
dataset: jobtest
format: csv
media:
  fps_cap: 8
  short_side: 64
  min_frames: 4
  probe_timeout_s: 30
  decode_timeout_s: 60
sharding:
  videos_per_shard: 4
  seed: 3
"""
BAD_REASONS = {
    "bad/zerobyte.mp4": "empty_file",
    "bad/text.mp4": "probe_failed",
    "bad/audioonly.mp4": "no_video_stream",
    "bad/truncnoindex.mp4": "probe_failed",
    "bad/truncsevere.mp4": "decode_failed",
    "bad/one-frame.mp4": "too_few_frames",
}
READER_REJECTS = [  # (path, label, reason)
    ("clips/does-not-exist.mp4", LABELS[0], "missing_file"),
    ("clips/good_0.mp4", LABELS[0], "duplicate"),
    ("clips/good_2.mp4", LABELS[0], "label_conflict"),  # good_2 is LABELS[2]
    ("clips/good_1.mp4", "", "empty_label"),
    ("../outside.mp4", LABELS[0], "path_escapes_root"),
]


def _build_dataset(root: Path) -> dict:
    """Videos + a ``path,label`` CSV; returns what a correct job must produce."""
    videos = root / "videos"
    for sub in ("clips", "special", "weird", "bad"):
        (videos / sub).mkdir(parents=True)
    good: list[str] = []
    for i in range(6):
        good.append(str(V.clip(videos / "clips" / f"good_{i}.mp4").relative_to(videos)))
    for kind, make in V.GOOD.items():
        ext = ".webm" if kind == "webm" else ".mp4"
        good.append(str(make(videos / "special" / (kind + ext)).relative_to(videos)))
    for name in V.AWKWARD_NAMES:
        good.append(str(V.clip(videos / "weird" / name).relative_to(videos)))
    good.append(str(V.truncated(videos / "special" / "truncated-ok.mp4", 0.7)
                    .relative_to(videos)))
    for rel in BAD_REASONS:
        name = Path(rel).stem
        if name == "one-frame":
            V.one_frame(videos / rel)
        else:
            V.BAD[name][0](videos / rel)
    rows = [(rel, LABELS[i % len(LABELS)]) for i, rel in enumerate(good)]
    rows += [(rel, LABELS[0]) for rel in BAD_REASONS]
    rows += [(rel, label) for rel, label, _ in READER_REJECTS]
    csv_path = root / "train.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    config = root / "jobtest.yaml"
    config.write_text(CONFIG_YAML)
    expected = {contract.sample_key(rel): label for rel, label in rows[: len(good)]}
    return {"videos": videos, "csv": csv_path, "config": config, "expected": expected,
            "rows": len(rows)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return _build_dataset(tmp_path_factory.mktemp("jobdata"))


def _flags(data: dict, output: Path, **extra) -> dict:
    return {"annotations": [str(data["csv"])], "videos": str(data["videos"]),
            "output": str(output), **extra}


@pytest.fixture(scope="module")
def job(ray_local, dataset, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("jobout") / "ds"
    cfg = load_config(PreprocessConfig, dataset["config"],
                      flags=_flags(dataset, output, ray={"workers": 2}))
    summary = run_preprocess(cfg)
    return {"output": output, "summary": summary, "cfg": cfg}


def _manifest(output: Path, split: str = "train") -> list[dict]:
    return pq.read_table(output / split / contract.MANIFEST).to_pylist()


def _membership(output: Path, split: str = "train") -> dict[str, list[str]]:
    out = {}
    for shard in list_shards(str(output), split):
        with tarfile.open(shard) as tar:
            keys = [n.split(".", 1)[0] for n in tar.getnames()]
        out[Path(shard).name] = list(dict.fromkeys(keys))
    return out


def test_good_videos_land_exactly_once_with_exact_labels(job, dataset):
    classes = ClassMap.load(job["output"] / contract.CLASSES)
    assert classes.names == tuple(sorted(LABELS))
    seen: dict[str, str] = {}
    for sample in open_shards(list_shards(str(job["output"]), "train")):
        key = sample["__key__"]
        assert key not in seen, f"{key} stored twice"
        meta = sample_meta(sample)
        seen[key] = meta["label_name"]
        assert sample_label(sample) == meta["label"] == classes.index(meta["label_name"])
    assert seen == dataset["expected"]
    assert job["summary"].ok
    assert job["summary"].splits["train"].stats["ok"] == len(dataset["expected"])


def test_bad_videos_and_bad_rows_are_in_the_manifest_with_reasons(job, dataset):
    rows = _manifest(job["output"])
    assert len(rows) == dataset["rows"]  # one row per annotation row
    by_source = {r["source"]: r for r in rows}
    for rel, reason in BAD_REASONS.items():
        row = by_source[str(dataset["videos"] / rel)]
        assert (row["status"], row["reason"], row["shard"]) == ("rejected", reason, "")
        assert row["detail"]
    reader_rows = [r for r in rows if r["source"].startswith(str(dataset["csv"]))]
    assert sorted(r["reason"] for r in reader_rows) == sorted(r for _, _, r in READER_REJECTS)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["key"]: r["label_name"] for r in ok} == dataset["expected"]
    assert all(r["reason"] == "" and r["shard"].startswith("shard-") for r in ok)
    truncated = by_source[str(dataset["videos"] / "special" / "truncated-ok.mp4")]
    assert truncated["status"] == "ok" and truncated["warning"].startswith("truncated:")
    stats = job["summary"].splits["train"].stats
    expected_reasons = {}
    for reason in list(BAD_REASONS.values()) + [r for _, _, r in READER_REJECTS]:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert stats["rejected_by_reason"] == dict(sorted(expected_reasons.items()))
    assert "rejected empty_file" in job["summary"].format()


def test_shard_members_adjacent_complete_and_consistent(job):
    keys: list[str] = []
    for shard in list_shards(str(job["output"]), "train"):
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            prefixes = [m.name.split(".", 1)[0] for m in members]
            runs = [p for i, p in enumerate(prefixes) if i == 0 or prefixes[i - 1] != p]
            assert len(runs) == len(set(runs)), "members of a sample are not adjacent"
            keys += runs
            for key in runs:
                names = {m.name[len(key) + 1:] for m in members if m.name.split(".", 1)[0] == key}
                assert names == {contract.FRAMES, contract.META, contract.LABEL}
    assert len(keys) == len(set(keys))
    for sample in open_shards(list_shards(str(job["output"]), "train")):
        meta = sample_meta(sample)
        assert set(contract.META_FIELDS) <= set(meta)
        assert meta["format_version"] == contract.FORMAT_VERSION and meta["split"] == "train"
        frames = decode_frames(sample[contract.FRAMES])
        assert frames.shape == (meta["num_frames"], meta["height"], meta["width"], 3)
        assert min(meta["width"], meta["height"]) == 64 and meta["fps"] <= 8
        if meta["video_id"] == "special/rotated.mp4":
            assert meta["height"] > meta["width"]  # portrait after autorotation


def test_ray_data_reads_the_shards(job, dataset, ray_local):
    import ray

    ds = ray.data.read_webdataset(list_shards(str(job["output"]), "train"))
    rows = ds.take_all()
    assert {r["__key__"]: r["json"]["label_name"] for r in rows} == dataset["expected"]
    assert all(r["cls"] == r["json"]["label"] for r in rows)
    first = rows[0]
    image = simplejpeg.decode_jpeg(
        __import__("msgpack").unpackb(first["frames.msgpack"], raw=False)[0])
    assert image.dtype == np.uint8 and min(image.shape[:2]) == 64


def test_output_layout_and_no_temp_files(job):
    out = job["output"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert contract.CLASSES in files
    assert {"train/manifest.parquet", "train/stats.json", "train/plan.json"} <= set(files)
    assert not [f for f in files if contract.TEMP_MARKER in f]
    shards = [f for f in files if contract.is_shard_name(Path(f).name)]
    assert len(shards) == job["summary"].splits["train"].shards == 7


def test_second_split_reuses_classes_and_rejects_unknown_labels(job, dataset, tmp_path):
    videos = dataset["videos"]
    (videos / "val").mkdir(exist_ok=True)
    V.clip(videos / "val" / "v0.mp4")
    V.clip(videos / "val" / "v1.mp4")
    val_csv = tmp_path / "val.csv"
    val_csv.write_text(f"path,label\nval/v0.mp4,{LABELS[2]}\nval/v1.mp4,never seen\n")
    before = (job["output"] / contract.CLASSES).read_bytes()
    cfg = load_config(PreprocessConfig, dataset["config"], flags={
        "annotations": [str(val_csv)], "videos": str(videos), "output": str(job["output"]),
        "split": "val"})
    summary = run_preprocess(cfg)
    assert (job["output"] / contract.CLASSES).read_bytes() == before
    rows = {r["video_id"]: r for r in _manifest(job["output"], "val")}
    assert rows["val/v0.mp4"]["status"] == "ok" and rows["val/v0.mp4"]["label_name"] == LABELS[2]
    assert rows["val/v1.mp4"]["reason"] == "unknown_label"
    assert summary.splits["val"].stats["ok"] == 1


def test_rerun_with_another_plan_is_refused(job, dataset):
    before = _membership(job["output"])
    cfg = load_config(PreprocessConfig, dataset["config"], ["sharding.videos_per_shard=5"],
                      flags=_flags(dataset, job["output"]))
    with pytest.raises(PreprocessError, match="different plan"):
        run_preprocess(cfg)
    assert _membership(job["output"]) == before


def _parts_done(split_dir: Path) -> set[str]:
    parts = split_dir / contract.PARTS_DIR
    return {p.stem + ".tar" for p in parts.glob("*.parquet")} if parts.exists() else set()


def _temp_files(split_dir: Path) -> list[Path]:
    return [p for p in split_dir.glob("*") if contract.TEMP_MARKER in p.name]


def _quiesce(split_dir: Path, limit_s: float = 60) -> None:
    """Wait until the killed job's last task (if any) has stopped touching the folder."""
    deadline = time.monotonic() + limit_s
    last, stable = None, 0
    while time.monotonic() < deadline and stable < 4:
        state = sorted((p.name, p.stat().st_size) for p in split_dir.rglob("*") if p.is_file())
        stable = stable + 1 if state == last else 0
        last = state
        time.sleep(0.5)


def _cli(data: dict, output: Path, ray_address: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "jobs.preprocess", "--config", str(data["config"]),
            "--annotations", str(data["csv"]), "--videos", str(data["videos"]),
            "--output", str(output), "--workers", "1"]
    env = {**os.environ, "RAY_ADDRESS": ray_address, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_resume_after_sigkill_matches_an_uninterrupted_run(job, dataset, tmp_path, ray_local):
    import ray

    address = ray.get_runtime_context().gcs_address
    output = tmp_path / "resumed"
    split_dir = output / "train"
    proc = _cli(dataset, output, address)
    try:
        deadline = time.monotonic() + 120
        # kill while a later shard is being written, so its temporary file is left behind
        while not (len(_parts_done(split_dir)) >= 2 and _temp_files(split_dir)):
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no shard completed in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    _quiesce(split_dir)
    done = _parts_done(split_dir)
    plan = sorted(_membership(job["output"]))
    assert 2 <= len(done) < len(plan), "the kill must leave work undone"
    # The killed task's own temp file is usually removed as Ray tears its worker down; a worker
    # or node that dies outright (SIGKILL, OOM) leaves one behind, as planted here.
    undone = sorted(set(plan) - done)
    stale = split_dir / f"{undone[-1]}{contract.TEMP_MARKER}deadbeef0000"
    stale.write_bytes(b"partial tar from a killed writer")
    before = {name: ((split_dir / name).stat().st_ino, (split_dir / name).stat().st_mtime_ns)
              for name in done}

    rerun = _cli(dataset, output, address)
    log, _ = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, log[-3000:]
    for name in done:
        assert f"train/{name} complete, skipping" in log
        st = (split_dir / name).stat()
        assert (st.st_ino, st.st_mtime_ns) == before[name], f"{name} was rewritten"
    assert "stale temp files" in log and not stale.exists()
    assert not [p for p in split_dir.iterdir() if contract.TEMP_MARKER in p.name]
    # exactly the membership (and bytes) of the uninterrupted run
    assert _membership(output) == _membership(job["output"])
    for name in plan:
        assert (split_dir / name).read_bytes() == (job["output"] / "train" / name).read_bytes()
    cols = ("key", "status", "reason", "shard", "label", "label_name", "source")
    resumed = sorted(tuple(r[c] for c in cols) for r in _manifest(output))
    reference = sorted(tuple(r[c] for c in cols) for r in _manifest(job["output"]))
    assert resumed == reference


def test_no_pickled_members(job):
    for shard in list_shards(str(job["output"]), "train"):
        with tarfile.open(shard) as tar:
            suffixes = {n.split(".", 1)[1] for n in tar.getnames()}
        assert suffixes == {contract.FRAMES, contract.META, contract.LABEL}


def test_ssv1_frame_folders_keep_dataset_class_order(ray_local, tmp_path):
    """SSv1 ships folders of 12 fps JPEG frames; they are read as image sequences."""
    videos = tmp_path / "ssv1" / "20bn-something-something-v1"
    for vid, count in (("101", 14), ("102", 9)):
        (videos / vid).mkdir(parents=True)
        V.ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=96x64:r=12:d={count / 12}",
                 "-start_number", "1", str(videos / vid / "%05d.jpg"))
    ann = tmp_path / "ann"
    ann.mkdir()
    # the dataset's own order, deliberately not alphabetical
    (ann / "something-something-v1-labels.csv").write_text("Pushing something\nPulling something\n")
    (ann / "something-something-v1-train.csv").write_text(
        "101;Pulling something\n102;Pushing something\n103;Pushing something\n")
    cfg = load_config(PreprocessConfig, None, flags={
        "dataset": "ssv1-mini", "format": "ssv1", "annotations": [str(ann)],
        "videos": str(tmp_path / "ssv1"), "output": str(tmp_path / "out"),
        "media": {"fps_cap": None, "short_side": 64, "min_frames": 4, "sequence_fps": 12},
        "sharding": {"videos_per_shard": 8}})
    summary = run_preprocess(cfg)
    assert ClassMap.load(tmp_path / "out" / contract.CLASSES).names == (
        "Pushing something", "Pulling something")
    samples = {s["__key__"]: s for s in open_shards(list_shards(str(tmp_path / "out"), "train"))}
    assert sorted(samples) == ["101", "102"]
    for key, (count, label) in {"101": (14, 1), "102": (9, 0)}.items():
        meta = sample_meta(samples[key])
        assert (meta["num_frames"], meta["fps"], meta["label"]) == (count, 12.0, label)
        assert decode_frames(samples[key][contract.FRAMES]).shape == (count, 64, 96, 3)
    rows = {r["video_id"]: r for r in _manifest(tmp_path / "out")}
    assert rows["103"]["reason"] == "missing_file"
    assert summary.splits["train"].stats["ok"] == 2


def test_write_shard_without_ray_isolates_bad_inputs(tmp_path):
    """The task body on its own: one good clip, a missing file, an empty frame folder."""
    from pipelines.media.decode import DecodeOptions
    from pipelines.preprocess.plan import PlannedSample, ShardSpec
    from pipelines.preprocess.worker import ShardTask, write_shard

    videos = tmp_path / "videos"
    videos.mkdir()
    V.clip(videos / "good.mp4")
    (videos / "empty-folder").mkdir()
    samples = (
        PlannedSample("good", "good", "good.mp4", 0, "a", None, None),
        PlannedSample("gone", "gone", "gone.mp4", 1, "b", None, None),
        PlannedSample("empty", "empty", "empty-folder", 1, "b", None, None, frames_dir=True),
    )
    task = ShardTask(ShardSpec(0, contract.shard_name(0), samples), "train", "unit",
                     str(videos), str(tmp_path / "out"),
                     DecodeOptions(short_side=64, min_frames=4))
    report = write_shard(task)
    assert (report.ok, report.rejected) == (1, 2)
    assert report.rejected_by_reason == {"missing_file": 1, "fetch_failed": 1}
    part = pq.read_table(tmp_path / "out" / "train" / contract.part_name(report.shard))
    assert part.column("key").to_pylist() == ["good", "gone", "empty"]
    assert part.column("shard").to_pylist() == [report.shard, "", ""]
    assert [s["__key__"] for s in open_shards(str(tmp_path / "out" / "train" / report.shard))] \
        == ["good"]


def test_cli_refuses_bad_configuration(tmp_path, capsys):
    from jobs.preprocess import main

    assert main(["--format", "csv", "--videos", str(tmp_path)]) == 2
    assert "--annotations" in capsys.readouterr().err
    args = ["--format", "csv", "--annotations", "a.csv", "--videos", str(tmp_path),
            "--output", str(tmp_path / "o")]
    assert main(args + ["media.fps_kap=8"]) == 2
    assert "fps_kap" in capsys.readouterr().err
    assert main(args + ["media.short_side=255"]) == 2
    assert "short_side" in capsys.readouterr().err
