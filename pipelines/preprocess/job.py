"""The Ray preprocessing job: plan shards, run one task per shard, merge the manifest.

Driver steps: list the videos root once, read the annotations, settle the dataset's class map,
plan shards deterministically, skip shards that are already complete (resume), run the rest as
Ray tasks with bounded concurrency, then merge the per-shard manifest parts with the rows the
annotation readers refused into ``manifest.parquet`` and ``stats.json``.

Resume (see :mod:`pipelines.preprocess.resume`): a re-run with the same plan skips complete
shards, deletes leftover ``*.tar.tmp-*`` files and redoes the rest; a re-run whose plan or
output-affecting settings differ is refused unless ``overwrite`` is set. One job per output at a
time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.annotations import AnnotationError, read_annotations
from pipelines.data.classes import ClassMap, merge_or_check
from pipelines.data.records import Annotations, RejectedRecord, VideoRecord
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.errors import PlanMismatch, PreprocessError
from pipelines.preprocess.lock import OutputLock, OutputLocked
from pipelines.preprocess.preflight import check_config
from pipelines.preprocess.reasons import KEY_COLLISION, SAME_FILE, SHARD_FAILED
from pipelines.preprocess.plan import (
    MIN_SHARDS, MIN_VIDEOS_PER_SHARD, PlannedSample, ShardSpec, plan_fingerprint, plan_shards,
    record_sample,
)
from pipelines.preprocess.resume import check_plan, remove_temp_files, resume_state, write_plan
from pipelines.preprocess.runner import run_tasks
from pipelines.io import PathEscapesRoot, Storage, read_bytes
from pipelines.preprocess.worker import ShardReport, ShardTask
from pipelines.shards import contract, manifest

log = logging.getLogger("tsi.preprocess")


@dataclass
class SplitSummary:
    """Outcome of one split: shard bookkeeping plus the manifest counts (``stats``)."""

    split: str
    shards: int
    skipped: list[str] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed_temp_files: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    manifest: str = ""
    seconds: float = 0.0
    shard_note: str = ""  # why the shard size is what it is, when the job chose it


@dataclass
class JobSummary:
    splits: dict[str, SplitSummary]
    classes: str

    @property
    def ok(self) -> bool:
        """True when every shard completed (rejected videos do not make a job fail)."""
        return not any(s.failed for s in self.splits.values())

    @property
    def stored(self) -> int:
        """Samples the dataset holds after this run, over all its splits."""
        return sum(int(s.stats.get("ok", 0)) for s in self.splits.values())

    def format(self) -> str:
        """Human-readable summary: ok/rejected per split and rejected counts by reason."""
        lines = []
        for s in self.splits.values():
            st = s.stats
            lines.append(
                f"split {s.split}: {st.get('ok', 0)} ok, {st.get('rejected', 0)} rejected "
                f"({st.get('ok_with_warning', 0)} ok with warnings); shards: {s.shards} "
                f"({len(s.skipped)} already complete, {len(s.processed)} written, "
                f"{len(s.failed)} failed); {st.get('stored_bytes', 0) / 1e6:.1f} MB stored; "
                f"manifest {s.manifest}"
            )
            if s.shard_note:
                lines.append(f"  {s.shard_note}")
            for reason, count in (st.get("rejected_by_reason") or {}).items():
                lines.append(f"  rejected {reason:<20} {count}")
            for shard, error in s.failed.items():
                lines.append(f"  FAILED {shard}: {error}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ inputs


def _class_map(
    cfg: PreprocessConfig, output: Storage, annotations: Annotations, files: list[str],
    listing: list[str],
) -> tuple[ClassMap, bool]:
    """The dataset's class map and whether it is new (to be written to ``classes.json``)."""
    existing = None
    if output.exists(contract.CLASSES):
        existing = ClassMap.parse(output.read_bytes(contract.CLASSES).decode("utf-8"),
                                  where=output.uri(contract.CLASSES))
    explicit = None
    if cfg.classes:
        explicit = ClassMap.parse(read_bytes(cfg.classes).decode("utf-8-sig"), where=cfg.classes)
    basis = annotations
    if existing is None and explicit is None and annotations.class_names is None and cfg.split:
        # "sorted label names over all annotation files given", not just this split's rows
        try:
            basis = read_annotations(cfg.format, files, listing, split=None,
                                     trimmed=not cfg.untrimmed)
        except AnnotationError:
            basis = annotations
    return merge_or_check(basis, existing=existing, explicit=explicit), existing is None


