"""Metrics on hand-made predictions, the exactly-once gather, dataset hashes, exported models."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.evaluation.metrics import most_confused_with
from pipelines.evaluation import (
    Predictions, classification_metrics, gather_predictions, pair_metrics,
)
from pipelines.shards import contract, manifest


def _preds(labels, probs, keys=None) -> Predictions:
    keys = keys or tuple(f"v{i}" for i in range(len(labels)))
    return Predictions(tuple(keys), np.array(labels), np.array(probs, dtype=np.float32))


def test_top1_top5_mean_class_and_confusion_by_hand():
    # 4 classes, 5 videos; class 3 has no video
    probs = [
        [0.7, 0.1, 0.1, 0.1],   # true 0, predicted 0
        [0.1, 0.2, 0.6, 0.1],   # true 1, predicted 2 (1 is second)
        [0.1, 0.6, 0.2, 0.1],   # true 1, predicted 1
        [0.4, 0.3, 0.2, 0.1],   # true 2, predicted 0 (2 is third)
        [0.1, 0.1, 0.1, 0.7],   # true 2, predicted 3 (2 ties 0 and 1 for second)
    ]
    m = classification_metrics(_preds([0, 1, 1, 2, 2], probs), 4)
    assert m.top1 == pytest.approx(2 / 5)
    assert m.per_class_accuracy == (1.0, 0.5, 0.0, None)
    assert m.mean_class_accuracy == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert m.top5 == 1.0  # only 4 classes: top-5 is every class
    assert m.confusion.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]]
    # the other class each is mistaken for: never itself, "" when none, the first of a tie
    assert most_confused_with(m.confusion, "abcd") == ["", "c", "a", ""]
    assert most_confused_with(np.array([[5, 1], [0, 3]]), ["x", "y"]) == ["y", ""]
    probs6 = np.eye(6)[[5, 5, 5]] * 0.5 + np.arange(6)[None, :] / 100  # class order 5,4,3,2,1,0
    m6 = classification_metrics(_preds([0, 1, 4], probs6), 6)
    assert m6.top1 == 0.0 and m6.top5 == pytest.approx(2 / 3)  # class 0 is sixth


def test_pair_metrics_tell_order_from_content():
    names = ("a_fwd", "a_rev", "b_fwd", "b_rev")
    pairs = [("a_fwd", "a_rev"), ("b_fwd", "b_rev")]
    # right pair every time, right order half the time: what a frame-order-blind model does
    probs = np.eye(4)[[1, 0, 3, 3]]
    got = pair_metrics(_preds([0, 0, 2, 3], probs), names, pairs)
    assert got == {"top1": 0.5, "pair_accuracy": 1.0, "within_pair": 0.5}
    with pytest.raises(ValueError, match="pair"):
        pair_metrics(_preds([0], np.eye(4)[[0]]), names, pairs[:1])


def test_gather_refuses_a_video_seen_twice_and_sorts_by_key():
    local = _preds([1, 0], np.eye(2)[[1, 0]], keys=("b", "a"))
    merged = gather_predictions(local, 2)
    assert merged.keys == ("a", "b") and merged.labels.tolist() == [0, 1]
    twice = Predictions.concat([local, local], 2)
    with pytest.raises(RuntimeError, match="more than once"):
        gather_predictions(twice, 2)


def test_dataset_hash_is_stable_across_reruns_and_sees_changes(synthetic_shards, tmp_path):
    """A second preprocessing of the same videos into another folder hashes the same."""
    from pipelines.data.classes import ClassMap
    from pipelines.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    def split_hash(root, split="val", keep=None):
        table = pq.read_table(io.BytesIO((root / split / contract.MANIFEST).read_bytes()))
        names = ClassMap.load(root / contract.CLASSES).names
        return manifest.dataset_hash(table, names, keep)

    videos = synthetic_shards.parent / "videos"
    rerun = tmp_path / "again"
    shutil.copy(synthetic_shards / contract.CLASSES, tmp_path / "classes.json")
    cfg = load_config(PreprocessConfig, "jobs/configs/preprocess/synthetic.yaml", flags={
        "annotations": [str(videos / "annotations.csv")], "videos": str(videos),
        "output": str(rerun), "split": "val", "classes": str(tmp_path / "classes.json"),
        "media": {"short_side": 32}, "sharding": {"videos_per_shard": 8}})
    run_preprocess(cfg)
    assert split_hash(rerun) == split_hash(synthetic_shards)
    assert split_hash(synthetic_shards, keep=lambda k: k != sorted(
        pq.read_table(synthetic_shards / "val" / contract.MANIFEST).column("key").to_pylist())[0]
    ) != split_hash(synthetic_shards)


def test_exported_model_is_evaluated_once_per_video_and_refuses_other_classes(trained, tmp_path):
    from pipelines.evaluation.exported import ClassMapMismatch, evaluate_export

    result = evaluate_export(trained["tsi"].export_path, str(trained["shards"]), "val")
    assert result.metrics.videos == 24 and len(set(result.predictions.keys)) == 24
    assert result.metrics.top1 == pytest.approx(trained["tsi"].metrics["val_top1"])
    other = tmp_path / "other"
    (other / "val").mkdir(parents=True)
    (other / contract.CLASSES).write_text('{"classes": ["x", "y"]}')
    with pytest.raises(ClassMapMismatch):
        evaluate_export(trained["tsi"].export_path, str(other), "val")
