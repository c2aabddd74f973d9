"""The dataset's class map (label name ↔ index), deterministic and shared by every split.

Rule (shard contract): the dataset's own class order where it defines one (UCF-101
``classInd.txt``, Something-Something label files), else label names sorted by Unicode code point
(Python's ``sorted``, never locale collation) over every annotation file given, or an explicit
``--classes FILE``. A later split run reuses the ``classes.json`` already written and refuses the
labels it does not know: :meth:`ClassMap.restrict` turns them into ``unknown_label`` rejections.

``classes.json`` layout (UTF-8, non-ASCII kept as is, one name per line, index = position)::

    {
      "format": "tsi-classes",
      "version": 1,
      "num_classes": 3,
      "classes": [
        "abseiling",
        "passing American football (in game)",
        "tying bow tie"
      ]
    }

:meth:`ClassMap.load` (for ``--classes FILE``) also reads a plain text file with one name per
line (blank lines ignored, surrounding whitespace stripped; ``.txt`` is always read as text), a
JSON list of names, or a JSON object ``{name: index}`` such as the SSv2 label file.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pipelines.data.annotations._common import clean_label, has_control_characters
from pipelines.data.reasons import UNKNOWN_LABEL, UNTRUSTED_LABEL_REASONS
from pipelines.data.records import Annotations, RejectedRecord
from pipelines.io import read_bytes, write_bytes

FORMAT_NAME = "tsi-classes"
FORMAT_VERSION = 1


class ClassMapError(ValueError):
    """A class map that is invalid or contradicts the one the dataset already uses."""


@dataclass(frozen=True)
class ClassMap:
    """Ordered, unique, non-empty class names; a label's index is its position."""

    names: tuple[str, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        bad = [n for n in names if not isinstance(n, str) or not n.strip() or n != n.strip()
               or has_control_characters(n)]
        if bad:
            raise ClassMapError(
                f"class names must be non-empty, unpadded strings without control characters: "
                f"{bad[:5]}")
        positions = {name: i for i, name in enumerate(names)}
        if len(positions) != len(names):
            dupes = sorted(n for n, count in Counter(names).items() if count > 1)
            raise ClassMapError(f"class names repeat: {dupes[:5]}")
        if not names:
            raise ClassMapError("a class map needs at least one class")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_positions", positions)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, label: object) -> bool:
        return label in self._positions

    def index(self, label: str) -> int:
        """Index of ``label``; ``KeyError`` naming the label if the map does not know it."""
        try:
            return self._positions[label]
        except KeyError:
            raise KeyError(
                f"label {label!r} is not in the class map ({len(self)} classes)"
            ) from None

    def name(self, index: int) -> str:
        return self.names[index]

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the ordered names: the class-map hash that models and runs are tagged with."""
        canonical = json.dumps(list(self.names), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------------ building

    @classmethod
    def from_annotations(cls, annotations: Annotations | Iterable[Annotations]) -> ClassMap:
        """The dataset-defined order if a reader set one, else sorted label names.

        Labels of rows rejected for file problems (missing, duplicate, bad times…) count, so the
        map depends on the annotation files and not on which videos happen to be present.
        """
        parts = [annotations] if isinstance(annotations, Annotations) else list(annotations)
        defined = {tuple(a.class_names) for a in parts if a.class_names is not None}
        if len(defined) > 1:
            raise ClassMapError("annotation files define different class lists")
        if defined:
            return cls(defined.pop())
        labels = {r.label for a in parts for r in a.records}
        labels |= {r.label for a in parts for r in a.rejected
                   if r.label and r.reason not in UNTRUSTED_LABEL_REASONS}
        if not labels:
            raise ClassMapError("no labelled rows to build a class map from")
        return cls(tuple(sorted(labels)))

    def restrict(self, annotations: Annotations) -> Annotations:
        """Move records whose label this map does not know to ``unknown_label`` rejections."""
        kept = [r for r in annotations.records if r.label in self]
        refused = [RejectedRecord(r.video_id, r.path, r.label, r.split, UNKNOWN_LABEL,
                                  f"not in the dataset's {len(self)}-class classes.json")
                   for r in annotations.records if r.label not in self]
        return Annotations(records=kept, rejected=list(annotations.rejected) + refused,
                           class_names=list(self.names))

    # ------------------------------------------------------------------------ files

    def to_json(self) -> str:
        body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "num_classes": len(self),
                "classes": list(self.names)}
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        """Write ``classes.json`` at a path or URI (locally via a temporary name and a rename)."""
        write_bytes(str(path), self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> ClassMap:
        """Read ``classes.json`` or another class list (see the module docstring)."""
        target = str(path)
        try:
            text = read_bytes(target).decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClassMapError(f"cannot read class list {target}: {exc}") from exc
        return cls.parse(text, where=target)

    @classmethod
    def parse(cls, text: str, where: str = "<text>") -> ClassMap:
        """Class map from the text of any accepted class-list file."""
        stripped = text.strip()
        suffix = where.lower().rsplit(".", 1)[-1]
        if suffix == "json" or (suffix != "txt" and stripped[:1] in ("{", "[")):
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ClassMapError(f"{where}: not valid JSON ({exc})") from exc
            return cls(tuple(_nfc(n) for n in _names_from_json(data, where)))
        return cls(tuple(clean_label(line) for line in text.splitlines() if line.strip()))


def _nfc(name: str) -> str:
    """Class lists from files are NFC-normalised like annotation labels, so both spellings match."""
    return unicodedata.normalize("NFC", name)


def _names_from_json(data: Any, where: str) -> tuple[str, ...]:
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return tuple(data)
    if isinstance(data, dict) and "classes" in data:
        if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ClassMapError(f"{where}: unsupported classes.json version {data.get('version')}")
        names = data["classes"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClassMapError(f"{where}: 'classes' must be a list of strings")
        if "num_classes" in data and data["num_classes"] != len(names):
            raise ClassMapError(f"{where}: num_classes {data['num_classes']} != {len(names)} names")
        return tuple(names)
    if isinstance(data, dict) and data:
        try:
            by_index = {int(v): k for k, v in data.items()}
        except (TypeError, ValueError):
            by_index = {}
        if sorted(by_index) == list(range(len(data))):
            return tuple(by_index[i] for i in range(len(data)))
    raise ClassMapError(
        f"{where}: expected a classes.json object, a JSON list of names or a {{name: index}} map"
    )


def merge_or_check(
    annotations: Annotations | Iterable[Annotations],
    *,
    existing: ClassMap | None = None,
    explicit: ClassMap | None = None,
) -> ClassMap:
    """Decide the class map of a run: explicit file, else the dataset's existing one, else new.

    A map already written for the dataset (``existing``) is reused as is; it must agree with an
    explicit ``--classes`` file and with a class list the dataset itself defines, because every
    split of one dataset must share the same indices. Apply :meth:`ClassMap.restrict` afterwards
    so labels outside the map become ``unknown_label`` rows.
    """
    if explicit is not None and existing is not None and explicit != existing:
        raise ClassMapError(
            "the --classes file differs from the classes.json already in the output; "
            "use a new output or the same class list"
        )
    if explicit is not None:
        return explicit
    if existing is None:
        return ClassMap.from_annotations(annotations)
    parts = [annotations] if isinstance(annotations, Annotations) else list(annotations)
    for part in parts:
        if part.class_names is not None and tuple(part.class_names) != existing.names:
            raise ClassMapError(
                "the dataset's class list differs from the classes.json already in the output"
            )
    return existing
