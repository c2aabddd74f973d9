"""Shared machinery of the annotation readers: file lookup, row checks, split selection.

Every reader parses its own file format and then hands each row to :class:`RowSink`, so the
checks that turn a bad row into a :class:`RejectedRecord` (and their order) live in one place.
"""
from __future__ import annotations

import fnmatch
import glob
import io
import math
import posixpath
import re
import unicodedata
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pipelines.data.records import Annotations, RejectedRecord, VideoRecord
from pipelines.io import Storage, is_uri, local_path, read_bytes, scheme
from pipelines.media.reasons import NOT_A_REGULAR_FILE

from pipelines.data.reasons import (  # noqa: F401  (re-exported for the readers)
    AMBIGUOUS_FILE,
    BAD_LABEL,
    BAD_TIME_RANGE,
    DUPLICATE,
    EMPTY_LABEL,
    LABEL_CONFLICT,
    MALFORMED_ROW,
    MISSING_FILE,
    PATH_ESCAPES_ROOT,
    REASONS,
    UNKNOWN_LABEL,
)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv",
     ".wmv", ".ts"}
)
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
_GLOB_CHARS = re.compile(r"[*?\[]")


class AnnotationError(ValueError):
    """An annotation input that cannot be read at all (as opposed to one bad row in it)."""


# ----------------------------------------------------------------------------------- inputs


def expand_inputs(annotations: str | Path | Sequence[str | Path]) -> list[str]:
    """Turn the caller's annotation argument into a list of file locations.

    A local directory stands for the regular files directly inside it (sorted), a string with
    glob characters for its sorted matches; ``scheme://`` URIs are read through :mod:`pipelines.io`.
    """
    items = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    if not items:
        raise AnnotationError("no annotation files given")
    out: list[str] = []
    for item in items:
        text = str(item)
        if is_uri(text):
            out.extend(_expand_uri(text))
            continue
        text = local_path(text) if scheme(text) == "file" else text
        if Path(text).is_dir():
            files = sorted(str(p) for p in Path(text).iterdir() if p.is_file())
            if not files:
                raise AnnotationError(f"annotation directory {text} has no files")
            out.extend(files)
        elif _GLOB_CHARS.search(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise AnnotationError(f"annotation pattern {text!r} matches no file")
            out.extend(matches)
        elif Path(text).is_file():
            out.append(text)
        else:
            raise AnnotationError(f"annotation file {text} does not exist")
    return out


def _expand_uri(uri: str) -> list[str]:
    """A URI, or the files matching a glob in its last path component (``s3://b/ann/*.csv``)."""
    if not _GLOB_CHARS.search(uri):
        return [uri]
    parent, _, pattern = uri.rpartition("/")
    if _GLOB_CHARS.search(parent):
        raise AnnotationError(f"annotation pattern {uri!r}: only the file name may hold * ? [")
    names = Storage.open(parent).list_files(recursive=False)
    files = sorted(f"{parent}/{n}" for n in names if fnmatch.fnmatchcase(n, pattern))
    if not files:
        raise AnnotationError(f"annotation pattern {uri!r} matches no file")
    return files


@contextmanager
def open_text(location: str) -> Iterator[TextIO]:
    """Open an annotation file as UTF-8 text (BOM dropped), at a local path or a URI.

    Undecodable bytes are an :class:`AnnotationError`: silently replacing them would change label
    strings, and labels must come out exactly as the dataset wrote them.
    """
    try:
        raw = read_bytes(location)
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file {location}: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"{location} is not valid UTF-8 (byte offset {exc.start}); re-encode it as UTF-8"
        ) from exc
    yield io.StringIO(text, newline="")


def require_trimmed(fmt: str, trimmed: bool) -> None:
    """Only Kinetics lists untrimmed sources; elsewhere ``trimmed=False`` is a caller mistake."""
    if not trimmed:
        raise AnnotationError(f"{fmt}: videos are trimmed clips; trimmed=False does not apply")


def base_name(location: str) -> str:
    """File name of a local path or URI, for recognising files by their official names."""
    return posixpath.basename(location.replace("\\", "/").rstrip("/"))