# ------------------------------------------------------------------------------- plan


def _settings(cfg: PreprocessConfig, classes: ClassMap) -> dict[str, Any]:
    """Settings that change what is stored; a resume must see the same ones."""
    media = dataclasses.asdict(cfg.media)
    for transient in ("threads", "probe_timeout_s", "decode_timeout_s", "max_decoder_memory_mb"):
        media.pop(transient)
    return {"dataset": cfg.dataset, "format_version": contract.FORMAT_VERSION, "media": media,
            "videos": cfg.videos, "classes": classes.digest}


# ---------------------------------------------------------------------------- manifest


def _rejected_rows(rejected: Iterable[RejectedRecord], classes: ClassMap) -> list[dict]:
    rows = []
    for r in rejected:
        rows.append({
            "key": contract.sample_key(r.video_id) if r.video_id else "",
            "status": manifest.REJECTED, "reason": r.reason, "detail": r.detail[:500],
            "video_id": r.video_id, "label": classes.index(r.label) if r.label in classes else None,
            "label_name": r.label, "source": r.source, "split": r.split,
        })
    return rows


def _failed_rows(spec: ShardSpec, split: str, videos: Storage, error: str) -> list[dict]:
    return [{"key": s.key, "status": manifest.REJECTED, "reason": SHARD_FAILED,
             "detail": error[:500], "video_id": s.video_id, "label": s.label,
             "label_name": s.label_name, "source": videos.uri(s.path), "split": split,
             "time_start": s.time_start, "time_end": s.time_end} for s in spec.samples]


def _merge_manifest(
    output: Storage, split: str, plan: list[ShardSpec], failures: dict[str, str],
    videos: Storage, extra_rows: list[dict],
) -> pa.Table:
    tables = []
    for spec in plan:
        if spec.name in failures:
            tables.append(manifest.table(_failed_rows(spec, split, videos, failures[spec.name])))
            continue
        data = output.read_bytes(f"{split}/{contract.part_name(spec.name)}")
        tables.append(pq.read_table(io.BytesIO(data)).cast(manifest.SCHEMA))
    tables.append(manifest.table(extra_rows))
    return pa.concat_tables(tables)


