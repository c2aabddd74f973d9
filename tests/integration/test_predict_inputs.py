"""What ``jobs.predict`` reads: a list never reaches outside its folder through a link, and a
video whose name looks like an override (``v=1.mp4``) is still a video.

The videos and the model are the session's colour dataset and its tiny TSN.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.ops.predict import list_videos

pytestmark = pytest.mark.timeout(600)  # the session fixtures (a tiny training) may build here


def test_a_list_entry_that_links_out_of_the_lists_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"not yours")
    folder = tmp_path / "list"
    folder.mkdir()
    (folder / "inside.mp4").write_bytes(b"x")
    (folder / "link.mp4").symlink_to(outside / "secret.mp4")
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    listing = folder / "videos.csv"
    listing.write_text("path\ninside.mp4\nlink.mp4\nsub/secret.mp4\n")
    inside, link, sub = (r["error"] for r in list_videos(str(listing)))  # in list order
    assert inside == ""
    assert "leaves the list's folder" in link and "secret.mp4" in link, link
    assert "leaves the list's folder" in sub, sub
    by_folder = {Path(r["path"]).name: r["error"] for r in list_videos(str(folder))}
    assert by_folder["inside.mp4"] == "" and "leaves the list's folder" in by_folder["link.mp4"]


def test_a_video_named_like_an_override_is_a_video(colour_models, tmp_path, monkeypatch, capsys):
    from jobs.predict import main

    video = sorted((colour_models["videos"] / "val").glob("*.mp4"))[0]
    monkeypatch.chdir(tmp_path)
    shutil.copy(video, tmp_path / "v=1.mp4")
    shutil.copy(video, tmp_path / "top_k=2.mp4")
    model = colour_models["exports"]["good"]
    # an existing file is a file; after "--" everything is a video (here one that is missing)
    code = main(["--model", model, "top_k=2", "v=1.mp4", "--", "top_k=2.mp4", "x=gone.mp4"])
    out = capsys.readouterr().out
    assert code == 3, out  # the missing one fails on its own, the others are predicted
    assert "v=1.mp4" in out and "top_k=2.mp4" in out and "missing_file" in out
    assert "top-2" in out  # the real override still applies
