"""What one Ray task does: turn the videos of one planned shard into a tar and a manifest part.

Plain Python (no Ray import), so it is tested directly and the job only decides where it runs.
Videos are processed one at a time and streamed into the tar, so a task's memory is one video's
output regardless of shard or dataset size. Any failure of one video (bad media, download error,
even a bug) becomes a rejected manifest row; the shard and its other videos carry on.
"""
from __future__ import annotations

import io
import logging
import os
import resource
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from pipelines.media.decode import DecodeOptions, DecodeResult, decode
from pipelines.media.frames import frame_files, link_sequence
from pipelines.media.probe import ProbeResult, probe
from pipelines.media.reasons import NOT_A_REGULAR_FILE
from pipelines.preprocess.plan import PlannedSample, ShardSpec
from pipelines.io import PathEscapesRoot, Storage
from pipelines.preprocess.lock import check_fence
from pipelines.preprocess.reasons import FETCH_FAILED, INTERNAL_ERROR, LINK_ESCAPES_ROOT
from pipelines.shards import contract, manifest
from pipelines.shards.writer import ShardWriter, encode_sample

log = logging.getLogger("tsi.preprocess")



@dataclass(frozen=True)
class ShardTask:
    """Everything a task needs; small and picklable (locations, not open handles)."""

    spec: ShardSpec
    split: str
    dataset: str
    videos: str
    output: str
    media: DecodeOptions
    staging_dir: str | None = None
    run_id: str | None = None  # the output lock's fencing token (None: not fenced, e.g. tests)


@dataclass
class ShardReport:
    """What the driver learns when a shard is complete (its manifest part has the details)."""

    shard: str
    ok: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    tar_bytes: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0
    cpu_seconds: float = 0.0  # user+sys of the task and its ffmpeg/ffprobe children
    max_rss_mb: float = 0.0  # the task's process (ru_maxrss)
    max_child_rss_mb: float = 0.0  # the largest ffmpeg run (VmHWM, sampled)
    pid: int = 0


def _media_row(info: ProbeResult, result: DecodeResult | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "size_bytes": info.size_bytes or None, "container": info.format_name or None,
        "codec": info.codec or None, "pix_fmt": info.pix_fmt or None,
        "src_width": info.width or None, "src_height": info.height or None,
        "rotation": info.rotation if info.ok else None, "src_fps": info.fps or None,
        "vfr": info.vfr if info.ok else None, "src_duration": info.duration or None,
        "src_frames": info.num_frames if info.ok else None,
        "header_frames": info.header_frames or None,
        "has_audio": info.has_audio if info.ok or info.reason else None,
        "bit_rate": info.bit_rate or None,
    }
    if result is not None:
        row["decode_seconds"] = round(result.seconds, 4)
        row["ffmpeg_peak_rss_mb"] = round(result.peak_rss_mb, 1) or None
        if result.ok:
            row.update(num_frames=result.num_frames, width=result.width, height=result.height,
                       fps=result.fps, duration=result.duration, sample_bytes=result.nbytes)
    return row


class NotARegularFile(ValueError):
    """A frame of a frame folder is a FIFO, socket, device or folder."""


class _Inputs:
    """Makes a planned sample's media available as a local path (download if remote)."""

    def __init__(self, videos: Storage, workdir: str, frames_fps: float) -> None:
        self.videos = videos
        self.workdir = workdir
        self.frames_fps = frames_fps

    def fetch(self, sample: PlannedSample) -> tuple[str, dict[str, object] | None]:
        """Local path (or image pattern) and demuxer options for ``sample``."""
        if not sample.frames_dir:
            if self.videos.is_local:
                # links are resolved here, at use: one that leaves the root is refused
                return self.videos.real_path(sample.path), None
            local = os.path.join(self.workdir, "video" + os.path.splitext(sample.path)[1])
            self.videos.download(sample.path, local)
            return local, None
        names = frame_files(self.videos.list_files(sample.path, recursive=False))
        if not names:
            raise ValueError(f"no image frames in {sample.path}")
        if self.videos.is_local:
            files = [self.videos.real_path(f"{sample.path}/{n}") for n in names]
            odd = [n for n, f in zip(names, files) if not os.path.isfile(f)]
            if odd:  # a FIFO would block ffmpeg; a missing frame would shorten the clip silently
                raise NotARegularFile(f"{sample.path}: {len(odd)} of {len(names)} frames are "
                                      f"not regular files: {', '.join(odd[:5])}")
        else:
            files = []
            for i, name in enumerate(names):
                local = os.path.join(self.workdir, f"src{i:06d}{os.path.splitext(name)[1]}")
                self.videos.download(f"{sample.path}/{name}", local)
                files.append(local)
        pattern, options = link_sequence(files, os.path.join(self.workdir, "seq"))
        return pattern, {**options, "framerate": self.frames_fps}

    def clear(self) -> None:
        for name in os.listdir(self.workdir):
            target = os.path.join(self.workdir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)


