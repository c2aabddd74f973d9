"""The promotion gate on hand-made per-video results: what it passes, what it refuses, and why."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import ConfigError
from pipelines.evaluation.metrics import Predictions
from pipelines.ops.gate import GateConfig, decide, paired_bootstrap, paired_correctness


def _predictions(correct: list[bool], *, classes: int = 4, keys: list[str] | None = None
                 ) -> Predictions:
    """Videos labelled i % classes, predicted right where ``correct`` says so."""
    n = len(correct)
    labels = np.arange(n) % classes
    probs = np.full((n, classes), 0.1, np.float32)
    for i, ok in enumerate(correct):
        probs[i, labels[i] if ok else (labels[i] + 1) % classes] = 0.7
    return Predictions(tuple(keys or [f"v{i:03d}" for i in range(n)]), labels, probs)


def test_bootstrap_of_a_constant_difference_has_no_spread():
    one = np.ones(10, np.int8)
    zero = np.zeros(10, np.int8)
    assert paired_bootstrap(one, zero, resamples=200, seed=0, confidence=0.95) == (1.0, 1.0, 1.0)
    assert paired_bootstrap(one, one, resamples=200, seed=0, confidence=0.95) == (0.0, 0.0, 0.0)


def test_bootstrap_bounds_bracket_the_mean_and_are_reproducible():
    rng = np.random.default_rng(1)
    a = (rng.random(200) < 0.7).astype(np.int8)
    b = (rng.random(200) < 0.6).astype(np.int8)
    first = paired_bootstrap(a, b, resamples=2000, seed=7, confidence=0.95)
    assert first == paired_bootstrap(a, b, resamples=2000, seed=7, confidence=0.95)
    mean, lower, upper = first
    assert mean == pytest.approx((a.astype(float) - b).mean())
    assert lower < mean < upper
    # the normal approximation of a paired mean: lower ≈ mean - 1.645 * sd / sqrt(n)
    sd = (a.astype(float) - b).std(ddof=1)
    assert lower == pytest.approx(mean - 1.645 * sd / np.sqrt(200), abs=0.02)


def test_a_clearly_better_candidate_passes():
    champion = _predictions([i % 2 == 0 for i in range(120)])  # 50%
    candidate = _predictions([i % 2 == 0 or i % 3 == 0 for i in range(120)])  # 67%, a superset
    decision = decide(candidate, champion, GateConfig(min_gain=0.05, resamples=2000))
    assert decision.passed, decision.reason
    assert decision.gain == pytest.approx(20 / 120) and decision.lower_bound > 0.1
    tags = decision.as_tags()
    assert tags["tsi.gate.passed"] == "True" and tags["tsi.gate.config.min_gain"] == "0.05"


def test_identical_and_nearly_identical_models_do_not_pass():
    base = [i % 2 == 0 for i in range(120)]
    same = decide(_predictions(base), _predictions(base), GateConfig(min_gain=0.0))
    assert not same.passed and "lower bound +0.0000" in same.reason
    nudged = list(base)
    nudged[1] = nudged[3] = True  # right on two more videos out of 120
    close = decide(_predictions(nudged), _predictions(base), GateConfig(min_gain=0.0))
    assert close.gain == pytest.approx(2 / 120) and not close.passed
    assert close.lower_bound <= 0


def test_a_worse_candidate_fails_on_both_rules():
    champion = _predictions([i % 4 != 0 for i in range(80)])
    candidate = _predictions([i % 2 == 0 for i in range(80)])
    decision = decide(candidate, champion, GateConfig())
    assert not decision.passed
    assert "min_gain" in decision.reason and "lower bound" in decision.reason


def test_without_a_champion_the_floor_decides():
    candidate = _predictions([i % 2 == 0 for i in range(10)])
    assert decide(candidate, None, GateConfig(absolute_floor=0.5)).passed
    refused = decide(candidate, None, GateConfig(absolute_floor=0.6))
    assert not refused.passed and "below the floor" in refused.reason


def test_evaluations_of_different_videos_are_not_compared():
    a = _predictions([True] * 5)
    b = _predictions([True] * 5, keys=[f"w{i}" for i in range(5)])
    with pytest.raises(ValueError, match="different videos"):
        paired_correctness(a, b)
    relabelled = Predictions(a.keys, (a.labels + 1) % 4, a.probs)
    with pytest.raises(ValueError, match="differently"):
        paired_correctness(a, relabelled)


def test_bad_gate_settings_are_config_errors():
    with pytest.raises(ConfigError):
        GateConfig(confidence=1.0)
    with pytest.raises(ConfigError):
        GateConfig(resamples=10)


def test_shipped_operations_configs_resolve():
    from pathlib import Path

    from pipelines.config import load_config
    from pipelines.ops.evaluate import EvaluateConfig
    from pipelines.ops.nightly import NightlyConfig
    from pipelines.ops.promote import PromoteConfig

    root = Path(__file__).resolve().parents[1] / "jobs/configs/ops"
    promote = load_config(PromoteConfig, root / "promote_kinetics400.yaml")
    assert promote.gate.min_gain == 0.01 and promote.eval.parts == 16
    nightly = load_config(NightlyConfig, root / "nightly_kinetics400.yaml", ["tolerance=0.02"])
    assert nightly.tolerance == 0.02 and nightly.gate.absolute_floor == 0.70
    assert load_config(EvaluateConfig, root / "evaluate_kinetics400.yaml").eval.protocol == "10x3"
