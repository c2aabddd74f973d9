"""Annotation readers: dataset label files → :class:`~pipelines.data.records.Annotations`.

``read_annotations(fmt, annotations, available, split=…, trimmed=…)`` is the one entry point.
``available`` is the listing of the videos root (posix paths relative to it), taken once by the
caller locally or in object storage; readers resolve every row against it, so a record's
``path`` is a file that exists and is relative to the root. A bad row never raises: it becomes a
:class:`~pipelines.data.records.RejectedRecord` whose ``source`` is ``file:line`` (``file[i]`` for
JSON lists) and whose ``reason`` is one of the stable codes of :mod:`pipelines.data.reasons`
(``REASONS`` is the one list), with a ``detail`` saying what was looked for.

Rows of other splits than ``split`` are skipped, not rejected (they belong to another run); a
row too broken to tell its split (``malformed_row``) is reported by every run that reads it.
Asking for a split no row has is an :class:`AnnotationError` that lists the splits present, as is
a file that cannot be read or parsed at all (bad UTF-8, bad JSON, missing header columns, mixed
folds). ``annotations`` may be one path or several; a directory means its files, a string with
``*`` its glob matches (for a URI, in the file name only), and ``scheme://`` URIs are read
through :mod:`pipelines.io`.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol

from pipelines.data.annotations import csvlist, hmdb51, kinetics, something, ucf101
from pipelines.data.annotations._common import (
    REASONS, VIDEO_EXTENSIONS, AnnotationError, FileIndex, expand_inputs,
)
from pipelines.data.records import Annotations

__all__ = ["ANNOTATION_FORMATS", "REASONS", "VIDEO_EXTENSIONS", "AnnotationError", "Reader",
           "read_annotations"]


class Reader(Protocol):
    """What every format module provides: parse ``files``, resolve rows against ``index``."""

    def __call__(
        self, files: Sequence[str], index: FileIndex, *, split: str | None, trimmed: bool
    ) -> Annotations: ...


ANNOTATION_FORMATS: dict[str, Reader] = {
    "kinetics": kinetics.read,
    "ssv1": something.read_v1,
    "ssv2": something.read_v2,
    "ucf101": ucf101.read,
    "hmdb51": hmdb51.read,
    "csv": csvlist.read,
}


def read_annotations(
    fmt: str,
    annotations: str | Path | Sequence[str | Path],
    available: Collection[str],
    *,
    split: str | None = None,
    trimmed: bool = True,
) -> Annotations:
    """Read a dataset's annotation files, resolving rows against the listing ``available``.

    ``trimmed=False`` (Kinetics only) means the files are whole source videos and the records
    carry ``time_start``/``time_end`` for the media stage to cut.
    """
    reader = ANNOTATION_FORMATS.get(fmt)
    if reader is None:
        raise AnnotationError(
            f"unknown annotation format {fmt!r}; choose one of {sorted(ANNOTATION_FORMATS)}"
        )
    files = expand_inputs(annotations)
    result = reader(files, FileIndex(available), split=split, trimmed=trimmed)
    if not result.records and not result.rejected:
        where = ", ".join(files)
        raise AnnotationError(f"{fmt}: no annotation rows in {where}")
    return result
