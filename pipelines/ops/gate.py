"""The promotion gate: does a candidate beat the champion by more than noise, on the same videos?

Two rules, both configurable and both required:

- the top-1 gain (candidate − champion) is at least ``min_gain``;
- a **paired bootstrap** over the evaluation videos (resample videos with replacement, the same
  draw for both models, ``resamples`` times, seeded) gives a lower confidence bound of the
  accuracy difference above ``min_lower_bound``. Pairing matters: two models right and wrong on
  the same videos differ by much less noise than two independent accuracies suggest.

With no champion yet, the candidate must reach ``absolute_floor`` top-1. The decision is a plain
value (:class:`GateDecision`) that the caller records as tags and prints; nothing here touches
MLflow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipelines.config import ConfigError
from pipelines.evaluation.metrics import Predictions


@dataclass(frozen=True)
class GateConfig:
    """``min_gain`` and ``min_lower_bound`` are accuracy differences (0.01 = one point)."""

    min_gain: float = 0.005
    min_lower_bound: float = 0.0
    confidence: float = 0.95  # one-sided: the bound is the (1 - confidence) quantile
    resamples: int = 10_000
    seed: int = 0
    absolute_floor: float = 0.0  # the first champion's minimum top-1

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1 or self.resamples < 100:
            raise ConfigError("gate: confidence must be in [0.5, 1) and resamples >= 100")
        if not 0 <= self.absolute_floor <= 1:
            raise ConfigError("gate: absolute_floor must be in [0, 1]")


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    videos: int
    candidate_top1: float
    champion_top1: float | None
    gain: float | None
    lower_bound: float | None
    upper_bound: float | None
    config: GateConfig

    def as_tags(self, prefix: str = "tsi.gate.") -> dict[str, str]:
        values = {k: v for k, v in asdict(self).items() if k != "config"}
        values |= {f"config.{k}": v for k, v in asdict(self.config).items()}
        return {prefix + k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v))
                for k, v in values.items()}


def correct_by_key(pred: Predictions) -> dict[str, bool]:
    top1 = pred.probs.argmax(axis=1)
    return {key: bool(top1[i] == pred.labels[i]) for i, key in enumerate(pred.keys)}


def paired_correctness(candidate: Predictions, champion: Predictions
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Both models' per-video correctness on the same videos, in one key order.

    Raises ValueError when the two evaluations did not score exactly the same videos with the
    same labels: their accuracies would not be a paired comparison.
    """
    a, b = correct_by_key(candidate), correct_by_key(champion)
    if set(a) != set(b):
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        raise ValueError(f"the two evaluations scored different videos ({only_a} only in the "
                         f"candidate's, {only_b} only in the champion's)")
    labels_a = dict(zip(candidate.keys, candidate.labels.tolist()))
    labels_b = dict(zip(champion.keys, champion.labels.tolist()))
    if labels_a != labels_b:
        raise ValueError("the two evaluations label the same videos differently")
    keys = sorted(a)
    return (np.array([a[k] for k in keys], dtype=np.int8),
            np.array([b[k] for k in keys], dtype=np.int8))


def paired_bootstrap(candidate: np.ndarray, champion: np.ndarray, *, resamples: int, seed: int,
                     confidence: float, chunk: int = 256) -> tuple[float, float, float]:
    """(mean difference, lower bound, upper bound) of accuracy(candidate) − accuracy(champion).

    The bounds are the one-sided ``1 - confidence`` and ``confidence`` quantiles of the
    difference over ``resamples`` paired resamples of the videos. Resampled in chunks, so memory
    stays ``chunk × videos`` whatever the evaluation size.
    """
    diff = candidate.astype(np.float64) - champion.astype(np.float64)
    n = len(diff)
    if n == 0:
        raise ValueError("no videos to compare")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        means[start:start + count] = diff[rng.integers(0, n, size=(count, n))].mean(axis=1)
    lower, upper = np.quantile(means, [1 - confidence, confidence])
    return float(diff.mean()), float(lower), float(upper)


def decide(candidate: Predictions, champion: Predictions | None, config: GateConfig
           ) -> GateDecision:
    """The gate's decision for ``candidate`` against ``champion`` (None: no champion yet)."""
    if champion is None:
        cand = np.array(list(correct_by_key(candidate).values()), dtype=np.int8)
        top1 = float(cand.mean()) if len(cand) else 0.0
        passed = len(cand) > 0 and top1 >= config.absolute_floor
        reason = (f"no champion yet; top-1 {top1:.4f} "
                  f"{'reaches' if passed else 'is below'} the floor {config.absolute_floor:g}")
        return GateDecision(passed, reason, len(cand), top1, None, None, None, None, config)
    cand, champ = paired_correctness(candidate, champion)
    gain, lower, upper = paired_bootstrap(cand, champ, resamples=config.resamples,
                                          seed=config.seed, confidence=config.confidence)
    failures = []
    if gain < config.min_gain:
        failures.append(f"top-1 gain {gain:+.4f} < min_gain {config.min_gain:g}")
    if lower <= config.min_lower_bound:
        failures.append(f"bootstrap lower bound {lower:+.4f} (confidence {config.confidence:g}) "
                        f"<= {config.min_lower_bound:g}")
    reason = "; ".join(failures) or (f"top-1 gain {gain:+.4f} >= {config.min_gain:g} and lower "
                                     f"bound {lower:+.4f} > {config.min_lower_bound:g}")
    return GateDecision(not failures, reason, len(cand), float(cand.mean()), float(champ.mean()),
                        gain, lower, upper, config)
