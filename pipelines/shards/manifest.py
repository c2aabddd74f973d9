"""``manifest.parquet`` (one row per input row) and ``stats.json`` (counts, bytes, durations).

The manifest is how a platform team answers "where did video X go and why": every annotation row
becomes exactly one row, ``ok`` with the shard that holds it or ``rejected`` with a reason code
and a detail. Probe facts ride along so dataset statistics need no second pass over the videos.

``source`` is the video's path or URI, or ``file:line`` of the annotation row for rows the
annotation reader refused; ``shard`` is empty unless the row is ``ok``; ``src_*`` columns are
probe facts of the input, the unprefixed ``num_frames``/``width``/``height``/``fps`` what was
stored; ``warning`` flags kept-but-suspicious inputs (truncated, cut at ``max_frames``).
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

OK = "ok"
REJECTED = "rejected"

SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
    pa.field("warning", pa.string()),
    pa.field("shard", pa.string(), nullable=False),
    pa.field("label", pa.int32()),
    pa.field("label_name", pa.string()),
    pa.field("video_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("split", pa.string()),
    pa.field("time_start", pa.float64()),
    pa.field("time_end", pa.float64()),
    # probe facts of the input
    pa.field("size_bytes", pa.int64()),
    pa.field("container", pa.string()),
    pa.field("codec", pa.string()),
    pa.field("pix_fmt", pa.string()),
    pa.field("src_width", pa.int32()),
    pa.field("src_height", pa.int32()),
    pa.field("rotation", pa.int16()),
    pa.field("src_fps", pa.float64()),
    pa.field("vfr", pa.bool_()),
    pa.field("src_duration", pa.float64()),
    pa.field("src_frames", pa.int64()),
    pa.field("header_frames", pa.int64()),
    pa.field("has_audio", pa.bool_()),
    pa.field("bit_rate", pa.int64()),
    # what was stored
    pa.field("num_frames", pa.int32()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("fps", pa.float64()),
    pa.field("duration", pa.float64()),
    pa.field("sample_bytes", pa.int64()),
    pa.field("decode_seconds", pa.float64()),
    pa.field("ffmpeg_peak_rss_mb", pa.float64()),
])

_DEFAULTS: dict[str, Any] = {"reason": "", "detail": "", "warning": "", "shard": ""}


def table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts with any subset of the schema's columns) as a manifest table."""
    names = SCHEMA.names
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for row in rows:
        extra = set(row) - set(names)
        if extra:
            raise KeyError(f"not manifest columns: {sorted(extra)}")
        for name in names:
            columns[name].append(row.get(name, _DEFAULTS.get(name)))
    return pa.table(columns, schema=SCHEMA)


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def summarize(manifest: pa.Table) -> dict[str, Any]:
    """Counts for ``stats.json`` and the job's summary line: ok, rejected, rejected by reason."""
    status = manifest.column("status").to_pylist()
    reasons = [r for s, r in zip(status, manifest.column("reason").to_pylist()) if s == REJECTED]
    ok_rows = [i for i, s in enumerate(status) if s == OK]
    take = manifest.take(ok_rows) if ok_rows else manifest.slice(0, 0)

    def total(column: str) -> float:
        return float(sum(v or 0 for v in take.column(column).to_pylist()))

    warnings = sum(1 for w in take.column("warning").to_pylist() if w)
    labels = Counter(take.column("label_name").to_pylist())
    return {
        "rows": manifest.num_rows,
        "ok": len(ok_rows),
        "rejected": len(reasons),
        "rejected_by_reason": dict(sorted(Counter(reasons).items())),
        "ok_with_warning": warnings,
        "ok_per_class": dict(sorted(labels.items())),
        "shards": len({s for s in take.column("shard").to_pylist() if s}),
        "stored_bytes": int(total("sample_bytes")),
        "input_bytes": int(total("size_bytes")),
        "stored_frames": int(total("num_frames")),
        "stored_seconds": round(total("duration"), 3),
        "source_seconds": round(total("src_duration"), 3),
        "decode_seconds": round(total("decode_seconds"), 3),
    }


def dataset_hash(manifest_table: pa.Table, class_names: Iterable[str],
                 keep: Callable[[str], bool] | None = None) -> str:
    """What a model saw, as one hash: sorted ``(key, status, label, shard)`` rows + the class map.

    Stable across re-runs of the same preprocessing (row order, timings, probe facts and paths
    do not enter it); any change to which videos are stored, in which shard, under which label,
    or to the class list changes it. ``keep(key)`` restricts it to a subset of the split (the
    training part and the selection part of a train split have a hash each).
    """
    cols = [manifest_table.column(c).to_pylist() for c in ("key", "status", "label", "shard")]
    rows = [r for r in zip(*cols) if keep is None or keep(r[0])]
    rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r))
    digest = hashlib.sha256()
    digest.update(json.dumps(list(class_names), ensure_ascii=False).encode())
    digest.update(b"\n")
    for key, status, label, shard in rows:
        digest.update(json.dumps([key, status, label, shard], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def read_split(storage: Any, split: str) -> tuple[pa.Table, list[str]]:
    """A split's manifest (``{split}/manifest.parquet`` under a ``pipelines.io.Storage``) and
    the keys of its stored samples, in manifest order."""
    from pipelines.shards import contract

    table = pq.read_table(io.BytesIO(storage.read_bytes(f"{split}/{contract.MANIFEST}")))
    keys = [k for k, s in zip(table.column("key").to_pylist(), table.column("status").to_pylist())
            if s == OK]
    return table, keys
