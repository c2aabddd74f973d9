"""Kinetics-400/600/700 CSV reader (``label,youtube_id,time_start,time_end,split[,is_cc]``).

File lookup rule (any common video extension): trimmed clips (the default, as distributed by the CVDF mirrors and the official
downloader) are files named ``{youtube_id}_{start:06d}_{end:06d}.<ext>`` (times truncated to whole
seconds); untrimmed sources (``trimmed=False``) are files named ``{youtube_id}.<ext>`` and the
record carries ``time_start``/``time_end`` so the media stage cuts the segment. Either way the
file may sit anywhere under the videos root (flat, ``{split}/``, ``{label}/`` or
``{split}/{label}/``); a folder named like the split or label breaks ties. The video id is always
``{youtube_id}_{start:06d}_{end:06d}`` so two segments of one source video stay distinct.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence

from pipelines.data.annotations._common import (
    MALFORMED_ROW,
    AnnotationError,
    FileIndex,
    RowSink,
    SplitFilter,
    clean_label,
    open_text,
    parse_time,
)
from pipelines.data.records import Annotations

POSITIONAL = ("label", "youtube_id", "time_start", "time_end", "split", "is_cc")
REQUIRED = ("label", "youtube_id", "time_start", "time_end")


def clip_id(youtube_id: str, start: float, end: float) -> str:
    """The Kinetics trimmed-clip name (also our video id): ``{id}_{start:06d}_{end:06d}``."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def _columns(first: list[str], location: str) -> tuple[dict[str, int], bool]:
    """Column positions from the header row, or the official order for a headerless file."""
    names = [c.strip().lower() for c in first]
    if "youtube_id" not in names:
        return {name: i for i, name in enumerate(POSITIONAL)}, False
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise AnnotationError(f"{location}: Kinetics header lacks column(s) {missing}")
    return {name: i for i, name in enumerate(names)}, True


def read(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read one or more Kinetics CSV files into records and rejections."""
    sink = RowSink()
    splits = SplitFilter(split)
    for location in files:
        with open_text(location) as fh:
            rows = csv.reader(fh)
            cols: dict[str, int] | None = None
            width = 0
            line = 0
            for row in rows:
                first_line, line = line + 1, rows.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if cols is None:
                    cols, has_header = _columns(row, location)
                    width = len(row) if has_header else 0
                    if has_header:
                        continue
                _read_row(row, cols, width, f"{location}:{first_line}", sink, splits, index,
                          split, trimmed)
    splits.check(", ".join(files))
    return sink.result()


def _read_row(
    row: list[str],
    cols: dict[str, int],
    width: int,
    source: str,
    sink: RowSink,
    splits: SplitFilter,
    index: FileIndex,
    wanted: str | None,
    trimmed: bool,
) -> None:
    """Check one data row (``width`` is the header width, 0 for a headerless file)."""
    def cell(name: str) -> str:
        pos = cols.get(name)
        return row[pos].strip() if pos is not None and pos < len(row) else ""

    if (width and len(row) != width) or (not width and not 4 <= len(row) <= 6):
        # Columns are shifted (e.g. an unquoted comma): no cell, not even the split, is reliable.
        sink.reject(MALFORMED_ROW, source=source, split=wanted or "")
        return
    row_split = cell("split") or wanted or "train"
    if not splits.keep(row_split):
        return
    label = clean_label(cell("label"))
    youtube_id = cell("youtube_id")
    start, end = parse_time(cell("time_start")), parse_time(cell("time_end"))
    if start is None or end is None:
        sink.reject(MALFORMED_ROW, source=source, video_id=youtube_id, label=label,
                    split=row_split)
        return
    try:
        video_id = clip_id(youtube_id, start, end) if youtube_id else ""
    except (OverflowError, ValueError):  # inf/nan times: the range check refuses them
        video_id = youtube_id
    stem = video_id if trimmed else youtube_id
    sink.offer(
        source=source,
        video_id=video_id,
        label=label,
        split=row_split,
        find=lambda: index.find(stem, hints=(row_split, label)),
        times=(start, end),
        keep_times=not trimmed,
    )
