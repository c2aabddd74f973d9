"""Folders of image frames (Something-Something V1) as an ffmpeg image-sequence input.

The frames are linked under uniform names (``000000.jpg``...) in a private temp folder, so the
``image2`` demuxer sees a plain numbered pattern whatever the original names or folder path
contain, and the media stage then treats the folder like any other video.
"""
from __future__ import annotations

import os
import re

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list[object]:
    """Sort ``img_2.jpg`` before ``img_10.jpg``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def frame_files(names: list[str]) -> list[str]:
    """The image files among ``names`` in frame order."""
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(images, key=natural_key)


def link_sequence(files: list[str], workdir: str) -> tuple[str, dict[str, object]]:
    """Link ``files`` (local paths, in order) as a numbered sequence in ``workdir``.

    Returns the ``image2`` pattern and the demuxer options (``start_number``); the caller adds
    the frame rate. Mixed extensions are refused (one sequence needs one image codec).
    """
    if not files:
        raise ValueError("no frames")
    extensions = {os.path.splitext(f)[1].lower() for f in files}
    if len(extensions) != 1:
        raise ValueError(f"mixed frame types {sorted(extensions)}")
    ext = extensions.pop()
    os.makedirs(workdir, exist_ok=True)
    for i, src in enumerate(files):
        os.symlink(os.path.abspath(src), os.path.join(workdir, f"{i:06d}{ext}"))
    return os.path.join(workdir, f"%06d{ext}"), {"f": "image2", "start_number": 0}
