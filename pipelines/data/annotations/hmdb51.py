"""HMDB-51 reader: the per-class split files ``{class}_test_split{N}.txt`` of one fold.

Each line is ``video.avi F`` with F = 1 (train), 2 (test) or 0 (not used in this fold; skipped,
not rejected). The class is the file name's prefix; HMDB defines no class order, so the class map
sorts names. Videos are looked up as ``{class}/{video}`` or by stem anywhere under the root.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from pipelines.data.annotations._common import (
    MALFORMED_ROW,
    AnnotationError,
    FileIndex,
    RowSink,
    SplitFilter,
    base_name,
    clean_label,
    open_text,
    require_trimmed,
)
from pipelines.data.records import Annotations

_SPLIT_FILE = re.compile(r"^(?P<label>.+)_test_split(?P<fold>\d+)\.txt$")
FLAG_SPLITS = {"1": "train", "2": "test"}


def _parse_names(files: Sequence[str]) -> list[tuple[str, str]]:
    """``(location, class)`` per file, refusing unknown names and mixed folds."""
    out: list[tuple[str, str]] = []
    folds: set[str] = set()
    for location in files:
        match = _SPLIT_FILE.match(base_name(location))
        if match is None:
            raise AnnotationError(
                f"hmdb51: {location} is not named '<class>_test_split<N>.txt'"
            )
        folds.add(match["fold"])
        out.append((location, clean_label(match["label"])))
    if len(folds) > 1:
        raise AnnotationError(
            f"hmdb51: split files of several folds given ({sorted(folds)}); pass one fold, "
            "e.g. 'splits/*_test_split1.txt'"
        )
    return out


def read(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read one fold's split files (one per class)."""
    require_trimmed("hmdb51", trimmed)
    sink = RowSink()
    splits = SplitFilter(split)
    for location, label in _parse_names(files):
        with open_text(location) as fh:
            for number, line in enumerate(fh.read().splitlines(), start=1):
                parts = line.split()
                if not parts or (len(parts) == 2 and parts[1] == "0"):
                    continue
                source = f"{location}:{number}"
                row_split = FLAG_SPLITS.get(parts[1], "") if len(parts) == 2 else ""
                if not row_split:
                    sink.reject(MALFORMED_ROW, source=source, label=label, split=split or "")
                    continue
                if splits.keep(row_split):
                    _offer(parts[0], label, row_split, source, sink, index)
    splits.check("hmdb51")
    return sink.result()


def _offer(name: str, label: str, split: str, source: str, sink: RowSink,
           index: FileIndex) -> None:
    video_id = posixpath.splitext(name)[0]
    sink.offer(source=source, video_id=video_id, label=label, split=split,
               find=lambda: index.find(video_id, listed=f"{label}/{name}", hints=(label,)))
