"""Annotation readers on small fixtures, including the awkward rows real datasets contain."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.annotations import (
    ANNOTATION_FORMATS,
    REASONS,
    AnnotationError,
    read_annotations,
)
from pipelines.data.records import Annotations


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def reasons(result: Annotations) -> dict[str, str]:
    """``source → reason`` of every rejection (sources name the row, so they are unique)."""
    out = {r.source: r.reason for r in result.rejected}
    assert len(out) == len(result.rejected)
    return out


def by_id(result: Annotations) -> dict[str, object]:
    out = {r.video_id: r for r in result.records}
    assert len(out) == len(result.records)
    return out


def test_registry_names_and_reason_codes() -> None:
    assert set(ANNOTATION_FORMATS) == {"kinetics", "ssv1", "ssv2", "ucf101", "hmdb51", "csv"}
    assert all(r.isidentifier() and r == r.lower() for r in REASONS)
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        read_annotations("kinetics700", [], set())


# ----------------------------------------------------------------------------------- Kinetics

KINETICS_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def test_kinetics_trimmed_awkward_labels_ids_and_layouts(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "train.csv", KINETICS_HEADER + (
        '"passing American football (in game)",-abc123def4,14,24,train,0\n'
        '"tying bow tie, fancy",xyz_0000001,0,10,train,0\n'
        "\"jumpin' jack's\",--dash-dash,5,15,train,1\n"
        '"café ☕",unicode_id1,3,13,train,0\n'
    ))
    available = {
        "train/-abc123def4_000014_000024.mp4",                    # per-split folder
        "tying bow tie, fancy/xyz_0000001_000000_000010.mp4",     # per-label folder
        "train/jumpin' jack's/--dash-dash_000005_000015.mkv",     # split/label, other container
        "unicode_id1_000003_000013.mp4",                          # flat
        "notes.txt",
    }
    result = read_annotations("kinetics", csv_path, available)
    assert result.rejected == [] and result.class_names is None
    got = by_id(result)
    rec = got["-abc123def4_000014_000024"]
    assert rec.path == "train/-abc123def4_000014_000024.mp4"
    assert rec.label == "passing American football (in game)"
    assert (rec.time_start, rec.time_end, rec.split) == (None, None, "train")
    assert got["xyz_0000001_000000_000010"].label == "tying bow tie, fancy"
    assert got["--dash-dash_000005_000015"].label == "jumpin' jack's"
    assert got["--dash-dash_000005_000015"].path.endswith(".mkv")
    assert got["unicode_id1_000003_000013"].label == "café ☕"


def test_kinetics_bad_rows_are_rejected_with_reasons_and_lose_nothing(tmp_path: Path) -> None:
    rows = [
        "good,okay_id_001,1,11,train",          # 2
        "missing,not_there_01,1,11,train",      # 3 missing_file
        ",empty_lbl_01,1,11,train",             # 4 empty_label
        "backwards,backwards01,20,10,train",    # 5 bad_time_range
        "zero,zero_len_01,10,10,train",         # 6 bad_time_range (nothing to cut)
        "good,okay_id_001,1,11,train",          # 7 duplicate
        "evil,../escape,1,11,train",            # 8 path_escapes_root
        "evil,sub/dir,1,11,train",              # 9 path_escapes_root
        "unquoted, comma,comma_id_1,1,11,train",  # 10 malformed_row (six columns)
        "nan,badtime_01,abc,11,train",          # 11 malformed_row
        "noid,,1,11,train",                     # 12 malformed_row (no id)
        "second,other_id_02,2,12,train",        # 13 ok
    ]
    csv_path = write(tmp_path, "k.csv", "label,youtube_id,time_start,time_end,split\n"
                     + "\n".join(rows) + "\n")
    available = {
        "okay_id_001_000001_000011.mp4",
        "other_id_02_000002_000012.mp4",
        "backwards01_000020_000010.mp4",
        "zero_len_01_000010_000010.mp4",
        "empty_lbl_01_000001_000011.mp4",
    }
    result = read_annotations("kinetics", csv_path, available)
    assert sorted(by_id(result)) == ["okay_id_001_000001_000011", "other_id_02_000002_000012"]
    src = str(csv_path)
    assert reasons(result) == {
        f"{src}:3": "missing_file",
        f"{src}:4": "empty_label",
        f"{src}:5": "bad_time_range",
        f"{src}:6": "bad_time_range",
        f"{src}:7": "duplicate",
        f"{src}:8": "path_escapes_root",
        f"{src}:9": "path_escapes_root",
        f"{src}:10": "malformed_row",
        f"{src}:11": "malformed_row",
        f"{src}:12": "malformed_row",
    }
    dup = next(r for r in result.rejected if r.reason == "duplicate")
    assert (dup.video_id, dup.label, dup.split) == ("okay_id_001_000001_000011", "good", "train")


def test_kinetics_untrimmed_sources_carry_times(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "val.csv",
                     "label,youtube_id,time_start,time_end,split\n"
                     "abseiling,-src0000001,14,24,val\n"
                     "abseiling,-src0000001,30.5,40.5,val\n"
                     "abseiling,gone0000001,1,11,val\n")
    available = {"raw/-src0000001.mp4", "raw/-src0000001_000014_000024.mp4"}
    result = read_annotations("kinetics", csv_path, available, trimmed=False)
    got = by_id(result)
    first = got["-src0000001_000014_000024"]
    second = got["-src0000001_000030_000040"]
    assert first.path == second.path == "raw/-src0000001.mp4"
    assert (first.time_start, first.time_end) == (14.0, 24.0)
    assert (second.time_start, second.time_end) == (30.5, 40.5)
    assert [r.reason for r in result.rejected] == ["missing_file"]


def test_kinetics_headerless_and_split_selection(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "all.csv",
                     "a,id_train_01,0,10,train\n"
                     "b,id_valid_01,0,10,val\n"
                     "\n"
                     "b,id_valid_02,0,10,val\n")
    available = {f"{s}/{i}_000000_000010.mp4"
                 for s, i in [("train", "id_train_01"), ("val", "id_valid_01"),
                              ("val", "id_valid_02")]}
    everything = read_annotations("kinetics", csv_path, available)
    assert {r.split for r in everything.records} == {"train", "val"}
    val = read_annotations("kinetics", csv_path, available, split="val")
    assert sorted(by_id(val)) == ["id_valid_01_000000_000010", "id_valid_02_000000_000010"]
    assert val.rejected == []  # rows of other splits are not this run's business
    with pytest.raises(AnnotationError, match=r"split 'validate'.*\['train', 'val'\]"):
        read_annotations("kinetics", csv_path, available, split="validate")


def test_kinetics_same_name_in_two_folders(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "k.csv", "label,youtube_id,time_start,time_end,split\n"
                     "a,twice000001,0,10,train\n"
                     "a,thrice00001,0,10,train\n")
    available = {
        "train/twice000001_000000_000010.mp4", "val/twice000001_000000_000010.mp4",
        "x/thrice00001_000000_000010.mp4", "y/thrice00001_000000_000010.mp4",
    }
    result = read_annotations("kinetics", csv_path, available)
    assert [r.path for r in result.records] == ["train/twice000001_000000_000010.mp4"]
    assert [r.reason for r in result.rejected] == ["ambiguous_file"]


def test_kinetics_missing_header_column_is_a_clear_error(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "k.csv", "youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    with pytest.raises(AnnotationError, match=r"lacks column\(s\) \['label'\]"):
        read_annotations("kinetics", csv_path, {"abc_000000_000010.mp4"})


# ----------------------------------------------------------------------------- Something V2


def _ssv2_files(tmp_path: Path) -> list[Path]:
    labels = write(tmp_path, "something-something-v2-labels.json", json.dumps({
        "Putting something on a surface": "1",
        "Holding something next to something": "0",
        "Pretending to pick something up": "2",
    }))
    train = write(tmp_path, "something-something-v2-train.json", json.dumps([
        {"id": "101", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]",
         "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "102", "label": "putting a cup on a table",
         "template": "Putting [something] on a surface", "placeholders": ["a cup"]},
        {"id": "103", "label": "x", "template": "Juggling [something]"},
        {"label": "no id", "template": "Putting [something] on a surface"},
        {"id": "../104", "template": "Putting [something] on a surface"},
        {"id": "105", "template": "Putting [something] on a surface"},
        {"id": 106, "template": "Pretending to pick [something] up"},
    ]))
    validation = write(tmp_path, "something-something-v2-validation.json", json.dumps([
        {"id": "201", "template": "Holding [something] next to [something]"},
    ]))
    test = write(tmp_path, "something-something-v2-test.json", json.dumps([{"id": "301"}]))
    return [labels, train, validation, test]


SSV2_AVAILABLE = {f"20bn-something-something-v2/{i}.webm" for i in (101, 102, 103, 106, 201, 301)}


def test_ssv2_templates_order_and_rejections(tmp_path: Path) -> None:
    files = _ssv2_files(tmp_path)
    result = read_annotations("ssv2", files, SSV2_AVAILABLE)
    assert result.class_names == ["Holding something next to something",
                                  "Putting something on a surface",
                                  "Pretending to pick something up"]
    got = by_id(result)
    assert got["101"].label == "Holding something next to something"
    assert got["101"].path == "20bn-something-something-v2/101.webm"
    assert got["106"].label == "Pretending to pick something up"
    assert {r.video_id: r.split for r in result.records} == {
        "101": "train", "102": "train", "106": "train", "201": "validation"}
    train_src = str(files[1])
    assert reasons(result) == {
        f"{train_src}[2]": "unknown_label",
        f"{train_src}[3]": "malformed_row",
        f"{train_src}[4]": "path_escapes_root",
        f"{train_src}[5]": "missing_file",
        f"{files[3]}[0]": "empty_label",
    }


def test_ssv2_split_selection_and_bad_label_file(tmp_path: Path) -> None:
    files = _ssv2_files(tmp_path)
    val = read_annotations("ssv2", files, SSV2_AVAILABLE, split="validation")
    assert [(r.video_id, r.split) for r in val.records] == [("201", "validation")]
    # A single list file takes the split the caller names.
    single = read_annotations("ssv2", [files[0], files[2]], SSV2_AVAILABLE, split="holdout")
    assert [r.split for r in single.records] == ["holdout"]
    bad = write(tmp_path / "bad", "something-something-v2-labels.json",
                json.dumps({"a": "0", "b": "2"}))
    with pytest.raises(AnnotationError, match="label indices"):
        read_annotations("ssv2", [bad, files[1]], SSV2_AVAILABLE)
    broken = write(tmp_path / "bad", "something-something-v2-train.json", "[{")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_annotations("ssv2", [files[0], broken], SSV2_AVAILABLE)


# ----------------------------------------------------------------------------- Something V1


def test_ssv1_semicolon_lists_with_frame_folders_and_videos(tmp_path: Path) -> None:
    labels = write(tmp_path, "something-something-v1-labels.csv",
                   "Holding something\nPutting something on a surface\n")
    train = write(tmp_path, "something-something-v1-train.csv",
                  "100;Holding something\n"
                  "101;Putting something on a surface\n"
                  "102;Juggling something\n"
                  "103;Holding something\n"
                  ";Holding something\n")
    validation = write(tmp_path, "something-something-v1-validation.csv",
                       "200;Putting something on a surface\n")
    root = "20bn-something-something-v1"
    available = {f"{root}/100/00001.jpg", f"{root}/100/00002.jpg", "videos/101.webm",
                 f"{root}/200/00001.jpg"}
    result = read_annotations("ssv1", [labels, train, validation], available)
    assert result.class_names == ["Holding something", "Putting something on a surface"]
    got = by_id(result)
    assert got["100"].path == f"{root}/100"          # a folder of frames
    assert got["101"].path == "videos/101.webm"      # or a video
    assert (got["200"].split, got["200"].label) == ("validation", "Putting something on a surface")
    assert reasons(result) == {f"{train}:3": "unknown_label", f"{train}:4": "missing_file",
                               f"{train}:5": "malformed_row"}


# ------------------------------------------------------------------------------------ UCF-101


def _ucf_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    class_ind = write(tmp_path, "classInd.txt",
                      "1 ApplyEyeMakeup\n2 ApplyLipstick\n3 HandstandPushups\n")
    train = write(tmp_path, "trainlist01.txt",
                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                  "ApplyLipstick/v_ApplyLipstick_g01_c01.avi 1\n"
                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 7\n"
                  "../outside/v_x_g01_c01.avi 1\n"
                  "ApplyLipstick/v_ApplyLipstick_g02_c01.avi 2\n"
                  "ApplyLipstick/v_ApplyLipstick_g03_c01.avi two\n")
    test = write(tmp_path, "testlist01.txt",
                 "HandstandPushups/v_HandStandPushups_g01_c01.avi\n"
                 "NotAClass/v_NotAClass_g01_c01.avi\n")
    return class_ind, train, test


def test_ucf101_class_index_lists_and_bad_lines(tmp_path: Path) -> None:
    class_ind, train, test = _ucf_files(tmp_path)
    available = {
        "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "UCF-101/ApplyLipstick/v_ApplyLipstick_g02_c01.avi",
        "UCF-101/ApplyLipstick/v_ApplyLipstick_g01_c01.avi",
        "UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.mp4",  # converted container
        "UCF-101/NotAClass/v_NotAClass_g01_c01.avi",
    }
    result = read_annotations("ucf101", [class_ind, train, test], available)
    assert result.class_names == ["ApplyEyeMakeup", "ApplyLipstick", "HandstandPushups"]
    got = by_id(result)
    assert got["v_ApplyEyeMakeup_g08_c01"].label == "ApplyEyeMakeup"
    assert got["v_ApplyEyeMakeup_g08_c01"].split == "train"
    assert got["v_ApplyLipstick_g02_c01"].label == "ApplyLipstick"
    test_rec = got["v_HandStandPushups_g01_c01"]
    assert (test_rec.label, test_rec.split) == ("HandstandPushups", "test")
    assert test_rec.path == "UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.mp4"
    assert reasons(result) == {
        f"{train}:2": "label_conflict",
        f"{train}:3": "unknown_label",
        f"{train}:4": "path_escapes_root",
        f"{train}:6": "malformed_row",
        f"{test}:2": "unknown_label",
    }
    only_test = read_annotations("ucf101", [class_ind, train, test], available, split="test")
    assert {r.split for r in only_test.records} == {"test"}


def test_ucf101_refuses_mixed_folds_and_missing_class_index(tmp_path: Path) -> None:
    class_ind, train, _ = _ucf_files(tmp_path)
    other = write(tmp_path, "testlist02.txt", "ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")
    with pytest.raises(AnnotationError, match="several folds"):
        read_annotations("ucf101", [class_ind, train, other], set())
    with pytest.raises(AnnotationError, match="classInd.txt"):
        read_annotations("ucf101", [train], set())
    with pytest.raises(AnnotationError, match="trimmed"):
        read_annotations("ucf101", [class_ind, train], set(), trimmed=False)


# ------------------------------------------------------------------------------------ HMDB-51


def test_hmdb51_split_flags_unused_rows_and_folders(tmp_path: Path) -> None:
    splits = tmp_path / "testTrainMulti_7030_splits"
    write(splits, "brush_hair_test_split1.txt",
          "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
          "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi 2 \n"
          "never_used_brush_hair_0.avi 0 \n"
          "odd_flag_brush_hair_0.avi 7 \n"
          "missing_brush_hair_0.avi 1 \n")
    write(splits, "cartwheel_test_split1.txt",
          "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 1 \n")
    write(splits, "cartwheel_test_split2.txt", "other_fold.avi 1\n")
    available = {
        "hmdb51/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "hmdb51/brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
        "hmdb51/cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi",
    }
    pattern = str(splits / "*_test_split1.txt")
    result = read_annotations("hmdb51", pattern, available)
    assert result.class_names is None
    assert {(r.video_id, r.label, r.split) for r in result.records} == {
        ("April_09_brush_hair_u_nm_np1_ba_goo_0", "brush_hair", "train"),
        ("Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0", "brush_hair", "test"),
        ("(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0", "cartwheel", "train"),
    }
    brush = str(splits / "brush_hair_test_split1.txt")
    assert reasons(result) == {f"{brush}:4": "malformed_row", f"{brush}:5": "missing_file"}
    test_only = read_annotations("hmdb51", pattern, available, split="test")
    assert [r.split for r in test_only.records] == ["test"]
    with pytest.raises(AnnotationError, match="several folds"):
        read_annotations("hmdb51", splits, available)  # the directory holds folds 1 and 2
    stray = write(tmp_path, "README.txt", "hello")
    with pytest.raises(AnnotationError, match="_test_split"):
        read_annotations("hmdb51", [stray], available)


# -------------------------------------------------------------------------------- path,label


def test_csv_with_header_awkward_labels_and_escaping_paths(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "list.csv", (
        "path,label\n"
        'videos/a.mp4,"label, with comma"\n'
        "videos/b.mp4,it's fine\n"
        "../x.mp4,a\n"
        "/abs/x.mp4,a\n"
        "s3://bucket/x.mp4,a\n"
        "videos/missing.mp4,a\n"
        "videos/a.mp4,again\n"
        "videos/c.mp4,\n"
        'videos/sub/../d.mp4,"naïve ☕ ""quoted"""\n'
        "videos/e.mp4,a,extra\n"
    ))
    available = {"videos/a.mp4", "videos/b.mp4", "videos/c.mp4", "videos/d.mp4", "videos/e.mp4"}
    result = read_annotations("csv", csv_path, available)
    got = by_id(result)
    assert got["videos/a.mp4"].label == "label, with comma"  # the id keeps the extension
    assert got["videos/b.mp4"].label == "it's fine"
    assert got["videos/d.mp4"].label == 'naïve ☕ "quoted"'
    assert got["videos/d.mp4"].path == "videos/d.mp4"
    src = str(csv_path)
    assert reasons(result) == {
        f"{src}:4": "path_escapes_root",
        f"{src}:5": "path_escapes_root",
        f"{src}:6": "path_escapes_root",
        f"{src}:7": "missing_file",
        f"{src}:8": "label_conflict",  # a repeated id with another label
        f"{src}:9": "empty_label",
        f"{src}:11": "malformed_row",
    }


