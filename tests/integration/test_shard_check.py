"""Shards that cannot be read are refused on the driver, in one line that names them.

A zero-byte or truncated shard given to ``jobs.evaluate`` or ``jobs.train``, and shards whose
decoder does not import (H.264 shards without PyAV), end with exit 2 before any Ray worker
starts. The dataset is a copy of the session's synthetic shards (and the model the session's
tiny TSI); the H.264 one is preprocessed from two clips on the session's Ray instance.
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

import videos as V
from pipelines.shards.check import ShardProblem, check_shards

pytestmark = pytest.mark.timeout(600)  # the session fixtures (a tiny training) may build here


@pytest.fixture()
def dataset(synthetic_shards, tmp_path) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(synthetic_shards, copy)
    return copy


def _first_shard(root: Path, split: str) -> Path:
    return sorted((root / split).glob("shard-*.tar"))[0]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_shipped_shards_pass(dataset):
    check_shards(str(dataset), "train", "val")


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "cut-at-a-block"])
def test_evaluate_names_a_broken_shard_in_one_line_exit_2(trained, dataset, damage, tmp_path,
                                                         capsys):
    from jobs.evaluate import main

    shard = _first_shard(dataset, "val")
    data = shard.read_bytes()
    shard.write_bytes({"zero-byte": b"", "truncated": data[: len(data) // 2 + 7],
                       "cut-at-a-block": data[: (len(data) // 2) // 512 * 512]}[damage])
    code = main(["--model", str(trained["tsi"].export_path), "--data", str(dataset),
                 "--split", "val", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    line = _one_error_line(capsys)
    assert code == 2 and str(shard) in line and "RayTaskError" not in line, line


def test_train_names_a_truncated_shard_before_any_worker(dataset, tmp_path, capsys):
    from jobs.train import main

    shard = _first_shard(dataset, "train")
    shard.write_bytes(shard.read_bytes()[:3000])
    code = main(["--data", str(dataset), "--storage", str(tmp_path / "runs"),
                 "tracking.backend=none", "data.eval_split=val"])
    line = _one_error_line(capsys)
    assert code == 2 and str(shard) in line, line


@pytest.fixture(scope="module")
def h264_shards(ray_local, tmp_path_factory) -> Path:
    from pipelines.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    root = tmp_path_factory.mktemp("h264")
    (root / "videos").mkdir()
    rows = []
    for i, split in enumerate(("train", "val")):
        V.clip(root / "videos" / f"c{i}.mp4", seconds=1.0)
        rows.append((f"c{i}.mp4", "x", split))
    with open(root / "a.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "split"), *rows])
    cfg = load_config(PreprocessConfig, flags={
        "dataset": "h", "format": "csv", "annotations": [str(root / "a.csv")],
        "videos": str(root / "videos"), "output": str(root / "shards"),
        "media": {"mode": "h264", "short_side": 32, "min_frames": 4}})
    assert run_preprocess(cfg).stored == 2
    return root / "shards"


def test_h264_shards_without_their_decoder_fail_on_the_driver(h264_shards, tmp_path, capsys,
                                                              monkeypatch):
    from jobs.train import main

    check_shards(str(h264_shards), "train", "val")  # with PyAV installed they are readable
    monkeypatch.setitem(sys.modules, "av", None)  # as on a machine without PyAV
    with pytest.raises(ShardProblem, match="PyAV"):
        check_shards(str(h264_shards), "train")
    code = main(["--data", str(h264_shards), "--storage", str(tmp_path / "runs"),
                 "tracking.backend=none", "data.eval_split=val"])
    line = _one_error_line(capsys)
    assert code == 2 and "pip install av" in line and "h264" in line, line
