"""Class map: deterministic order, exact names on disk, and the later-split-run rule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.classes import ClassMap, ClassMapError, merge_or_check
from pipelines.data.records import Annotations, RejectedRecord, VideoRecord

AWKWARD = ("passing American football (in game)", "tying bow tie, fancy", "jumpin' jack's",
           "café ☕", 'say "hi"')


def ann(*labels: str, class_names: list[str] | None = None,
        rejected: tuple[tuple[str, str], ...] = ()) -> Annotations:
    records = [VideoRecord(f"v{i}", f"v{i}.mp4", label) for i, label in enumerate(labels)]
    refused = [RejectedRecord(f"r{i}", f"a.csv:{i}", label, "train", reason)
               for i, (label, reason) in enumerate(rejected)]
    return Annotations(records=records, rejected=refused, class_names=class_names)


def test_sorted_labels_over_all_files_unless_the_dataset_defines_an_order() -> None:
    cmap = ClassMap.from_annotations([ann("b", "a"), ann("c", "a")])
    assert cmap.names == ("a", "b", "c")
    assert [cmap.index(n) for n in ("a", "b", "c")] == [0, 1, 2]
    assert ClassMap.from_annotations(ann("b", "a", class_names=["b", "z", "a"])).names == (
        "b", "z", "a")
    with pytest.raises(ClassMapError, match="different class lists"):
        ClassMap.from_annotations([ann(class_names=["a"]), ann(class_names=["b"])])


def test_labels_of_file_problems_count_but_bad_labels_do_not() -> None:
    cmap = ClassMap.from_annotations(ann("b", rejected=(
        ("a", "missing_file"), ("d", "duplicate"), ("x", "unknown_label"),
        ("y", "malformed_row"), ("", "empty_label"))))
    assert cmap.names == ("a", "b", "d")
    with pytest.raises(ClassMapError, match="no labelled rows"):
        ClassMap.from_annotations(ann(rejected=(("y", "malformed_row"),)))


def test_sort_is_by_code_point_not_locale() -> None:
    assert ClassMap.from_annotations(ann("b", "B", "á", "a")).names == ("B", "a", "b", "á")


def test_save_load_round_trip_keeps_exact_names_and_is_readable(tmp_path: Path) -> None:
    cmap = ClassMap(AWKWARD)
    path = tmp_path / "out" / "classes.json"
    cmap.save(path)
    text = path.read_text(encoding="utf-8")
    assert "café ☕" in text  # not \u-escaped
    assert json.loads(text) == {"format": "tsi-classes", "version": 1,
                                "num_classes": len(AWKWARD), "classes": list(AWKWARD)}
    assert ClassMap.load(path) == cmap
    assert [p.name for p in path.parent.iterdir()] == ["classes.json"]  # no temp files left
    assert cmap.digest == ClassMap.load(path).digest
    assert cmap.digest != ClassMap(tuple(reversed(AWKWARD))).digest


def test_load_accepts_plain_text_lists_and_name_index_maps(tmp_path: Path) -> None:
    text = tmp_path / "classes.txt"
    text.write_bytes("tying bow tie, fancy\r\n\r\njumpin' jack's\r\ncafé ☕\n".encode())
    assert ClassMap.load(text).names == ("tying bow tie, fancy", "jumpin' jack's", "café ☕")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["b", "a"]))
    assert ClassMap.load(listed).names == ("b", "a")
    mapping = tmp_path / "labels.json"
    mapping.write_text(json.dumps({"Holding something": "1", "Putting something": "0"}))
    assert ClassMap.load(mapping).names == ("Putting something", "Holding something")


@pytest.mark.parametrize("name, content, message", [
    ("classes.json", "{broken", "not valid JSON"),
    ("classes.json", "", "not valid JSON"),
    ("classes.json", '{"version": 1, "num_classes": 3, "classes": ["a", "b"]}', "num_classes 3"),
    ("classes.json", '{"version": 2, "classes": ["a"]}', "unsupported"),
    ("classes.json", '["a", "a"]', "repeat"),
    ("classes.txt", "\n\n", "at least one class"),
    ("classes.txt", "a\nb\na\n", "repeat"),
])
def test_bad_class_files_are_clear_errors(tmp_path: Path, name: str, content: str,
                                          message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ClassMapError, match=message):
        ClassMap.load(path)


def test_index_of_unknown_label_names_it() -> None:
    with pytest.raises(KeyError, match="'nope'"):
        ClassMap(("a",)).index("nope")


def test_later_split_reuses_existing_map_and_rejects_unknown_labels() -> None:
    train = ann("b", "a")
    existing = merge_or_check(train)
    assert existing.names == ("a", "b")
    val = ann("a", "new label", "b")
    cmap = merge_or_check(val, existing=existing)
    assert cmap is existing
    restricted = cmap.restrict(val)
    assert [r.label for r in restricted.records] == ["a", "b"]
    assert [(r.video_id, r.label, r.reason) for r in restricted.rejected] == [
        ("v1", "new label", "unknown_label")]
    assert restricted.class_names == ["a", "b"]


def test_explicit_classes_win_but_must_match_an_existing_map() -> None:
    explicit = ClassMap(("z", "a"))
    assert merge_or_check(ann("a", class_names=["a", "b"]), explicit=explicit) is explicit
    with pytest.raises(ClassMapError, match="--classes"):
        merge_or_check(ann("a"), existing=ClassMap(("a",)), explicit=explicit)
    assert merge_or_check(ann("a"), existing=explicit, explicit=ClassMap(("z", "a"))) == explicit
    with pytest.raises(ClassMapError, match="class list differs"):
        merge_or_check(ann("a", class_names=["a", "b"]), existing=ClassMap(("b", "a")))
