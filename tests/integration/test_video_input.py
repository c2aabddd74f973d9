"""The packaged model's video input: a long video is scored over its whole length."""
from __future__ import annotations

import subprocess

import numpy as np

from pipelines.loader.clips import ClipSettings
from pipelines.media.decode import DecodeOptions
from pipelines.tracking.video_input import clip_views


def test_a_video_longer_than_max_frames_is_sampled_over_its_whole_length(tmp_path):
    # 20 s at 8 fps = 160 frames whose brightness grows with time; max_frames=40 keeps 5 s
    video = tmp_path / "ramp.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=32x32:r=8:d=20,format=yuv420p,geq=lum='T*12':cb=128:cr=128",
                    "-c:v", "libx264", "-qp", "0", str(video)], check=True)
    options = DecodeOptions(short_side=32, max_frames=40, fps_cap=8.0)
    clip = ClipSettings(frames=4, size=32, resize=32)
    views = clip_views(str(video), clip, options)
    brightness = views[0].reshape(4, -1).mean(axis=1)
    # one frame from each quarter of the 20 s: the first 5 s alone never get brighter than ~50
    assert np.all(np.diff(brightness) > 40), brightness
    assert brightness[0] < 60 and brightness[-1] > 180, brightness