def _meta(task: ShardTask, sample: PlannedSample, source: str, result: DecodeResult) -> dict:
    return {
        "label": sample.label, "label_name": sample.label_name, "video_id": sample.video_id,
        "source": source, "fps": result.fps, "num_frames": result.num_frames,
        "width": result.width, "height": result.height, "duration": result.duration,
        "dataset": task.dataset, "split": task.split,
        "format_version": contract.FORMAT_VERSION, "encoding": task.media.mode,
        "time_start": sample.time_start, "time_end": sample.time_end,
    }


def process_sample(
    task: ShardTask, sample: PlannedSample, inputs: _Inputs
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """One video: the encoded sample (or ``None``) and its manifest row. Never raises."""
    source = inputs.videos.uri(sample.path)
    row: dict[str, Any] = {
        "key": sample.key, "video_id": sample.video_id, "label": sample.label,
        "label_name": sample.label_name, "source": source, "split": task.split,
        "time_start": sample.time_start, "time_end": sample.time_end,
    }
    try:
        try:
            path, input_options = inputs.fetch(sample)
        except PathEscapesRoot as exc:
            row.update(status=manifest.REJECTED, reason=LINK_ESCAPES_ROOT, detail=str(exc)[:500])
            return None, row
        except NotARegularFile as exc:
            row.update(status=manifest.REJECTED, reason=NOT_A_REGULAR_FILE, detail=str(exc)[:500])
            return None, row
        except FileNotFoundError:
            path, input_options = inputs.videos.path(sample.path), None  # the probe says missing
        except (OSError, ValueError) as exc:
            row.update(status=manifest.REJECTED, reason=FETCH_FAILED,
                       detail=f"{type(exc).__name__}: {exc}"[:500])
            return None, row
        info = probe(path, timeout_s=task.media.probe_timeout_s, input_options=input_options)
        result = decode(path, info, task.media, sample.time_start, sample.time_end,
                        input_options) if info.ok else None
        row.update(_media_row(info, result))
        if result is None or not result.ok:
            failed = result if result is not None else info
            row.update(status=manifest.REJECTED, reason=failed.reason, detail=failed.detail)
            return None, row
        row.update(status=manifest.OK, warning=result.warning, shard=task.spec.name)
        meta = _meta(task, sample, source, result)
        if task.media.mode == "jpeg":
            encoded = encode_sample(sample.key, meta, sample.label, frames=result.frames)
        else:
            encoded = encode_sample(sample.key, meta, sample.label, video=result.video)
        return encoded, row
    except Exception as exc:  # a bug must not cost the other videos of the shard
        log.exception("unexpected error on %s", source)
        tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        row.update(status=manifest.REJECTED, reason=INTERNAL_ERROR, detail=tail[:500], shard="")
        return None, row
    finally:
        inputs.clear()


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_shard(task: ShardTask) -> ShardReport:
    """Write ``task.spec`` as ``{output}/{split}/{shard}`` plus its manifest part.

    The tar is written under a temporary name (locally in the output folder, or in a node-local
    staging folder and uploaded for object storage) and the part is written after the tar is in
    place: a part therefore always means a complete shard.
    """
    began = time.perf_counter()
    cpu_began = _cpu_seconds()
    output = Storage.open(task.output)
    videos = Storage.open(task.videos)
    name = task.spec.name
    tar_rel = f"{task.split}/{name}"
    staging = tempfile.mkdtemp(prefix=f"tsi-{name}-", dir=task.staging_dir)
    try:
        tar_path = output.path(tar_rel) if output.is_local else os.path.join(staging, name)
        inputs_dir = os.path.join(staging, "in")
        os.makedirs(inputs_dir)
        inputs = _Inputs(videos, inputs_dir, task.media.sequence_fps)
        rows = []
        report = ShardReport(shard=name, pid=os.getpid())
        with ShardWriter(tar_path) as writer:
            for sample in task.spec.samples:
                encoded, row = process_sample(task, sample, inputs)
                if encoded is not None:
                    writer.write(encoded)
                    report.ok += 1
                else:
                    report.rejected += 1
                    reason = row["reason"]
                    report.rejected_by_reason[reason] = report.rejected_by_reason.get(reason, 0) + 1
                report.decode_seconds += row.get("decode_seconds") or 0.0
                report.max_child_rss_mb = max(report.max_child_rss_mb,
                                              row.get("ffmpeg_peak_rss_mb") or 0.0)
                rows.append(row)
            check_fence(output, task.run_id)  # a task of a stale run must not publish
            writer.commit()
        report.tar_bytes = os.path.getsize(tar_path)
        if not output.is_local:
            output.upload(tar_path, tar_rel)
        buffer = io.BytesIO()
        pq.write_table(manifest.table(rows), buffer)
        check_fence(output, task.run_id)
        output.write_bytes(f"{task.split}/{contract.part_name(name)}", buffer.getvalue())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - began
    report.cpu_seconds = _cpu_seconds() - cpu_began
    report.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB
    return report
