"""The record types that flow from annotation readers into the preprocessing job.

A reader never raises on a bad row: it returns a :class:`RejectedRecord` with a reason, so the
manifest can account for every input row and one bad line never costs the other 240k.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoRecord:
    """One usable annotation row.

    ``path`` is relative to the videos root (posix separators) so the same annotations work on a
    local disk and in object storage. ``time_start``/``time_end`` are seconds into the source
    video and are set only when the source is untrimmed and must be cut.
    """

    video_id: str
    path: str
    label: str
    time_start: float | None = None
    time_end: float | None = None
    split: str = "train"


@dataclass(frozen=True)
class RejectedRecord:
    """An annotation row that cannot become a sample, with the reason it was refused."""

    video_id: str
    source: str
    label: str
    split: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Annotations:
    """What a reader returns: usable rows, refused rows, and the dataset's own class order.

    ``class_names`` is set when the dataset defines its class list (UCF-101 ``classInd.txt``,
    Something-Something label files); otherwise it is ``None`` and the class map is built from
    sorted label names.
    """

    records: list[VideoRecord] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    class_names: list[str] | None = None
