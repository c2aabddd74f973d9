"""Resume bookkeeping: the plan fingerprint check, complete shards, stale temporary files.

A shard is complete when ``{split}/shard-N.tar`` and its manifest part
``{split}/_parts/shard-N.parquet`` both exist (the part is written after the tar is in place)
and the part holds no transient rejection (a timeout or a killed decoder, see
:data:`~pipelines.preprocess.reasons.TRANSIENT_REASONS`): such a shard is redone by the next run,
so a re-run without ``--overwrite`` retries exactly those videos' shards.
``{split}/plan.json`` records the plan's fingerprint so a re-run with other annotations, seed,
shard size or output-affecting settings cannot mix two plans in one folder.

``--overwrite`` deletes only files the job owns (:func:`~pipelines.shards.contract.is_owned_name`)
under ``{output}/{split}``; the listing never follows a link out of the output root, and a split
folder that is itself a link leaving the root is refused.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Any

import pyarrow.parquet as pq

from pipelines.io import PathEscapesRoot, Storage
from pipelines.preprocess.errors import PlanMismatch, PreprocessError
from pipelines.preprocess.plan import ShardSpec
from pipelines.preprocess.reasons import TRANSIENT_REASONS
from pipelines.shards import contract, manifest

log = logging.getLogger("tsi.preprocess")


def split_files(output: Storage, split: str) -> list[str]:
    """Files under ``{output}/{split}``; a split folder resolving outside the output is refused."""
    try:
        output.real_path(split)
    except PathEscapesRoot as exc:
        raise PreprocessError(f"refusing {output.uri(split)}: {exc}") from exc
    return output.list_files(split)


def check_plan(output: Storage, split: str, fingerprint: str, overwrite: bool) -> None:
    """Refuse to mix two different plans in one output folder (unless ``overwrite``)."""
    files = [f for f in split_files(output, split) if contract.is_owned_name(f)]
    if not files:
        return
    old = None
    if contract.PLAN in files:
        old = json.loads(output.read_bytes(f"{split}/{contract.PLAN}")).get("fingerprint")
    if old == fingerprint:
        return
    if not overwrite:
        why = "was written with a different plan or settings" if old else "is not empty"
        raise PlanMismatch(
            f"{output.uri(split)} {why}; use a new output, the same config and annotations, "
            f"or overwrite=true to delete it and start over"
        )
    log.warning("overwrite: deleting the job's %d files under %s", len(files), output.uri(split))
    for rel in files:
        output.delete(f"{split}/{rel}")


def write_plan(output: Storage, split: str, fingerprint: str, plan: list[ShardSpec],
                settings: dict[str, Any]) -> None:
    body = {"fingerprint": fingerprint, "settings": settings,
            "shards": {s.name: [p.key for p in s.samples] for s in plan}}
    output.write_bytes(f"{split}/{contract.PLAN}",
                       json.dumps(body, ensure_ascii=False, indent=1).encode())


def remove_temp_files(output: Storage, split: str) -> list[str]:
    """Delete ``shard-*.tar.tmp-*`` leftovers; only safe while no task of this output runs."""
    stale = sorted(f for f in output.list_files(split, recursive=False)
                   if contract.is_temp_name(f))
    for rel in stale:
        output.delete(f"{split}/{rel}")
    return stale


def _transient_rows(output: Storage, split: str, shard: str) -> int:
    part = pq.read_table(io.BytesIO(output.read_bytes(f"{split}/{contract.part_name(shard)}")),
                         columns=["status", "reason"])
    return sum(1 for status, reason in zip(part.column("status").to_pylist(),
                                           part.column("reason").to_pylist())
               if status == manifest.REJECTED and reason in TRANSIENT_REASONS)


def resume_state(output: Storage, split: str, plan: list[ShardSpec]) -> tuple[set[str], list[str]]:
    """Complete shards, and the leftover temporary files that were removed.

    A written shard with transient rejections is not complete: it is logged and redone.
    """
    files = set(output.list_files(split))
    complete = set()
    for spec in plan:
        if spec.name not in files or contract.part_name(spec.name) not in files:
            continue
        retry = _transient_rows(output, split, spec.name)
        if retry:
            log.info("%s/%s: retrying %d transient rejection(s)", split, spec.name, retry)
            continue
        complete.add(spec.name)
    return complete, remove_temp_files(output, split)
