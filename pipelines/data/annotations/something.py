"""Something-Something V1 and V2 readers.

V2 (official layout): ``something-something-v2-labels.json`` maps class name → index (a string)
and fixes the class order; ``…-train.json`` / ``…-validation.json`` / ``…-test.json`` are lists of
``{"id", "label", "template", "placeholders"}``. The class is the ``template`` with its brackets
removed (``"Putting [something] on [something]"`` → ``"Putting something on something"``), as in
the official label file; ``label`` (objects filled in) is ignored. Videos are ``{id}.webm``.

V1: ``something-something-v1-labels.csv`` (one class per line, in index order) and
``…-train.csv`` / ``…-validation.csv`` / ``…-test.csv`` with ``id;label`` lines. A row resolves to a
video file ``{id}.<ext>`` or, as distributed, a folder of JPEG frames named ``{id}`` (the video
wins when both exist); the record's path is then that folder.

The split of a list file comes from its name (``train``, ``validation``/``val``, ``test``); a single
list file given with ``split=`` takes that split. Rows without a class (the test lists) are
``empty_label``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipelines.data.annotations._common import (
    AnnotationError,
    FileIndex,
    RowSink,
    assign_file_splits,
    base_name,
    clean_label,
    open_text,
    require_trimmed,
)
from pipelines.data.records import Annotations

SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


# ------------------------------------------------------------------------------------- V2


def _v2_classes(mapping: dict[str, Any], location: str) -> list[str]:
    """Class names in index order from the V2 ``name → "index"`` label file."""
    try:
        by_index = {int(v): clean_label(k) for k, v in mapping.items()}
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{location}: label indices must be integers ({exc})") from exc
    if sorted(by_index) != list(range(len(mapping))) or "" in by_index.values():
        raise AnnotationError(
            f"{location}: label indices must be 0..{len(mapping) - 1}, each used once, "
            "with non-empty names"
        )
    return [by_index[i] for i in range(len(mapping))]


def _load_json(location: str) -> Any:
    with open_text(location) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{location}: not valid JSON ({exc})") from exc


def read_v2(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read the SSv2 label file (optional but recommended) and list files."""
    require_trimmed("ssv2", trimmed)
    classes: list[str] | None = None
    lists: dict[str, list[Any]] = {}
    for location in files:
        data = _load_json(location)
        if isinstance(data, dict):
            if classes is not None:
                raise AnnotationError(f"ssv2: more than one label file given ({location})")
            classes = _v2_classes(data, location)
        elif isinstance(data, list):
            lists[location] = data
        else:
            raise AnnotationError(f"{location}: expected a JSON object or list")
    sink = RowSink(known_labels=set(classes) if classes is not None else None)
    for location, row_split in assign_file_splits(list(lists), SPLIT_NAMES, split, "ssv2"):
        for i, entry in enumerate(lists[location]):
            _v2_entry(entry, f"{location}[{i}]", row_split, sink, index)
    return sink.result(classes)


def _v2_entry(entry: Any, source: str, split: str, sink: RowSink, index: FileIndex) -> None:
    raw_id = entry.get("id") if isinstance(entry, dict) else None
    video_id = str(raw_id).strip() if isinstance(raw_id, (str, int)) else ""
    template = entry.get("template") if isinstance(entry, dict) else None
    label = clean_label(template.replace("[", "").replace("]", "")) if isinstance(
        template, str) else ""
    sink.offer(source=source, video_id=video_id, label=label, split=split,
               find=lambda: index.find(video_id, hints=(split,)))


# ------------------------------------------------------------------------------------- V1


def _v1_classes(location: str) -> list[str]:
    with open_text(location) as fh:
        names = [clean_label(line) for line in fh.read().splitlines()]
    names = [n for n in names if n]
    if len(set(names)) != len(names) or not names:
        raise AnnotationError(f"{location}: class list is empty or repeats a name")
    return names


def read_v1(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read the SSv1 class list (a file with ``labels`` in its name) and ``id;label`` lists."""
    require_trimmed("ssv1", trimmed)
    label_files = [f for f in files if "labels" in base_name(f).lower()]
    if len(label_files) > 1:
        raise AnnotationError(f"ssv1: more than one label file given: {label_files}")
    classes = _v1_classes(label_files[0]) if label_files else None
    sink = RowSink(known_labels=set(classes) if classes is not None else None)
    list_files = [f for f in files if f not in label_files]
    for location, row_split in assign_file_splits(list_files, SPLIT_NAMES, split, "ssv1"):
        with open_text(location) as fh:
            for number, line in enumerate(fh.read().splitlines(), start=1):
                if line.strip():
                    _v1_line(line, f"{location}:{number}", row_split, sink, index)
    return sink.result(classes)


def _v1_line(line: str, source: str, split: str, sink: RowSink, index: FileIndex) -> None:
    video_id, _, raw_label = line.partition(";")
    video_id, label = video_id.strip(), clean_label(raw_label)
    sink.offer(source=source, video_id=video_id, label=label, split=split,
               find=lambda: index.find_video_or_frames(video_id, hints=(split,)))
