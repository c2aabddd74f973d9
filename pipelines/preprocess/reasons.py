"""Why the job itself refused an input: the job layer's reason codes, and the list of all codes.

Readers (:mod:`pipelines.data.reasons`) and the media stage (:mod:`pipelines.media.reasons`)
have their own; these are the ones only the job can tell, because they need the plan or the
task. :data:`ALL_REASONS` is every code a manifest row can carry, documented in
docs/preprocessing.md.

``key_collision``      two different video ids would get the same sample key
``same_file``          the row's file is the same file (after resolving links) as an earlier row's
``link_escapes_root``  the input is a symbolic link that resolves outside the videos root
``fetch_failed``       a remote download failed, or a frame folder was empty or mixed
``shard_failed``       the shard's task failed for good (the other shards are unaffected; a
                       re-run redoes it)
``internal_error``     a bug while processing this video (the traceback's last line is the detail)
"""
from __future__ import annotations

from pipelines.data.reasons import REASONS as READER_REASONS
from pipelines.media.reasons import REASONS as MEDIA_REASONS
from pipelines.media.reasons import TRANSIENT_REASONS as MEDIA_TRANSIENT

KEY_COLLISION = "key_collision"
SAME_FILE = "same_file"
LINK_ESCAPES_ROOT = "link_escapes_root"
FETCH_FAILED = "fetch_failed"
SHARD_FAILED = "shard_failed"
INTERNAL_ERROR = "internal_error"

JOB_REASONS: tuple[str, ...] = (
    KEY_COLLISION, SAME_FILE, LINK_ESCAPES_ROOT, FETCH_FAILED, SHARD_FAILED, INTERNAL_ERROR,
)

# Every reason a manifest row can carry, in the order docs/preprocessing.md lists them.
ALL_REASONS: tuple[str, ...] = tuple(dict.fromkeys(READER_REASONS + MEDIA_REASONS + JOB_REASONS))

# Outcomes a re-run retries without --overwrite (the input may be fine, the run was not): a shard
# whose manifest part holds one of these is redone. Failed shards have no part and are redone too.
TRANSIENT_REASONS = frozenset(MEDIA_TRANSIENT)
