"""One stored sample → the uint8 views an evaluation protocol scores (``1x1``: 1, ``10x3``: 30).

Shared by the evaluation stream and by the packaged model (which turns a raw video into a
sample first), so a prediction on a video file is decoded, sampled and cropped exactly as the
evaluation of its shard.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.loader.augment import eval_transform
from pipelines.loader.clips import ClipSettings
from pipelines.loader.decode import read_frames, stored_frame_count
from pipelines.loader.sampling import protocol_views, segment_indices


def eval_views(sample: dict[str, Any], clip: ClipSettings, protocol: str) -> np.ndarray:
    """uint8 ``(V, T, 3, size, size)``, view ``v = temporal clip * crops + crop``."""
    clips, crops = protocol_views(protocol)
    index = segment_indices(stored_frame_count(sample), clip.frames, clips=clips)
    unique = sorted({f for one in index for f in one})
    position = {f: i for i, f in enumerate(unique)}
    cropped = eval_transform(read_frames(sample, unique), clip, crops)  # (K, U, 3, S, S)
    views = np.empty((clips * crops, clip.frames, 3, clip.size, clip.size), np.uint8)
    for c, one in enumerate(index):
        picks = [position[f] for f in one]
        for k in range(crops):
            views[c * crops + k] = cropped[k, picks]
    return views
