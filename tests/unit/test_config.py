"""The shared config loader: layering, typing and clear errors."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.preprocess.config import PreprocessConfig


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    name: str = "a"

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError("rate must be >= 0")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False
    maybe: int | None = None


def test_layers_resolve_defaults_yaml_flags_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner: {rate: 0.5, name: yaml}\nsizes: [3]\n")
    cfg = load_config(Outer, path, ["inner.rate=2", "maybe=7"], flags={"inner": {"name": "x.yaml"}, "flag": True})
    assert cfg == Outer(inner=Inner(rate=2.0, name="x.yaml"), sizes=(3,), flag=True, maybe=7)
    assert load_config(Outer) == Outer()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inner.rte=1"], r"unknown key\(s\) \['rte'\]"),
        (["flag=maybe"], "expected true/false"),
        (["sizes=[1, x]"], r"sizes\[1\]: expected an integer"),
        (["inner.rate=-1"], "rate must be >= 0"),
        (["inner=3"], "expected a mapping"),
        (["noequals"], "key.sub=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, overrides)


def test_preprocess_config_flags_beat_yaml_and_overrides_beat_flags():
    cfg = load_config(PreprocessConfig, "jobs/configs/preprocess/ssv2.yaml",
                      ["ray.workers=5", "media.short_side=128"],
                      flags={"output": "/o", "ray": {"workers": 3}})
    assert cfg.output == "/o" and cfg.ray.workers == 5 and cfg.media.short_side == 128
    with pytest.raises(ConfigError, match="short_side"):
        load_config(PreprocessConfig, None, ["media.short_side=7"])


def test_every_shipped_config_resolves():
    from pathlib import Path

    from pipelines.config import runnable_configs
    from pipelines.demo import DemoConfig
    from pipelines.train.config import TrainConfig

    configs = runnable_configs(Path("jobs/configs/preprocess"))
    assert len(configs) >= 6
    for path in configs:
        cfg = load_config(PreprocessConfig, path)
        assert cfg.videos_per_shard() >= 1, path
    assert load_config(DemoConfig, "jobs/configs/demo.yaml").synthetic.num_pairs == 4
    smoke = load_config(DemoConfig, "jobs/configs/demo_smoke.yaml")  # CI's smoke profile
    assert smoke.require_champion and smoke.output != "runs/demo"
    load_config(TrainConfig, smoke.train_config, list(smoke.train_overrides))  # valid overrides


def test_a_partial_override_refines_the_fields_own_default():
    """``synthetic.height=32`` keeps the demo's other synthetic settings (its eval split)."""
    from pipelines.demo import DemoConfig

    cfg = load_config(DemoConfig, None, ["synthetic.height=32"])
    assert cfg.synthetic.height == 32 and cfg.synthetic.splits == ("train", "eval")
    assert cfg.synthetic.videos_per_class == DemoConfig().synthetic.videos_per_class


def test_large_datasets_get_at_least_256_shards_when_the_shard_size_is_automatic():
    from pipelines.preprocess.plan import MIN_SHARDS, MIN_VIDEOS_PER_SHARD, videos_per_shard_for

    auto = load_config(PreprocessConfig)
    by_size = auto.videos_per_shard()
    assert by_size > MIN_VIDEOS_PER_SHARD  # ~256 Kinetics clips per 768 MB shard
    videos = 240_000  # Kinetics-400 train
    per_shard = auto.videos_per_shard(videos)
    assert -(-videos // per_shard) >= MIN_SHARDS and per_shard == videos_per_shard_for(
        videos, by_size)
    small = MIN_SHARDS * MIN_VIDEOS_PER_SHARD - 1  # below the threshold: the byte target rules
    assert auto.videos_per_shard(small) == by_size
    fixed = load_config(PreprocessConfig, None, flags={"sharding": {"videos_per_shard": 1000}})
    assert fixed.videos_per_shard(videos) == 1000  # an explicit size is kept
