"""The promotion gate: does a candidate beat the champion by more than noise, on the same videos?

Evidence first, then rules. Before any comparison the gate refuses an evaluation that cannot carry
a decision: fewer than ``min_videos`` videos (default: ``videos_per_class`` × classes, at least
``MIN_VIDEOS``), or any non-finite output (NaN/inf scores would be ranked by ``argmax`` as if
they meant class 0). Then every rule below must hold:

- the top-1 gain (candidate − champion) is at least ``min_gain``, and the mean-class-accuracy
  gain at least ``min_mean_class_gain`` (a gain on frequent classes bought with rare ones fails);
- no class's accuracy drops by more than ``max_class_drop``;
- an **exact one-sided sign test** (McNemar's exact test) on the discordant videos — those one
  model gets right and the other wrong — rejects "no better" at level ``alpha``: 3 wins and 0
  losses (p = 0.125) is not evidence, however many concordant videos surround it;
- a **paired bootstrap** over the videos (the same resample for both models, seeded) gives a
  lower confidence bound of the top-1 difference above ``min_lower_bound``.

With no champion yet, the candidate must beat what a model that learnt nothing scores on this
split: its top-1 must be at least ``floor_margin`` above the larger of the majority-class rate
and chance (1 / classes), and the exact binomial test against that rate must reject at level
``alpha``. ``absolute_floor``, when set, replaces the computed floor (and is recorded).

The decision is a plain value (:class:`GateDecision`) that the caller records and prints; nothing
here touches MLflow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipelines.config import ConfigError
from pipelines.evaluation.metrics import Predictions


MIN_VIDEOS = 20


@dataclass(frozen=True)
class GateConfig:
    """``min_gain``, ``min_lower_bound`` and ``max_class_drop`` are accuracy differences (0.01 =
    one point); ``alpha`` is the level of the exact tests."""

    min_gain: float = 0.005
    min_lower_bound: float = 0.0
    min_mean_class_gain: float = 0.0
    max_class_drop: float = 0.10
    alpha: float = 0.05
    confidence: float = 0.95  # one-sided: the bound is the (1 - confidence) quantile
    resamples: int = 10_000
    seed: int = 0
    min_videos: int | None = None  # None: videos_per_class x classes, at least MIN_VIDEOS
    videos_per_class: int = 3
    floor_margin: float = 0.10  # first champion: this much above max(majority rate, chance)
    absolute_floor: float | None = None  # replaces the computed first-champion floor

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1 or self.resamples < 100:
            raise ConfigError("gate: confidence must be in [0.5, 1) and resamples >= 100")
        if self.absolute_floor is not None and not 0 <= self.absolute_floor <= 1:
            raise ConfigError("gate: absolute_floor must be in [0, 1]")
        if not 0 < self.alpha < 0.5 or not 0 <= self.max_class_drop <= 1:
            raise ConfigError("gate: alpha must be in (0, 0.5) and max_class_drop in [0, 1]")
        if (self.min_videos is not None and self.min_videos < 1) or self.videos_per_class < 1:
            raise ConfigError("gate: min_videos and videos_per_class must be >= 1")

    def required_videos(self, num_classes: int) -> int:
        if self.min_videos is not None:
            return self.min_videos
        return max(MIN_VIDEOS, self.videos_per_class * num_classes)


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
    candidate_mean_class: float | None = None
    champion_mean_class: float | None = None
    wins: int | None = None  # discordant videos only the candidate gets right
    losses: int | None = None  # discordant videos only the champion gets right
    p_value: float | None = None  # exact one-sided sign test (or binomial against the floor)
    worst_class_drop: float | None = None
    floor: float | None = None  # first champion: the top-1 it had to reach

    def as_dict(self) -> dict[str, object]:
        return {**{k: v for k, v in asdict(self).items() if k != "config"},
                "config": asdict(self.config)}

    def as_tags(self, prefix: str = "tsi.gate.") -> dict[str, str]:
        values = {k: v for k, v in asdict(self).items() if k != "config"}
        values |= {f"config.{k}": v for k, v in asdict(self.config).items()}
        return {prefix + k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v))
                for k, v in values.items()}

    def summary(self) -> str:
        """One line for version descriptions and logs."""
        if self.champion_top1 is None:
            return (f"{'PASS' if self.passed else 'FAIL'}: top-1 {self.candidate_top1:.4f} on "
                    f"{self.videos} videos, first champion (floor {self.floor or 0:.4f}); "
                    f"{self.reason}")
        if self.p_value is None:  # refused before comparing (too few videos, NaN outputs)
            return (f"FAIL: not compared ({self.candidate_top1:.4f} vs "
                    f"{self.champion_top1:.4f} top-1, {self.videos} videos); {self.reason}")
        return (f"{'PASS' if self.passed else 'FAIL'}: {self.gain or 0:+.4f} top-1 "
                f"({self.candidate_top1:.4f} vs {self.champion_top1:.4f}), bound "
                f"{self.lower_bound if self.lower_bound is not None else float('nan'):+.4f}, "
                f"{self.wins} wins / {self.losses} losses (p {self.p_value:.3g}), "
                f"{self.videos} videos; {self.reason}")


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """Exact P(X >= successes) for X ~ Binomial(trials, p): the one-sided p-value."""
    from math import comb

    if successes <= 0:
        return 1.0
    return float(min(1.0, sum(comb(trials, k) * p ** k * (1 - p) ** (trials - k)
                              for k in range(successes, trials + 1))))


def evidence_problems(pred: Predictions, role: str, config: GateConfig) -> list[str]:
    """Why ``pred`` cannot carry a decision at all (too few videos, non-finite outputs)."""
    problems = []
    classes = pred.probs.shape[1]
    need = config.required_videos(classes)
    if len(pred) < need:
        problems.append(f"{role}: {len(pred)} evaluation videos, at least {need} needed "
                        f"({classes} classes; gate.min_videos)")
    bad = int((~np.isfinite(pred.probs)).any(axis=1).sum()) if len(pred) else 0
    if bad:
        problems.append(f"{role}: {bad} of {len(pred)} videos have non-finite (NaN/inf) scores")
    return problems


def per_class_accuracy(pred: Predictions) -> dict[int, float]:
    top1 = pred.probs.argmax(axis=1)
    return {int(c): float(np.mean(top1[pred.labels == c] == c)) for c in np.unique(pred.labels)}


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


def _refused(reason: str, candidate: Predictions, champion: Predictions | None,
             config: GateConfig) -> GateDecision:
    return GateDecision(False, reason, len(candidate), 0.0, None if champion is None else 0.0,
                        None, None, None, config)


def _first_champion(candidate: Predictions, config: GateConfig) -> GateDecision:
    cand = np.array(list(correct_by_key(candidate).values()), dtype=np.int8)
    n, classes = len(cand), candidate.probs.shape[1]
    top1 = float(cand.mean())
    majority = float(np.bincount(candidate.labels, minlength=classes).max() / n)
    base = max(majority, 1.0 / classes)
    if config.absolute_floor is not None:
        floor, p_value = config.absolute_floor, None
        passed = top1 >= floor
        reason = (f"no champion yet; top-1 {top1:.4f} {'reaches' if passed else 'is below'} the "
                  f"floor {floor:g} (gate.absolute_floor, set by configuration)")
    else:
        floor = min(1.0, base + config.floor_margin)
        p_value = binomial_tail(int(cand.sum()), n, base)
        failures = []
        if top1 < floor:
            failures.append(f"top-1 {top1:.4f} is below the floor {floor:.4f} (majority-class "
                            f"rate {majority:.4f}, chance {1 / classes:.4f}, + margin "
                            f"{config.floor_margin:g})")
        if p_value > config.alpha:
            failures.append(f"top-1 is not significantly above {base:.4f} (exact binomial p "
                            f"{p_value:.3g} > alpha {config.alpha:g})")
        passed = not failures
        reason = "no champion yet; " + ("; ".join(failures) or (
            f"top-1 {top1:.4f} reaches the floor {floor:.4f} (majority {majority:.4f}, chance "
            f"{1 / classes:.4f}; binomial p {p_value:.3g})"))
    mean_class = float(np.mean(list(per_class_accuracy(candidate).values())))
    return GateDecision(passed, reason, n, top1, None, None, None, None, config,
                        candidate_mean_class=mean_class, p_value=p_value, floor=floor)


def decide(candidate: Predictions, champion: Predictions | None, config: GateConfig
           ) -> GateDecision:
    """The gate's decision for ``candidate`` against ``champion`` (None: no champion yet)."""
    problems = evidence_problems(candidate, "candidate", config)
    if champion is not None:
        problems += evidence_problems(champion, "champion", config)
    if problems:
        return _refused("refused before comparing: " + "; ".join(problems), candidate, champion,
                        config)
    if champion is None:
        return _first_champion(candidate, config)
    cand, champ = paired_correctness(candidate, champion)
    gain, lower, upper = paired_bootstrap(cand, champ, resamples=config.resamples,
                                          seed=config.seed, confidence=config.confidence)
    wins = int(((cand == 1) & (champ == 0)).sum())
    losses = int(((cand == 0) & (champ == 1)).sum())
    p_value = binomial_tail(wins, wins + losses, 0.5)
    cand_classes, champ_classes = per_class_accuracy(candidate), per_class_accuracy(champion)
    drops = {c: champ_classes[c] - cand_classes[c] for c in champ_classes}
    worst = max(drops, key=drops.get)
    cand_mean = float(np.mean(list(cand_classes.values())))
    champ_mean = float(np.mean(list(champ_classes.values())))
    failures = []
    if gain < config.min_gain:
        failures.append(f"top-1 gain {gain:+.4f} < min_gain {config.min_gain:g}")
    if cand_mean - champ_mean < config.min_mean_class_gain:
        failures.append(f"mean-class accuracy gain {cand_mean - champ_mean:+.4f} < "
                        f"min_mean_class_gain {config.min_mean_class_gain:g}")
    if drops[worst] > config.max_class_drop:
        failures.append(f"class {worst} drops {drops[worst]:.4f} ({champ_classes[worst]:.4f} -> "
                        f"{cand_classes[worst]:.4f}) > max_class_drop {config.max_class_drop:g}")
    if p_value > config.alpha:
        failures.append(f"sign test on the {wins + losses} discordant videos ({wins} wins, "
                        f"{losses} losses): p {p_value:.3g} > alpha {config.alpha:g}")
    if lower <= config.min_lower_bound:
        failures.append(f"bootstrap lower bound {lower:+.4f} (confidence {config.confidence:g}) "
                        f"<= {config.min_lower_bound:g}")
    reason = "; ".join(failures) or (
        f"top-1 gain {gain:+.4f} >= {config.min_gain:g}, mean-class gain "
        f"{cand_mean - champ_mean:+.4f}, worst class drop {drops[worst]:+.4f}, sign test p "
        f"{p_value:.3g} ({wins}/{losses}), lower bound {lower:+.4f} > {config.min_lower_bound:g}")
    return GateDecision(not failures, reason, len(cand), float(cand.mean()), float(champ.mean()),
                        gain, lower, upper, config, candidate_mean_class=cand_mean,
                        champion_mean_class=champ_mean, wins=wins, losses=losses,
                        p_value=p_value, worst_class_drop=float(drops[worst]))