# ---------------------------------------------------------------------------------- values


def clean_label(raw: object) -> str:
    """A label as stored: NFC-normalised, minus surrounding whitespace (never case-folded).

    NFC makes ``café`` typed as one code point or as ``e`` + combining accent one class.
    """
    return unicodedata.normalize("NFC", raw).strip() if isinstance(raw, str) else ""


def has_control_characters(text: str) -> bool:
    """Control or format characters (tabs, newlines, NUL, bidi overrides): not part of a class."""
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in text)


def parse_time(raw: str) -> float | None:
    """Seconds as a float, or ``None`` when the text is not a number."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value


def time_range_ok(start: float, end: float) -> bool:
    """A usable cut: finite, non-negative, and ending after it starts."""
    return math.isfinite(start) and math.isfinite(end) and 0 <= start < end


def safe_relpath(raw: str, *, backslash_separates: bool = True) -> str | None:
    """Normalise a path relative to the dataset root, or ``None`` if it leaves the root.

    Absolute paths, URIs, drive letters and ``..`` that climb above the root all count as
    leaving it; ``a/../b.mp4`` is fine and becomes ``b.mp4``. Surrounding spaces are kept (a
    file may be named `` a.mp4``); annotation paths also accept Windows ``\\`` separators, a
    listing of the root does not (on POSIX a backslash is part of a name).
    """
    text = raw.replace("\\", "/") if backslash_separates else raw
    if (not text.strip() or text.startswith("/") or scheme(text) is not None
            or re.match(r"^[A-Za-z]:", text)):
        return None
    norm = posixpath.normpath(text)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    return norm


def safe_name(raw: str) -> bool:
    """Whether an id can be used as a single file-name component (no separators, not ``..``)."""
    return bool(raw) and "/" not in raw and "\\" not in raw and raw not in (".", "..")


# -------------------------------------------------------------------------------- file index


@dataclass(frozen=True)
class Found:
    """Result of a file lookup: the relative path, or the reason code why there is none.

    ``detail`` says what was looked for (a missing file) or what matched (an ambiguous one), so
    the manifest row can be acted on without re-running the lookup by hand.
    """

    path: str | None = None
    reason: str | None = None
    detail: str = ""


def _names(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


class FileIndex:
    """The listing of the videos root, indexed for the lookups the readers need.

    Built once per read from the caller's listing, so resolving 240k rows is dictionary work.
    """

    def __init__(self, available: Collection[str]) -> None:
        self.paths: set[str] = set()
        self.by_stem: dict[str, list[str]] = {}
        self.folders: set[str] = set()  # every folder that holds a listed path
        self._frame_dirs: dict[str, list[str]] | None = None
        for raw in available:
            if str(raw).strip() in ("", ".", "./"):  # the root itself (an object-store marker)
                continue
            rel = safe_relpath(str(raw), backslash_separates=False)
            if rel is None:
                raise AnnotationError(
                    f"listing entry {raw!r} is not a path relative to the videos root"
                )
            self.paths.add(rel)
        self.folder_by_stem: dict[str, list[str]] = {}  # folders named like a video file
        for rel in sorted(self.paths):
            stem, ext = posixpath.splitext(posixpath.basename(rel))
            if ext.lower() in VIDEO_EXTENSIONS:
                self.by_stem.setdefault(stem, []).append(rel)
            folder = posixpath.dirname(rel)
            while folder and folder not in self.folders:
                self.folders.add(folder)
                stem, ext = posixpath.splitext(posixpath.basename(folder))
                if ext.lower() in VIDEO_EXTENSIONS:
                    self.folder_by_stem.setdefault(stem, []).append(folder)
                folder = posixpath.dirname(folder)

    def exact(self, rel: str) -> Found:
        """The listed path itself, with no search (the plain CSV names files exactly)."""
        if rel in self.paths:
            return Found(path=rel)
        if rel in self.folders:
            return _a_folder(rel)
        return Found(reason=MISSING_FILE, detail=f"looked for {rel!r} under the videos root")

    def frame_dirs(self) -> dict[str, list[str]]:
        """Folders that hold image frames, by folder name (built on first use: SSv1 only)."""
        if self._frame_dirs is None:
            dirs: dict[str, set[str]] = {}
            for rel in self.paths:
                folder, name = posixpath.split(rel)
                if folder and posixpath.splitext(name)[1].lower() in FRAME_EXTENSIONS:
                    dirs.setdefault(posixpath.basename(folder), set()).add(folder)
            self._frame_dirs = {k: sorted(v) for k, v in dirs.items()}
        return self._frame_dirs

    def find(self, stem: str, *, listed: str | None = None, hints: Iterable[str] = ()) -> Found:
        """Resolve a video by its listed relative path or else by file stem.

        Rule: an exact listed path wins; otherwise every video file whose name minus extension is
        ``stem`` is a candidate, anywhere under the root (per-split, per-label or flat layouts).
        Several candidates are narrowed to those whose path ends with ``listed`` or has a folder
        named like a hint (the split, the label); more than one left is ``ambiguous_file``.
        """
        if listed is not None and listed in self.paths:
            return Found(path=listed)
        candidates = self.by_stem.get(stem, [])
        if len(candidates) == 1:
            return Found(path=candidates[0])
        if not candidates:
            if listed in self.folders or self.folder_by_stem.get(stem):
                return _a_folder(listed if listed in self.folders else self.folder_by_stem[stem][0])
            where = f"{listed!r} or " if listed else ""
            return Found(reason=MISSING_FILE,
                         detail=f"looked for {where}a video named {stem!r}.* anywhere under the "
                                "videos root")
        return _narrow(candidates, listed, hints)

    def find_video_or_frames(self, name: str, hints: Iterable[str] = ()) -> Found:
        """A video file named ``name.*``, else a folder of frames named ``name`` (SSv1)."""
        found = self.find(name, hints=hints)
        if found.reason != MISSING_FILE:
            return found
        folders = self.frame_dirs().get(name, [])
        if len(folders) == 1:
            return Found(path=folders[0])
        if not folders:
            return Found(reason=MISSING_FILE,
                         detail=f"looked for a video {name!r}.* or a folder of frames {name!r} "
                                "anywhere under the videos root")
        return _narrow(folders, None, hints)


def _a_folder(rel: str) -> Found:
    """A row names a folder where a video file should be (``x.mp4/``): not a missing file."""
    return Found(reason=NOT_A_REGULAR_FILE, detail=f"{rel!r} is a folder, not a video file")


def _narrow(candidates: list[str], listed: str | None, hints: Iterable[str]) -> Found:
    if listed:
        tail = [c for c in candidates if c == listed or c.endswith("/" + listed)]
        if len(tail) == 1:
            return Found(path=tail[0])
    wanted = {h for h in hints if h}
    wanted |= {h.replace(" ", "_") for h in wanted}
    hinted = [c for c in candidates if wanted & set(c.split("/")[:-1])]
    if len(hinted) == 1:
        return Found(path=hinted[0])
    return Found(reason=AMBIGUOUS_FILE, detail=f"matches {_names(hinted or candidates)}")


# ---------------------------------------------------------------------------------- rows


@dataclass
class RowSink:
    """Collects a reader's rows, applying the shared checks in one fixed order.

    Order: missing id, id escaping the root, empty label, control characters in the label,
    unknown label, time range, repeated id (``duplicate`` with the same label,
    ``label_conflict`` with another), file lookup. An id counts as taken only once a row with it
    is accepted, so two rows for one missing file both say ``missing_file`` and a bad first row
    does not shadow a good second one.
    """

    known_labels: Container[str] | None = None
    records: list[VideoRecord] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    taken: dict[str, VideoRecord] = field(default_factory=dict)

    def reject(self, reason: str, *, source: str, video_id: str = "", label: str = "",
               split: str = "", detail: str = "") -> None:
        """Record a refused row; ``source`` points at the row (``file:line`` or ``file[i]``)."""
        self.rejected.append(RejectedRecord(video_id, source, label, split, reason, detail))

    def offer(
        self,
        *,
        source: str,
        video_id: str,
        label: str,
        split: str,
        find: Callable[[], Found],
        times: tuple[float, float] | None = None,
        keep_times: bool = False,
        id_is_name: bool = True,
    ) -> None:
        """Check one parsed row and keep it as a record or a rejection.

        ``id_is_name``: the id is a file-name component from the annotation (a Kinetics or
        Something-Something id), so a separator or ``..`` in it means it points outside the root.
        """
        def refuse(reason: str, detail: str = "") -> None:
            self.reject(reason, source=source, video_id=video_id, label=label, split=split,
                        detail=detail)

        if not video_id:
            return refuse(MALFORMED_ROW, "no video id")
        if id_is_name and not safe_name(video_id):
            return refuse(PATH_ESCAPES_ROOT, "the id is not a plain file name")
        if not label:
            return refuse(EMPTY_LABEL)
        if has_control_characters(label):
            return refuse(BAD_LABEL, f"control characters in {label!r}")
        if self.known_labels is not None and label not in self.known_labels:
            return refuse(UNKNOWN_LABEL, "not in the dataset's class list")
        if times is not None and not time_range_ok(*times):
            return refuse(BAD_TIME_RANGE, f"time_start={times[0]!r}, time_end={times[1]!r}")
        earlier = self.taken.get(video_id)
        if earlier is not None:
            if earlier.label != label:
                return refuse(LABEL_CONFLICT, f"already accepted as {earlier.label!r}")
            return refuse(DUPLICATE, "the id was already accepted from an earlier row")
        found = find()
        if found.path is None:
            return refuse(found.reason or MISSING_FILE, found.detail)
        start, end = times if (keep_times and times is not None) else (None, None)
        record = VideoRecord(video_id, found.path, label, start, end, split)
        self.taken[video_id] = record
        self.records.append(record)

    def result(self, class_names: Sequence[str] | None = None) -> Annotations:
        return Annotations(
            records=self.records,
            rejected=self.rejected,
            class_names=list(class_names) if class_names is not None else None,
        )


# --------------------------------------------------------------------------------- splits


@dataclass
class SplitFilter:
    """Keeps the rows of the requested split and remembers which splits it saw.

    Rows of other splits belong to another run of the job and are skipped silently; a request
    that matches none of the splits present is an error that names the ones that are.
    """

    wanted: str | None
    seen: set[str] = field(default_factory=set)

    def keep(self, row_split: str) -> bool:
        self.seen.add(row_split)
        return self.wanted is None or row_split == self.wanted

    def check(self, where: str) -> None:
        if self.wanted is not None and self.seen and self.wanted not in self.seen:
            raise AnnotationError(
                f"{where}: no rows of split {self.wanted!r}; splits present: {sorted(self.seen)}"
            )


def split_of_file(location: str, names: dict[str, str]) -> str | None:
    """Split named by a list file's name, from ``names`` (token in file name → split name)."""
    stem = base_name(location).lower()
    hits = {split for token, split in names.items() if re.search(rf"(^|[^a-z]){token}", stem)}
    return hits.pop() if len(hits) == 1 else None


def assign_file_splits(
    files: Sequence[str], names: dict[str, str], wanted: str | None, fmt: str
) -> list[tuple[str, str]]:
    """Pair each per-split list file with its split and apply the caller's ``split``.

    One file plus an explicit ``split``: the caller named its split, so that wins. Otherwise
    each file's split comes from its name and ``split`` selects among them.
    """
    if not files:
        raise AnnotationError(f"{fmt}: no split list file given")
    if wanted is not None and len(files) == 1:
        return [(files[0], wanted)]
    pairs: list[tuple[str, str]] = []
    for location in files:
        split = split_of_file(location, names)
        if split is None:
            raise AnnotationError(
                f"{fmt}: cannot tell the split of {location} from its name "
                f"(expected one of {sorted(set(names))} in it); pass it alone with split=NAME"
            )
        pairs.append((location, split))
    if wanted is None:
        return pairs
    chosen = [(loc, s) for loc, s in pairs if s == wanted]
    if not chosen:
        raise AnnotationError(
            f"{fmt}: no list file for split {wanted!r}; "
            f"files are for {sorted({s for _, s in pairs})}"
        )
    return chosen