def _write_table(output: Storage, rel: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    output.write_bytes(rel, buffer.getvalue())


# ------------------------------------------------------------------------------- job


def _samples(
    annotations: Annotations, classes: ClassMap, files: set[str], videos: Storage
) -> tuple[list[PlannedSample], list[dict]]:
    """Planned samples with keys and class indices.

    Two ids sharing a key (``key_collision``) and two rows naming one file and one window once
    links are resolved (``same_file``) become rejected rows: a file (or, for untrimmed sources,
    each ``time_start``-``time_end`` window of it) is stored at most once per split.
    """
    samples: list[PlannedSample] = []
    extra: list[dict] = []
    key_owner: dict[str, str] = {}
    file_owner: dict[tuple[str, float | None, float | None], str] = {}

    def refuse(record: VideoRecord, key: str, reason: str, detail: str) -> None:
        extra.append({"key": key, "status": manifest.REJECTED, "reason": reason,
                      "detail": detail, "video_id": record.video_id,
                      "label": classes.index(record.label), "label_name": record.label,
                      "source": videos.uri(record.path), "split": record.split})

    for record in annotations.records:
        key = contract.sample_key(record.video_id)
        if key_owner.setdefault(key, record.video_id) != record.video_id:
            refuse(record, key, KEY_COLLISION, f"same key as video id {key_owner[key]!r}")
            continue
        real = _real_file(videos, record.path)
        window = (real, record.time_start, record.time_end)
        if real is not None and file_owner.setdefault(window, record.video_id) != record.video_id:
            refuse(record, key, SAME_FILE, f"{record.path} is the same file as video id "
                   f"{file_owner[window]!r} ({real}){_window_text(record)}")
            continue
        samples.append(record_sample(record, key, classes.index(record.label),
                                     frames_dir=record.path not in files))
    return samples, extra


def _window_text(record: VideoRecord) -> str:
    if record.time_start is None and record.time_end is None:
        return ""
    return f", same window {record.time_start}-{record.time_end} s"


def _real_file(videos: Storage, rel: str) -> str | None:
    """The resolved path of a local input (links followed), ``None`` for remote or escaping ones.

    An input whose link leaves the videos root is refused by its task (``link_escapes_root``).
    """
    if not videos.is_local:
        return None
    try:
        return videos.real_path(rel)
    except (PathEscapesRoot, OSError):
        return None


def _split_stats(
    cfg: PreprocessConfig, split: str, table: pa.Table, plan: list[ShardSpec], complete: set[str],
    reports: dict[str, ShardReport], failures: dict[str, str], classes: ClassMap,
    fingerprint: str, seconds: float,
) -> dict[str, Any]:
    """``stats.json``: manifest counts plus run facts (settings, shards, time, memory)."""
    stats = manifest.summarize(table)
    stats.update({
        "dataset": cfg.dataset, "split": split, "format_version": contract.FORMAT_VERSION,
        "mode": cfg.media.mode, "media": dataclasses.asdict(cfg.media),
        "videos_per_shard": max((len(spec.samples) for spec in plan), default=0),
        "planned_shards": len(plan),
        "shards_skipped": len(complete), "shards_written": len(reports),
        "shards_failed": sorted(failures), "classes_sha256": classes.digest,
        "plan_fingerprint": fingerprint, "wall_seconds": round(seconds, 3),
        "tar_bytes_written": sum(r.tar_bytes for r in reports.values()),
        "task_seconds": round(sum(r.seconds for r in reports.values()), 3),
        "task_cpu_seconds": round(sum(r.cpu_seconds for r in reports.values()), 3),
        "worker_peak_rss_mb": max((r.max_rss_mb for r in reports.values()), default=None),
        "ffmpeg_peak_rss_mb": max((r.max_child_rss_mb for r in reports.values()), default=None),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return stats


def _run_split(
    cfg: PreprocessConfig, split: str, annotations: Annotations, classes: ClassMap,
    videos: Storage, output: Storage, files: set[str], run_id: str,
) -> SplitSummary:
    began = time.perf_counter()
    samples, extra = _samples(annotations, classes, files, videos)
    per_shard = cfg.videos_per_shard(len(samples))
    plan = plan_shards(samples, per_shard, cfg.sharding.seed) if samples else []
    settings = _settings(cfg, classes)
    fingerprint = plan_fingerprint(plan, settings)
    check_plan(output, split, fingerprint, cfg.overwrite)
    write_plan(output, split, fingerprint, plan, settings)
    complete, stale = resume_state(output, split, plan)
    summary = SplitSummary(split=split, shards=len(plan), removed_temp_files=stale,
                           skipped=sorted(complete))
    if cfg.sharding.videos_per_shard is None and len(samples) >= MIN_SHARDS * MIN_VIDEOS_PER_SHARD:
        summary.shard_note = (f"{per_shard} videos per shard: at least {MIN_SHARDS} shards for "
                              f"{len(samples)} videos, so training readers get shards of their "
                              "own")
    log.info("split %s: %d videos in %d shards (%d videos/shard); %d already complete%s",
             split, len(samples), len(plan), per_shard, len(complete),
             f"; removed {len(stale)} stale temp files" if stale else "")
    for name in sorted(complete):
        log.info("%s/%s complete, skipping", split, name)
    tasks = [ShardTask(spec, split, cfg.dataset, videos.location, output.location, cfg.media,
                       cfg.ray.staging_dir, run_id) for spec in plan if spec.name not in complete]
    reports, failures = run_tasks(tasks, cfg, not (videos.is_local and output.is_local),
                                   sum(len(t.spec.samples) for t in tasks))
    summary.processed = sorted(reports)
    summary.failed = failures
    # a retried attempt (worker or node lost mid-shard) leaves its temp file behind
    summary.removed_temp_files += remove_temp_files(output, split)
    rows = extra + _rejected_rows(annotations.rejected, classes)
    table = _merge_manifest(output, split, plan, failures, videos, rows)
    manifest_rel = f"{split}/{contract.MANIFEST}"
    _write_table(output, manifest_rel, table)
    summary.manifest = output.uri(manifest_rel)
    summary.seconds = time.perf_counter() - began
    stats = _split_stats(cfg, split, table, plan, complete, reports, failures, classes,
                         fingerprint, summary.seconds)
    output.write_bytes(f"{split}/{contract.STATS}",
                       json.dumps(stats, indent=1, ensure_ascii=False).encode())
    summary.stats = stats
    return summary


def _by_split(annotations: Annotations, default: str | None) -> dict[str, Annotations]:
    """Group records and refused rows by split (one output folder per split)."""
    names = sorted({r.split for r in annotations.records})
    fallback = default or (Counter(r.split for r in annotations.records).most_common(1)[0][0]
                           if annotations.records else "train")
    groups = {name: Annotations([], [], annotations.class_names) for name in names}
    for record in annotations.records:
        groups[record.split].records.append(record)
    for rejected in annotations.rejected:
        split = rejected.split or fallback
        groups.setdefault(split, Annotations([], [], annotations.class_names))
        groups[split].rejected.append(rejected)
    return groups


def _check_splits(annotations: Annotations) -> None:
    """Every split named by the annotations must be a plain folder name, before any work."""
    names = {r.split for r in annotations.records}
    names |= {r.split for r in annotations.rejected if r.split}
    bad = []
    for name in sorted(names):
        try:
            contract.check_split(name)
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        raise PreprocessError(f"the annotations name {len(bad)} unusable split(s): {bad[0]}"
                              + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def run_preprocess(cfg: PreprocessConfig) -> JobSummary:
    """Run the whole job for ``cfg``; returns per-split summaries (see :class:`JobSummary`).

    Checks that need no data run first (:func:`~pipelines.preprocess.preflight.check_config`);
    then the output's lock is taken for the whole run, so the class map is settled once and no
    other run -- of any split -- writes to this output meanwhile (:class:`OutputLocked`).
    """
    check_config(cfg)
    videos = Storage.open(cfg.videos)  # type: ignore[arg-type]
    output = Storage.open(cfg.output)  # type: ignore[arg-type]
    try:
        return _run_locked(cfg, videos, output)
    except PermissionError as exc:  # e.g. a read-only or immutable split folder in the output
        where = exc.filename or output.uri()
        raise PreprocessError(f"cannot write {where}: {exc.strerror or exc}") from None


def _run_locked(cfg: PreprocessConfig, videos: Storage, output: Storage) -> JobSummary:
    with OutputLock(output) as lock:
        listing = videos.list_files()  # annotations were checked first: fail before a big listing
        if not listing:
            raise PreprocessError(f"no files under {videos.uri()}")
        log.info("listed %d files under %s", len(listing), videos.uri())
        annotations = read_annotations(cfg.format, list(cfg.annotations), listing,
                                       split=cfg.split, trimmed=not cfg.untrimmed)
        _check_splits(annotations)
        classes, new = _class_map(cfg, output, annotations, list(cfg.annotations), listing)
        annotations = classes.restrict(annotations)
        if new:
            output.write_bytes(contract.CLASSES, classes.to_json().encode("utf-8"))
        log.info("%d usable rows, %d refused by the reader; %d classes",
                 len(annotations.records), len(annotations.rejected), len(classes))
        listed = set(listing)
        splits = {}
        for split, part in _by_split(annotations, cfg.split).items():
            splits[split] = _run_split(cfg, split, part, classes, videos, output, listed,
                                       lock.run_id)
    return JobSummary(splits=splits, classes=output.uri(contract.CLASSES))


def summary_dict(summary: JobSummary) -> dict[str, Any]:
    """JSON-ready form of a summary (for ``--summary-json`` and logs)."""
    return {"classes": summary.classes, "ok": summary.ok,
            "splits": {k: dataclasses.asdict(v) for k, v in summary.splits.items()}}


__all__ = ["JobSummary", "OutputLocked", "PlanMismatch", "PreprocessError", "SplitSummary",
           "run_preprocess", "summary_dict"]
