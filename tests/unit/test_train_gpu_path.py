"""The GPU path's details that a CPU can still check: exact gradient-accumulation boundaries,
precision choice, weight-decay groups and the export check's like-with-like comparison."""
from __future__ import annotations

import pytest
import torch

from pipelines.config import load_config
from pipelines.train.config import TrainConfig
from pipelines.train.engine import Device, deepspeed_config, make_engine, param_groups, pick_device
from pipelines.train.loop import micro_step, steps_per_epoch


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):  # (N, T, 3, H, W) -> (N, 3)
        n, t = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1))).mean((2, 3))
        return self.fc(y.view(n, t, -1).mean(1))


def test_accumulation_of_4_steps_after_micro_batches_4_and_8_and_drops_9_and_10():
    cfg = load_config(TrainConfig, None, ["optim.grad_accum=4", "data.batch_size=2",
                                          "scaling.num_workers=0", "deepspeed.zero_stage=1",
                                          "optim.grad_clip=null"])
    engine = make_engine(cfg, _Tiny(), 0.1, Device(torch.device("cpu"), torch.float32))
    stepped, counted = [], []
    for micro in range(10):
        clips = torch.randint(0, 255, (2, 2, 3, 8, 8), dtype=torch.uint8)
        _, _, did = micro_step(engine, clips, torch.tensor([micro % 3, 1]), Device(
            torch.device("cpu"), torch.float32))
        stepped.append(did)
        counted.append(engine.global_steps)
    assert [i + 1 for i, did in enumerate(stepped) if did] == [4, 8]
    assert counted[3] == 1 and counted[7] == 2 and counted[9] == 2  # DeepSpeed agrees
    # an epoch of 10 micro-batches' videos runs 2 whole steps: micro-batches 9-10 are not read
    # (their videos are counted in train/videos_dropped)
    assert steps_per_epoch(cfg, videos := 10 * 2, 1) == 2 and videos - 2 * 4 * 2 == 4


def test_precision_choice_on_cpu_and_the_fp16_loss_scaling_config():
    assert pick_device(TrainConfig()).dtype == torch.float32
    for precision in ("bf16", "fp16"):
        with pytest.raises(ValueError, match="needs a GPU"):
            pick_device(load_config(TrainConfig, None, [f"deepspeed.precision={precision}"]))
    fp16 = deepspeed_config(TrainConfig(), Device(torch.device("cuda"), torch.float16))
    assert fp16["fp16"]["enabled"] and fp16["fp16"]["loss_scale"] == 0  # dynamic scaling
    bf16 = deepspeed_config(TrainConfig(), Device(torch.device("cuda"), torch.bfloat16))
    assert bf16["bf16"] == {"enabled": True} and "fp16" not in bf16


def test_weight_decay_groups_follow_the_config():
    model = _Tiny()
    paper = param_groups(model, 0.1, 1.0, 5e-4, decay_norm_and_bias=True)
    assert {g["weight_decay"] for g in paper} == {5e-4}
    split = param_groups(model, 0.1, 10.0, 5e-4, decay_norm_and_bias=False)
    exempt = {id(p) for g in split if g["weight_decay"] == 0.0 for p in g["params"]}
    assert exempt == {id(model.conv.bias), id(model.bn.weight), id(model.bn.bias),
                      id(model.fc.bias)}
    assert {g["lr"] for g in split} == {0.1, 1.0}  # the head's multiplier stays
    assert sum(len(g["params"]) for g in split) == len(list(model.parameters()))
