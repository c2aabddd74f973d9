"""Ray Train + DeepSpeed training end to end, on the session's tiny TSI and TSN.

The ``trained`` fixture (conftest.py) runs two real 2-worker fits on the local Ray instance. A
worker that raises mid-run (``TSI_TEST_FAIL_AT_STEP``, ``conftest.injected_failure``) and Ray
Train's restart from the latest checkpoint are tested on S3 run storage
(test_train_object_store.py); unit tests of the loop run it in-process
(``scaling.num_workers=0``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_train_overrides
from pipelines.config import load_config
from pipelines.train.config import OptimConfig, TrainConfig
from pipelines.train.schedule import lr_at, scaled_lr
from pipelines.train.trainer import ResumeRefused, run_training
from tsi_model import build_from_checkpoint, normalize_clip
from tsi_model.weights import read_state_dict

pytestmark = pytest.mark.timeout(600)


def _mlflow_run(result):
    from mlflow import MlflowClient

    from pipelines.tracking.runs import find_run

    client = MlflowClient(f"sqlite:///{Path(result.run_dir).parent / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tsi-tiny")
    return client, find_run(client, experiment.experiment_id, result.run_name)


def _epochs(result) -> list[dict]:
    """Per-epoch records: the jsonl log, or the MLflow run's metric history by step (TSI is
    tracked in MLflow, where the counters are run tags, not metrics: see the test below)."""
    path = Path(result.run_dir, "metrics.jsonl")
    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines()]
    client, run = _mlflow_run(result)
    by_step: dict[int, dict] = {}
    for key in ("train_loss", "data_wait_share", "clips_per_s"):
        for point in client.get_metric_history(run.info.run_id, key):
            by_step.setdefault(point.step, {"step": point.step})[key] = point.value
    return [by_step[s] for s in sorted(by_step)]


def test_two_worker_fit_learns_and_reports_every_epoch_once(trained):
    for name in ("tsi", "tsn"):
        epochs = _epochs(trained[name])
        assert [e["step"] for e in epochs] == [6, 12, 18], name
        assert epochs[-1]["train_loss"] < epochs[0]["train_loss"], (name, epochs)
        assert 0 <= epochs[-1]["data_wait_share"] <= 1 and epochs[-1]["clips_per_s"] > 0
    tsn = _epochs(trained["tsn"])  # the jsonl log keeps every epoch's counters
    assert [e["epoch"] for e in tsn] == [1, 2, 3]
    assert all(e["val_videos"] == 24 for e in tsn)  # every eval video exactly once
    _, run = _mlflow_run(trained["tsi"])  # MLflow: counters are run tags, charts are measures
    tags = run.data.tags
    assert (tags["tsi.epoch"], tags["tsi.global_step"], tags["tsi.val_videos"]) == ("3", "18",
                                                                                    "24")
    assert not {"epoch", "global_step", "val_videos", "train/videos_seen"} & set(run.data.metrics)
    assert {"train_loss", "val_top1", "lr"} <= set(run.data.metrics)


def test_export_loads_with_tsi_model_alone_and_reproduces_the_engine(trained):
    for name in ("tsi", "tsn"):
        result = trained[name]
        model = build_from_checkpoint(result.export_path).eval()
        _, meta = read_state_dict(result.export_path)
        assert meta["model"] == f"{name}_r50" and meta["options"]["layers"] == (1, 1, 1, 1)
        assert meta["world_size"] == 2 and meta["run_name"] == f"tiny-{name}"
        assert len(meta["classes"]) == 8 and meta["clip"]["frames"] == 4
        assert set(meta["dataset_hashes"]) >= {"train", "eval", "classes"}
        assert meta["config_hash"] and meta["code_version"].startswith("0.1.0+")
        assert "optimizer" not in json.dumps(list(meta)) and meta["global_step"] == 18
        saved = torch.load(Path(result.checkpoint_path, "export_probe.pt"), weights_only=True)
        with torch.no_grad():
            logits = model(normalize_clip(saved["clips"]))
        assert torch.allclose(logits, saved["logits"], atol=1e-5), name


def test_resubmitting_a_run_resumes_it_and_another_world_size_is_refused(trained, capsys):
    storage, shards = trained["storage"], trained["shards"]
    more = load_config(TrainConfig, None, tiny_train_overrides(shards, storage, **{
        "model.name": "tsn_r50", "run.name": "tiny-tsn", "deepspeed.zero_stage": 1,
        "scaling.num_workers": 4}))
    with pytest.raises(ResumeRefused, match="trained with 2 workers"):
        run_training(more)


def test_in_process_run_resumes_by_name_with_its_counters(synthetic_shards, tmp_path, capsys):
    overrides = tiny_train_overrides(synthetic_shards, tmp_path, **{
        "scaling.num_workers": 0, "run.name": "local", "epochs": 1, "batches_per_epoch": 2,
        "model.name": "tsm_r50"})
    first = run_training(load_config(TrainConfig, None, overrides))
    assert first.resumed_from_step is None and first.metrics["global_step"] == 2
    with pytest.raises(ResumeRefused, match=r"epochs: 1 -> 2"):  # another recipe: refused
        run_training(load_config(TrainConfig, None, overrides + ["epochs=2"]))
    overrides += ["epochs=2", "run.resume_with_changes=true"]
    again = run_training(load_config(TrainConfig, None, overrides))
    out = capsys.readouterr().out
    assert "with config changes: {'epochs': (1, 2)}" in out and "resuming from step 2" in out
    assert again.resumed_from_step == 2 and again.metrics["global_step"] == 4
    assert [e["epoch"] for e in _epochs(again)] == [1, 2]
    done = run_training(load_config(TrainConfig, None, overrides))  # nothing left to train
    assert "is complete" in capsys.readouterr().out and done.metrics["global_step"] == 4
    assert [e["epoch"] for e in _epochs(done)] == [1, 2]


def test_schedule_scaling_warmup_step_and_cosine():
    optim = OptimConfig(lr=0.01, reference_batch=64, milestones=(30, 40, 45), warmup_epochs=1)
    assert scaled_lr(optim, 8) == pytest.approx(0.00125)  # 2 CPU workers x 4 clips
    assert scaled_lr(optim, 64) == pytest.approx(0.01)
    base = 0.01
    assert lr_at(optim, 0, 10, 50, base) == pytest.approx(0.001)  # warm-up: 1/10 of the epoch
    assert lr_at(optim, 9, 10, 50, base) == pytest.approx(0.01)
    assert lr_at(optim, 299, 10, 50, base) == pytest.approx(0.01)  # epoch 29.9
    assert lr_at(optim, 300, 10, 50, base) == pytest.approx(0.001)  # epoch 30
    assert lr_at(optim, 450, 10, 50, base) == pytest.approx(0.00001)  # epoch 45
    cosine = OptimConfig(lr=0.1, schedule="cosine")
    assert lr_at(cosine, 0, 10, 4, 0.1) == pytest.approx(0.1)
    assert lr_at(cosine, 20, 10, 4, 0.1) == pytest.approx(0.05)  # half way
    assert lr_at(cosine, 40, 10, 4, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(lr_at(OptimConfig(schedule="constant"), 99, 10, 4, 0.3), 0.3)


def test_a_failed_export_check_keeps_the_export_records_why_and_exits_3(synthetic_shards,
                                                                         tmp_path, capsys):
    """The engine's logits are tampered with in the last checkpoint's probe: re-exporting that
    (complete) run must keep model.pt, write the measured difference, tag the run, exit 3."""
    from jobs import train

    overrides = tiny_train_overrides(synthetic_shards, tmp_path, **{
        "scaling.num_workers": 0, "run.name": "checked", "epochs": 1, "batches_per_epoch": 2,
        "model.name": "tsn_r50", "tracking.backend": "stdout"})
    assert train.main(overrides) == 0
    run = tmp_path / "checked"
    (probe_path,) = run.glob("checkpoint_local_*/export_probe.pt")
    probe = torch.load(probe_path)
    probe["logits"] = probe["logits"] + 1.0
    torch.save(probe, probe_path)
    (run / "model.pt").unlink()
    capsys.readouterr()
    assert train.main(overrides) == 3
    captured = capsys.readouterr()
    assert "does not reproduce the trained engine" in captured.err
    assert "tsi.failed" in captured.out and "tsi.export " not in captured.out
    assert (run / "model.pt").is_file()  # kept for inspection
    check = json.loads((run / "export_check_failed.json").read_text())
    assert check["max_abs_diff"] == pytest.approx(1.0, abs=1e-4) and check["dtype"] == "float32"


def test_the_scaled_warmup_applies_only_past_the_reference_batch():
    from pipelines.train.schedule import warmup_epochs

    optim = OptimConfig(lr=0.01, reference_batch=64, scaled_warmup_epochs=5)
    assert warmup_epochs(optim, scaled_lr(optim, 64)) == 0.0  # the paper's 8 GPUs x 8
    assert warmup_epochs(optim, scaled_lr(optim, 512)) == 5.0  # 64 GPUs
    assert lr_at(optim, 0, 100, 50, 0.08) == pytest.approx(0.08 / 500)
    assert lr_at(optim, 0, 100, 50, 0.01) == pytest.approx(0.01)
    cfg = load_config(TrainConfig,
                      Path(__file__).parents[2] / "jobs/configs/train/kinetics400_tsi_8f.yaml")
    assert cfg.optim.scaled_warmup_epochs == 5 and cfg.data.eval_loader_workers == 8
