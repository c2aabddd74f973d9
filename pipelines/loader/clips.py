"""What a clip is: frame count, crop size and the augmentation switches, as one frozen record.

Training, evaluation, the exported checkpoint and batch prediction must cut clips the same way,
so the settings travel with the model as plain JSON (:meth:`ClipSettings.to_dict` /
:meth:`ClipSettings.from_dict`) instead of being re-typed in each place.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ClipSettings:
    """TSN-style clip geometry (paper Sec. 4.2; defaults are the paper's).

    Spatial geometry is computed on the frame as if its short side were ``resize`` (frames are
    stored at short side 256, like TSN's), then mapped back to stored pixels for one resample;
    so the same settings cut the same region whatever size the frames were stored at.
    """

    frames: int = 8                      # T segments (TSN sparse sampling)
    size: int = 224                      # crop fed to the model (square)
    resize: int = 256                    # short side the crop geometry refers to (eval: resize then crop)
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)   # train: multi-scale crop, x short side
    max_distort: int = 1                 # TSN's multi-scale crop aspect distortion
    corner_crops: bool = True            # TSN's fixed corner + centre offsets (else random offsets)
    flip: bool = True                    # random horizontal flip in training (False for SSv2, synthetic)
    flip_label_swap: tuple[tuple[str, str], ...] = ()   # class pairs swapped when a clip is flipped

    def __post_init__(self) -> None:
        # Configs and checkpoints arrive as JSON/YAML lists: normalise to hashable tuples.
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "flip_label_swap",
                           tuple(tuple(pair) for pair in self.flip_label_swap))
        problems = []
        for name in ("frames", "size", "resize", "max_distort"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{name} must be an int")
        if problems:
            raise ValueError("ClipSettings: " + "; ".join(problems))
        if self.frames < 1:
            problems.append("frames must be >= 1")
        if self.size < 1:
            problems.append("size must be >= 1")
        if self.resize < self.size:
            problems.append(f"resize ({self.resize}) must be >= size ({self.size}): the eval "
                            "centre crop is cut from the resized frame")
        if not self.scales or not all(math.isfinite(s) and 0 < s <= 1 for s in self.scales):
            problems.append("scales must be a non-empty list of fractions in (0, 1]")
        elif int(self.resize * min(self.scales)) < 1:
            problems.append("the smallest scale gives a crop under one pixel")
        if self.max_distort < 0:
            problems.append("max_distort must be >= 0")
        seen: set[str] = set()
        for pair in self.flip_label_swap:
            if (len(pair) != 2 or not all(isinstance(n, str) and n for n in pair)
                    or pair[0] == pair[1]):
                problems.append(f"flip_label_swap entry {pair!r} is not a pair of two names")
                continue
            if seen & set(pair):
                problems.append(f"flip_label_swap names {sorted(seen & set(pair))} twice")
            seen |= set(pair)
        if self.flip_label_swap and not self.flip:
            problems.append("flip_label_swap is set but flip is off")
        if problems:
            raise ValueError("ClipSettings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples) for checkpoints and tracking params."""
        data = asdict(self)
        data["scales"] = list(self.scales)
        data["flip_label_swap"] = [list(pair) for pair in self.flip_label_swap]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipSettings:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a checkpoint from elsewhere)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ClipSettings: unknown fields {unknown}")
        return cls(**dict(data))


def label_swap_indices(pairs: Sequence[Sequence[str]], class_names: Sequence[str]
                       ) -> dict[int, int]:
    """``flip_label_swap`` name pairs as the label-index map ``train_batches`` takes (both ways).

    Raises on a name the class map does not have, so a typo cannot silently train flipped
    "left" clips as "left".
    """
    index = {name: i for i, name in enumerate(class_names)}
    missing = sorted({n for pair in pairs for n in pair if n not in index})
    if missing:
        raise ValueError(f"flip_label_swap names classes not in the class map: {missing}")
    swap: dict[int, int] = {}
    for a, b in pairs:
        swap[index[a]] = index[b]
        swap[index[b]] = index[a]
    return swap