def test_csv_without_header_and_with_split_column(tmp_path: Path) -> None:
    plain = write(tmp_path, "plain.csv", "a.mp4,cat\r\nb.mp4,dog\r\n")
    result = read_annotations("csv", plain, {"a.mp4", "b.mp4"}, split="val")
    assert [(r.path, r.label, r.split) for r in result.records] == [
        ("a.mp4", "cat", "val"), ("b.mp4", "dog", "val")]
    with_split = write(tmp_path, "split.csv",
                       "video,class,split\na.mp4,cat,train\nb.mp4,dog,test\n")
    result = read_annotations("csv", with_split, {"a.mp4", "b.mp4"}, split="test")
    assert [(r.path, r.split) for r in result.records] == [("b.mp4", "test")]


def test_csv_reads_fsspec_uris(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://tsi-tests/list.csv", "w") as fh:
        fh.write("path,label\nx.mp4,cat\n")
    result = read_annotations("csv", "memory://tsi-tests/list.csv", {"x.mp4"})
    assert [(r.path, r.label) for r in result.records] == [("x.mp4", "cat")]


# ---------------------------------------------------------------------------- file-level errors


def test_unreadable_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="does not exist"):
        read_annotations("csv", tmp_path / "nope.csv", set())
    empty = write(tmp_path, "empty.csv", "path,label\n")
    with pytest.raises(AnnotationError, match="no annotation rows"):
        read_annotations("csv", empty, set())
    latin1 = write(tmp_path, "latin1.csv", "path,label\nx.mp4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match="not valid UTF-8"):
        read_annotations("csv", latin1, {"x.mp4"})
    good = write(tmp_path, "good.csv", "x.mp4,cat\n")
    with pytest.raises(AnnotationError, match="listing entry"):
        read_annotations("csv", good, {"../x.mp4"})
    bom = write(tmp_path, "bom.csv", "\ufeffpath,label\nx.mp4,cat\n")
    assert [r.label for r in read_annotations("csv", bom, {"./x.mp4"}).records] == ["cat"]


def test_labels_are_nfc_and_control_characters_are_refused(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "k.csv", (
        "label,youtube_id,time_start,time_end,split\n"
        "café,aaa,0,10,train\n"
        "cafe\u0301,bbb,0,10,train\n"         # the same class typed with a combining accent
        '"tab\there",ccc,0,10,train\n'
        "bidi\u202eevil,ddd,0,10,train\n"
    ))
    available = {f"{v}_000000_000010.mp4" for v in ("aaa", "bbb", "ccc", "ddd")}
    result = read_annotations("kinetics", csv_path, available)
    assert {r.label for r in result.records} == {"café"}
    assert [r.reason for r in result.rejected] == ["bad_label", "bad_label"]
    assert "control characters" in result.rejected[0].detail


def test_repeated_id_is_duplicate_or_label_conflict_and_details_say_what_was_looked_for(
        tmp_path: Path) -> None:
    csv_path = write(tmp_path, "k.csv", (
        "label,youtube_id,time_start,time_end,split\n"
        "a,vid,0,10,train\n"
        "a,vid,0,10,train\n"
        "b,vid,0,10,train\n"
        "a,gone,0,10,train\n"
        "a,late,20,10,train\n"
    ))
    result = read_annotations("kinetics", csv_path, {"vid_000000_000010.mp4"})
    got = {r.source.rsplit(":", 1)[1]: r for r in result.rejected}
    assert (got["3"].reason, got["4"].reason) == ("duplicate", "label_conflict")
    assert "already accepted as 'a'" in got["4"].detail
    assert got["5"].reason == "missing_file" and "'gone_000000_000010'" in got["5"].detail
    assert got["6"].reason == "bad_time_range"
    assert got["6"].detail == "time_start=20.0, time_end=10.0"


def test_csv_twin_extensions_are_two_samples_and_padded_names_resolve(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "list.csv", "path,label\nx.mp4,a\nx.mkv,a\n lead.mp4,a\ntrail.mp4 ,a\n")
    available = {"x.mp4", "x.mkv", " lead.mp4", "trail.mp4"}
    result = read_annotations("csv", csv_path, available)
    assert sorted(r.path for r in result.records) == [" lead.mp4", "trail.mp4", "x.mkv", "x.mp4"]
    assert len({r.video_id for r in result.records}) == 4 and not result.rejected


def test_file_uri_annotations_are_local(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "list.csv", "path,label\nx.mp4,a\n")
    result = read_annotations("csv", f"file://{csv_path}", {"x.mp4"})
    assert [r.path for r in result.records] == ["x.mp4"]
