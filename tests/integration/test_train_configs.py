"""Every training recipe in jobs/configs/train resolves and runs one step in-process.

Only scale, data and weight paths are overridden (a tiny width, one bottleneck per stage, 32x32
clips, the session's synthetic shards, no pretrained file), so a typo or a stale key in a
paper config fails here, not on a GPU cluster.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import CONFIGS_ROOT, load_config, runnable_configs
from pipelines.train.config import TrainConfig
from pipelines.train.trainer import run_training

CONFIGS = runnable_configs(CONFIGS_ROOT / "train")  # the recipes, not their _base_/ files
SCALE_DOWN = [
    "model.width=16", "model.layers=[1,1,1,1]", "model.pretrained=null",
    "data.clip.size=32", "data.clip.resize=32", "data.clip.frames=4", "data.batch_size=2",
    "data.eval_batch_size=8", "data.loader_workers=0", "data.eval_split=val",
    "data.final_protocol=null", "epochs=1", "batches_per_epoch=1", "scaling.num_workers=0",
    "scaling.use_gpu=false", "deepspeed.precision=fp32", "tracking.backend=none",
]


def test_there_is_a_recipe_for_every_paper_setting():
    names = {p.stem for p in CONFIGS}
    assert {"kinetics400_tsi_8f", "kinetics400_tsi_16f", "ssv1_tsi_8f", "ssv1_tsi_16f",
            "ssv2_tsi_8f", "ssv2_tsi_16f", "ucf101_tsi_finetune", "hmdb51_tsi_finetune",
            "kinetics400_tsn_8f", "kinetics400_tsm_8f", "synthetic_demo"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_resolves_and_runs_one_step(path, synthetic_shards, tmp_path):
    full = load_config(TrainConfig, path)
    assert full.optim.momentum == 0.9 and full.optim.weight_decay == pytest.approx(5e-4)
    if "synthetic" not in path.stem:  # the paper's settings, complete for a GPU cluster
        assert full.scaling.use_gpu and full.model.width == 64 and full.model.pretrained
        assert full.model.layers == (3, 4, 6, 3) and full.data.clip.size == 224
        assert full.data.clip.flip == ("ssv" not in path.stem)  # no flip for left/right classes
    cfg = load_config(TrainConfig, path, SCALE_DOWN + [f"data.root={synthetic_shards}",
                                             f"run.storage_path={tmp_path}"])
    result = run_training(cfg)
    assert result.metrics["global_step"] == 1 and Path(result.export_path).exists()
