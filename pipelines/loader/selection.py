"""A stable, seed-free split of sample keys (the selection split carved out of train).

``hash()`` is salted per process, so it would put a video in the selection split on one rank
and in training on another; SHA-1 of the key's UTF-8 bytes is the same everywhere, forever.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass


def key_position(key: str) -> float:
    """The key's place in ``[0, 1)``: the first 8 bytes of its SHA-1, big-endian, over 2**64."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_selection(key: str, fraction: float) -> bool:
    """Whether ``key`` belongs to a selection split holding ``fraction`` of the keys."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return key_position(key) < fraction


@dataclass(frozen=True)
class SelectionFilter:
    """A picklable ``keep`` for the loaders: the selection split (``selected=True``) or the rest.

    Use it instead of a lambda so DataLoader workers started with ``spawn`` can receive it.
    """

    fraction: float
    selected: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")

    def __call__(self, key: str) -> bool:
        return in_selection(key, self.fraction) == self.selected
