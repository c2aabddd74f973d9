"""UCF-101 reader: ``classInd.txt`` plus ``trainlist0N.txt`` / ``testlist0N.txt`` of one fold.

``classInd.txt`` lines are ``"1 ApplyEyeMakeup"`` (1-based) and fix the class order. Train lists
give ``Class/v_Class_gXX_cYY.avi 1``; test lists give only the path and the class is the folder.
When a train line has both, they must agree (else ``label_conflict``). Files are found by their
listed path, or by file stem anywhere under the root (so ``.avi`` converted to ``.mp4`` resolves).
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from pipelines.data.annotations._common import (
    LABEL_CONFLICT,
    MALFORMED_ROW,
    PATH_ESCAPES_ROOT,
    UNKNOWN_LABEL,
    AnnotationError,
    FileIndex,
    RowSink,
    assign_file_splits,
    base_name,
    clean_label,
    open_text,
    require_trimmed,
    safe_relpath,
)
from pipelines.data.records import Annotations

SPLIT_NAMES = {"trainlist": "train", "testlist": "test"}
_FOLD = re.compile(r"(?:train|test)list0*(\d+)", re.IGNORECASE)


def _classes(location: str) -> list[str]:
    """Class names in ``classInd.txt`` order, checking the indices run 1..N."""
    by_index: dict[int, str] = {}
    with open_text(location) as fh:
        for number, line in enumerate(fh.read().splitlines(), start=1):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) in by_index:
                raise AnnotationError(f"{location}:{number}: expected '<index> <ClassName>'")
            by_index[int(parts[0])] = clean_label(parts[1])
    if sorted(by_index) != list(range(1, len(by_index) + 1)) or not by_index:
        raise AnnotationError(f"{location}: class indices must run 1..N")
    names = [by_index[i] for i in range(1, len(by_index) + 1)]
    if len(set(names)) != len(names):
        raise AnnotationError(f"{location}: a class name is listed twice")
    return names


def _fold_of(files: Sequence[str]) -> None:
    """Refuse list files from different folds: a video would be in train and test at once."""
    folds = {m.group(1) for f in files if (m := _FOLD.search(base_name(f)))}
    if len(folds) > 1:
        raise AnnotationError(
            f"ucf101: list files of several folds given ({sorted(folds)}); pass one fold, "
            "e.g. classInd.txt trainlist01.txt testlist01.txt"
        )


def read(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read one fold of UCF-101 (``classInd.txt`` is required)."""
    require_trimmed("ucf101", trimmed)
    class_files = [f for f in files if base_name(f).lower() == "classind.txt"]
    if len(class_files) != 1:
        raise AnnotationError("ucf101: pass exactly one classInd.txt with the list files")
    classes = _classes(class_files[0])
    list_files = [f for f in files if f not in class_files]
    _fold_of(list_files)
    sink = RowSink(known_labels=set(classes))
    for location, row_split in assign_file_splits(list_files, SPLIT_NAMES, split, "ucf101"):
        with open_text(location) as fh:
            for number, line in enumerate(fh.read().splitlines(), start=1):
                if line.strip():
                    _line(line, f"{location}:{number}", row_split, classes, sink, index)
    return sink.result(classes)


def _line(
    line: str, source: str, split: str, classes: list[str], sink: RowSink, index: FileIndex
) -> None:
    parts = line.split()
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        sink.reject(MALFORMED_ROW, source=source, split=split)
        return
    rel = safe_relpath(parts[0])
    if rel is None:
        sink.reject(PATH_ESCAPES_ROOT, source=source, video_id=parts[0], split=split)
        return
    video_id = posixpath.splitext(posixpath.basename(rel))[0]
    folder = rel.split("/")[-2] if "/" in rel else ""
    label = folder
    if len(parts) == 2:
        number = int(parts[1])
        if not 1 <= number <= len(classes):
            sink.reject(UNKNOWN_LABEL, source=source, video_id=video_id, label=parts[1],
                        split=split)
            return
        label = classes[number - 1]
        if folder and folder != label:
            sink.reject(LABEL_CONFLICT, source=source, video_id=video_id, label=label,
                        split=split)
            return
    sink.offer(source=source, video_id=video_id, label=label, split=split,
               find=lambda: index.find(video_id, listed=rel, hints=(label, split)))
