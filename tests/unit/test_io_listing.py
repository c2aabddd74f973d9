"""Listing a local videos root: symbolic links can neither loop, duplicate nor escape the root."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from pipelines.io import ListingProblem, PathEscapesRoot, Storage

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """A videos root full of links, and a folder outside it."""
    root, outside = tmp_path / "videos", tmp_path / "outside"
    for folder in (root / "a", root / "b" / "deep", outside):
        folder.mkdir(parents=True)
    for path in (root / "a" / "x.mp4", root / "b" / "deep" / "y.mp4", outside / "z.mp4"):
        path.write_bytes(b"v")
    links = {
        "current": ".",               # a loop at the top
        "a/up": "..",                 # a link to a parent folder: a loop
        "alias": "b",                 # a second name for a listed folder
        "out": "../outside",          # a folder outside the root
        "b/inside.mp4": "../a/x.mp4",  # a file link inside the root: listed
        "escape.mp4": str(outside / "z.mp4"),  # a file link outside: listed and reported
        "dangling.mp4": "nowhere.mp4",
        "self": "self",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root, outside


def test_links_neither_loop_nor_duplicate_nor_escape(tree):
    root, _ = tree
    files, problems = Storage.open(str(root)).list_tree()
    assert files == ["a/x.mp4", "b/deep/y.mp4", "b/inside.mp4", "escape.mp4"]
    kinds = {p.path: p.kind for p in problems}
    assert kinds == {
        "current": "symlink_loop", "a/up": "symlink_loop", "self": "symlink_loop",
        "alias": "symlink_alias", "out": "link_escapes_root", "escape.mp4": "link_escapes_root",
        "dangling.mp4": "broken_link",
    }
    assert all(isinstance(p, ListingProblem) and p.detail for p in problems)


def test_list_files_logs_what_it_skipped(tree, caplog):
    root, _ = tree
    with caplog.at_level(logging.WARNING, logger="tsi.io"):
        files = Storage.open(str(root)).list_files()
    assert files == ["a/x.mp4", "b/deep/y.mp4", "b/inside.mp4", "escape.mp4"]
    assert "skipped 7 links/folders" in caplog.text and "symlink_loop" in caplog.text


def test_subfolder_listings(tree):
    root, _ = tree
    store = Storage.open(str(root))
    assert store.list_files("b", recursive=False) == ["inside.mp4"]
    assert store.list_files("alias") == ["deep/y.mp4", "inside.mp4"]  # named directly: fine
    files, problems = store.list_tree("out")
    assert files == [] and [p.kind for p in problems] == ["link_escapes_root"]
    assert store.list_files("missing") == []


def test_link_to_a_folder_not_reached_otherwise_is_followed(tmp_path):
    root = tmp_path / "root"
    hidden = root / "locked" / "inner"
    hidden.mkdir(parents=True)
    (hidden / "v.mp4").write_bytes(b"v")
    os.symlink(hidden, root / "via")
    os.chmod(root / "locked", 0o111)  # traversable, not listable
    try:
        if os.access(root / "locked", os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        files, problems = Storage.open(str(root)).list_tree()
    finally:
        os.chmod(root / "locked", 0o755)
    assert files == ["via/v.mp4"]
    assert [(p.path, p.kind) for p in problems] == [("locked", "unreadable_dir")]


def test_deep_tree_is_walked_without_recursion(tmp_path):
    depth = 1500  # deeper than Python's recursion limit; the path stays under PATH_MAX
    top = deep = str(tmp_path / "root")
    os.mkdir(top)
    for _ in range(depth):  # os.makedirs and shutil.rmtree recurse: build and remove by hand
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    with open(os.path.join(deep, "v.mp4"), "wb") as fh:
        fh.write(b"v")
    try:
        began = time.perf_counter()
        files = Storage.open(top).list_files()
        assert files == ["/".join(["d"] * depth) + "/v.mp4"]
        assert time.perf_counter() - began < 5
    finally:
        os.unlink(os.path.join(deep, "v.mp4"))
        while deep != top:
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_real_path_accepts_inside_and_refuses_outside(tree, tmp_path):
    root, outside = tree
    real = Path(os.path.realpath(root))
    store = Storage.open(str(root))
    assert store.real_path("a/x.mp4") == str(real / "a" / "x.mp4")
    assert store.real_path("b/inside.mp4") == str(real / "a" / "x.mp4")
    assert store.real_path("alias/deep/y.mp4") == str(real / "b" / "deep" / "y.mp4")
    assert store.real_path("not/there.mp4") == str(real / "not" / "there.mp4")
    for rel in ("escape.mp4", "out/z.mp4", "../outside/z.mp4", "/etc/passwd"):
        with pytest.raises(PathEscapesRoot) as info:
            store.real_path(rel)
        assert isinstance(info.value, ValueError)
        assert str(real) in str(info.value) and not info.value.real.startswith(str(real) + "/")
    # a root that is itself a link is judged by its real path
    os.symlink(root, tmp_path / "root-link")
    linked = Storage.open(str(tmp_path / "root-link"))
    assert linked.real_path("a/x.mp4") == str(real / "a" / "x.mp4")
    assert linked.list_files() == store.list_files()


def test_object_store_real_path_is_its_path():
    # listing object stores is covered against a real S3 server in test_s3.py
    store = Storage.open("memory://tsi-listing-test/videos")
    assert not store.is_local
    assert store.real_path("a/../../x.mp4") == store.path("a/../../x.mp4")
