"""Resume bookkeeping: the plan fingerprint check, complete shards, stale temporary files.

A shard is complete when ``{split}/shard-N.tar`` and its manifest part
``{split}/_parts/shard-N.parquet`` both exist (the part is written after the tar is in place).
``{split}/plan.json`` records the plan's fingerprint so a re-run with other annotations, seed,
shard size or output-affecting settings cannot mix two plans in one folder.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from pipelines.preprocess.errors import PlanMismatch
from pipelines.preprocess.plan import ShardSpec
from pipelines.preprocess.storage import Storage
from pipelines.shards import contract

log = logging.getLogger("tsi.preprocess")


def check_plan(output: Storage, split: str, fingerprint: str, overwrite: bool) -> None:
    """Refuse to mix two different plans in one output folder (unless ``overwrite``)."""
    plan_rel = f"{split}/{contract.PLAN}"
    files = output.list_files(split)
    if not files:
        return
    old = None
    if contract.PLAN in files:
        old = json.loads(output.read_bytes(plan_rel)).get("fingerprint")
    if old == fingerprint:
        return
    if not overwrite:
        why = "was written with a different plan or settings" if old else "is not empty"
        raise PlanMismatch(
            f"{output.uri(split)} {why}; use a new output, the same config and annotations, "
            f"or overwrite=true to delete it and start over"
        )
    log.warning("overwrite: deleting %d files under %s", len(files), output.uri(split))
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


def resume_state(output: Storage, split: str, plan: list[ShardSpec]) -> tuple[set[str], list[str]]:
    """Complete shards, and the leftover temporary files that were removed."""
    files = set(output.list_files(split))
    complete = {s.name for s in plan
                if s.name in files and contract.part_name(s.name) in files}
    return complete, remove_temp_files(output, split)
