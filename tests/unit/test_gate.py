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


def test_without_a_champion_an_explicit_floor_decides():
    candidate = _predictions([i % 2 == 0 for i in range(40)])
    assert decide(candidate, None, GateConfig(absolute_floor=0.5)).passed
    refused = decide(candidate, None, GateConfig(absolute_floor=0.6))
    assert not refused.passed and "below the floor" in refused.reason


def _constant(label_counts: dict[int, int], predicted: int, classes: int = 4) -> Predictions:
    labels = np.array([c for c, n in label_counts.items() for _ in range(n)])
    probs = np.full((len(labels), classes), 0.1, np.float32)
    probs[:, predicted] = 0.7
    return Predictions(tuple(f"v{i:03d}" for i in range(len(labels))), labels, probs)


def test_degenerate_evidence_is_refused_with_its_reason():
    # one video
    one = decide(_predictions([True]), None, GateConfig())
    assert not one.passed and "1 evaluation videos, at least 20 needed" in one.reason
    # 3 wins, 0 losses out of 100: the bootstrap bound may sit at 0, the sign test says p 0.125
    champion = _predictions([i % 2 == 0 for i in range(100)])
    lucky = _predictions([i % 2 == 0 or i in (1, 3, 5) for i in range(100)])
    small = decide(lucky, champion, GateConfig(min_gain=0.0, min_lower_bound=-1.0))
    assert not small.passed and (small.wins, small.losses) == (3, 0)
    assert "p 0.125 > alpha 0.05" in small.reason
    # no champion: always the most frequent class (60% of the split) is not a first champion
    majority = decide(_constant({0: 60, 1: 20, 2: 10, 3: 10}, predicted=0), None, GateConfig())
    assert not majority.passed and majority.candidate_top1 == pytest.approx(0.6)
    assert "majority-class rate 0.6000" in majority.reason and majority.floor == pytest.approx(0.7)
    # NaN outputs are not class 0
    nan = _predictions([True] * 40)
    nan.probs[5] = np.nan
    refused = decide(nan, None, GateConfig())
    assert not refused.passed and "1 of 40 videos have non-finite" in refused.reason
    inf = _predictions([True] * 40)
    inf.probs[0, 0] = np.inf
    against_champion = decide(inf, champion_of(inf), GateConfig())
    assert "non-finite" in against_champion.reason
    assert against_champion.summary().startswith("FAIL: not compared")  # no p-value to print


def champion_of(pred: Predictions) -> Predictions:
    return _predictions([i % 2 == 0 for i in range(len(pred))])


def test_a_top1_gain_that_costs_a_class_or_the_mean_class_accuracy_fails():
    # 4 classes, label i % 4: the champion is right on every class-3 video and half the rest;
    # the candidate is right on all of classes 0-2 and on no class-3 video
    n = 200
    champ = _predictions([i % 4 == 3 or i % 8 < 4 for i in range(n)])
    cand = _predictions([i % 4 != 3 for i in range(n)])
    decision = decide(cand, champ, GateConfig(min_gain=0.0, resamples=2000))
    assert decision.gain > 0 and not decision.passed
    assert "class 3 drops 1.0000" in decision.reason
    # imbalanced (160 of class 0, 40 of class 1): top-1 0.60 -> 0.85, mean-class 0.75 -> 0.625
    labels = np.array([0] * 160 + [1] * 40)

    def scored(correct):
        probs = np.full((200, 4), 0.1, np.float32)
        probs[np.arange(200), np.where(correct, labels, 3)] = 0.7
        return Predictions(tuple(f"v{i:03d}" for i in range(200)), labels, probs)

    champ_ok = np.r_[np.arange(160) < 80, np.ones(40, bool)]
    cand_ok = np.r_[np.ones(160, bool), np.arange(40) < 10]
    skewed = decide(scored(cand_ok), scored(champ_ok),
                    GateConfig(min_gain=0.0, max_class_drop=1.0, resamples=2000))
    assert skewed.gain == pytest.approx(0.25) and not skewed.passed
    assert "mean-class accuracy gain -0.1250" in skewed.reason


def test_a_real_improvement_on_a_few_hundred_videos_passes():
    rng = np.random.default_rng(3)
    n = 300
    champ_ok = rng.random(n) < 0.60
    cand_ok = champ_ok | (rng.random(n) < 0.25)  # fixes a quarter of the champion's errors
    cand_ok &= ~(rng.random(n) < 0.03)  # and breaks a few of its hits
    decision = decide(_predictions(list(cand_ok)), _predictions(list(champ_ok)),
                      GateConfig(min_gain=0.01, resamples=2000))
    assert decision.passed, decision.reason
    assert decision.wins > 3 * decision.losses and decision.p_value < 1e-6
    first = decide(_predictions(list(cand_ok)), None, GateConfig())
    assert first.passed and first.floor == pytest.approx(0.35), first.reason


def test_exact_sign_test_values():
    from pipelines.ops.gate import binomial_tail

    assert binomial_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_tail(0, 0, 0.5) == 1.0
    assert binomial_tail(8, 10, 0.5) == pytest.approx(56 / 1024)


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
    with pytest.raises(ConfigError):
        GateConfig(alpha=0.7)


def test_shipped_operations_configs_resolve():
    from pathlib import Path

    from pipelines.config import load_config
    from pipelines.ops.evaluate import EvaluateConfig
    from pipelines.ops.nightly import NightlyConfig
    from pipelines.ops.promote import PromoteConfig

    root = Path(__file__).resolve().parents[2] / "jobs/configs/ops"
    promote = load_config(PromoteConfig, root / "promote_kinetics400.yaml")
    assert promote.gate.min_gain == 0.01 and promote.eval.parts == 16
    nightly = load_config(NightlyConfig, root / "nightly_kinetics400.yaml", ["tolerance=0.02"])
    assert nightly.tolerance == 0.02 and nightly.gate.absolute_floor == 0.70
    assert load_config(EvaluateConfig, root / "evaluate_kinetics400.yaml").eval.protocol == "10x3"
