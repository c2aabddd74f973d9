"""Plain ``path,label`` CSV reader, with or without a header row.

A header is recognised when the first row names a path column (``path``, ``video``, ``file``,
``filename`` or ``video_path``) and a label column (``label``, ``class``, ``label_name`` or
``class_name``); it may add a ``split`` column. Without a header every row is exactly
``path,label``. Paths are relative to the videos root and must be listed exactly (no search); the
video id is the path without its extension. Rows without a split take ``split=`` or ``train``.
"""
from __future__ import annotations

import csv
import posixpath
from collections.abc import Sequence

from pipelines.data.annotations._common import (
    MALFORMED_ROW,
    PATH_ESCAPES_ROOT,
    FileIndex,
    RowSink,
    SplitFilter,
    clean_label,
    open_text,
    require_trimmed,
    safe_relpath,
)
from pipelines.data.records import Annotations

PATH_COLUMNS = ("path", "video", "file", "filename", "video_path")
LABEL_COLUMNS = ("label", "class", "label_name", "class_name")


def _header(row: list[str]) -> dict[str, int] | None:
    """``{"path": i, "label": j[, "split": k]}`` if ``row`` is a header row, else ``None``."""
    names = [c.strip().lower() for c in row]
    path = next((names.index(n) for n in PATH_COLUMNS if n in names), None)
    label = next((names.index(n) for n in LABEL_COLUMNS if n in names), None)
    if path is None or label is None:
        return None
    cols = {"path": path, "label": label}
    if "split" in names:
        cols["split"] = names.index("split")
    return cols


def read(
    files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
) -> Annotations:
    """Read one or more ``path,label`` files."""
    require_trimmed("csv", trimmed)
    sink = RowSink()
    splits = SplitFilter(split)
    for location in files:
        with open_text(location) as fh:
            rows = csv.reader(fh)
            cols: dict[str, int] | None = None
            width, line = 2, 0
            for row in rows:
                first_line, line = line + 1, rows.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if cols is None:
                    cols = _header(row)
                    if cols is not None:
                        width = len(row)
                        continue
                    cols = {"path": 0, "label": 1}
                _row(row, cols, width, f"{location}:{first_line}", split, splits, sink, index)
    splits.check("csv")
    return sink.result()


def _row(
    row: list[str],
    cols: dict[str, int],
    width: int,
    source: str,
    wanted: str | None,
    splits: SplitFilter,
    sink: RowSink,
    index: FileIndex,
) -> None:
    if len(row) != width:  # shifted columns: not even the split cell is reliable
        sink.reject(MALFORMED_ROW, source=source, split=wanted or "")
        return
    row_split = (row[cols["split"]].strip() if "split" in cols else "") or wanted or "train"
    if not splits.keep(row_split):
        return
    raw_path, label = row[cols["path"]], clean_label(row[cols["label"]])
    if not raw_path.strip():
        sink.reject(MALFORMED_ROW, source=source, label=label, split=row_split)
        return
    rel = safe_relpath(raw_path)
    if rel is None:
        sink.reject(PATH_ESCAPES_ROOT, source=source, video_id=raw_path.strip(), label=label,
                    split=row_split)
        return
    sink.offer(source=source, video_id=posixpath.splitext(rel)[0], label=label,
               split=row_split, find=lambda: index.exact(rel), id_is_name=False)
