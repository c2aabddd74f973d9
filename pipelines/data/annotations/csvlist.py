"""Plain ``path,label`` CSV reader, with or without a header row.

A header is recognised when the first row names a path column (``path``, ``video``, ``file``,
``filename`` or ``video_path``) and a label column (``label``, ``class``, ``label_name`` or
``class_name``); it may add a ``split`` column. Without a header every row is exactly
``path,label``. Paths are relative to the videos root and must be listed exactly (no search); a
path cell is matched as written and, if no such file is listed, without surrounding spaces (so
names with leading/trailing spaces work, and so does ``a.mp4, label``). The video id is the
normalised relative path **with** its extension, so ``x.mp4`` and ``x.mkv`` are two samples,
never one id. Rows without a split take ``split=`` or ``train``.
"""
from __future__ import annotations

import csv
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
        sink.reject(MALFORMED_ROW, source=source, label=label, split=row_split,
                    detail="empty path")
        return
    rel = _listed_variant(raw_path, index)
    if rel is None:
        sink.reject(PATH_ESCAPES_ROOT, source=source, video_id=raw_path.strip(), label=label,
                    split=row_split, detail=f"{raw_path!r} is not inside the videos root")
        return
    sink.offer(source=source, video_id=rel, label=label, split=row_split,
               find=lambda: index.exact(rel), id_is_name=False)


def _listed_variant(raw_path: str, index: FileIndex) -> str | None:
    """The cell as written if that file is listed, else the cell without surrounding spaces."""
    candidates = [safe_relpath(raw_path), safe_relpath(raw_path.strip())]
    if any(c is None for c in candidates):
        return None  # either form leaving the root is refused
    return next((c for c in candidates if c in index.paths), candidates[1])
