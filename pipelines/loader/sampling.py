"""The one TSN sampler: which stored frames make a clip (training, evaluation, demo, benchmarks).

TSN sparse sampling (paper Sec. 4.2) splits the video into ``segments`` equal segments and takes
one frame from each. Frame ``k`` is taken to cover the interval ``[k, k + 1)``; segment ``i``
covers ``[i * n / T, (i + 1) * n / T)`` for ``n`` stored frames and ``T`` segments.

- training (``rng`` given): a uniform point of each segment, and the frame covering it. When
  ``n`` is a multiple of ``T`` this is a uniform pick among the segment's ``n / T`` frames; a
  frame straddling a segment boundary is shared, with the chance its overlap gives it.
- evaluation (no ``rng``): ``clips`` evenly offset clips; clip ``c`` takes, in segment ``i``, the
  frame covering ``i * n / T + (c + 0.5) / clips * n / T``. ``clips=1`` gives the segment centres
  (the ``1x1`` protocol), ``clips=10`` the paper's 10 temporal clips.
- fewer stored frames than segments: segments are shorter than a frame, so consecutive segments
  pick the same frame and the clip repeats frames (in order); every clip still has ``T`` frames.

Integer arithmetic throughout (no float rounding at segment edges); indices never decrease
within a clip and lie in ``[0, n)``.
"""
from __future__ import annotations

import random

PROTOCOLS: dict[str, tuple[int, int]] = {"1x1": (1, 1), "10x3": (10, 3)}
"""Test protocols: name -> (temporal clips, spatial crops); views per video = their product."""


def segment_indices(num_stored: int, segments: int, *, rng: random.Random | None = None,
                    clips: int = 1) -> list[list[int]]:
    """Frame indices of ``clips`` clips (one list of ``segments`` indices each).

    With ``rng`` (training) one random clip; without, ``clips`` deterministic test clips.
    """
    for name, value in (("num_stored", num_stored), ("segments", segments), ("clips", clips)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"segment_indices: {name} must be an int >= 1, got {value!r}")
    n, t = num_stored, segments
    if rng is not None:
        if clips != 1:
            raise ValueError("segment_indices: training sampling (rng given) draws one clip")
        # a uniform point of [i*n/T, (i+1)*n/T) on the grid of 1/T frame, then its frame
        return [[rng.randrange(i * n, (i + 1) * n) // t for i in range(t)]]
    # floor(i*n/T + (c + 0.5)/clips * n/T) = floor((2*clips*i + 2c + 1) * n / (2*clips*T))
    return [[((2 * clips * i + 2 * c + 1) * n) // (2 * clips * t) for i in range(t)]
            for c in range(clips)]


def protocol_views(protocol: str) -> tuple[int, int]:
    """``(temporal clips, spatial crops)`` of a protocol name; a clear error for unknown ones."""
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"unknown test protocol {protocol!r}; known: {sorted(PROTOCOLS)}"
                         ) from None
