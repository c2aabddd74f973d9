"""The platform's one I/O layer: local folders and object storage behind :class:`Storage`.

Everything that reads or writes data (annotation files, class lists, videos, shards, manifests)
goes through here, so "is this a URI" has one answer (:func:`is_uri`: ``s3://``, ``gs://`` and
other remote schemes; a plain path or ``file://`` is local) and every sub-package above it can
read from wherever the data lives. Nothing here imports another ``pipelines`` sub-package.
"""
from pipelines.io.storage import (
    STORAGE_ENV,
    parent_and_name,
    storage_env,
    ListingProblem,
    PathEscapesRoot,
    Storage,
    is_uri,
    local_path,
    read_bytes,
    scheme,
    write_bytes,
)

__all__ = [
    "STORAGE_ENV", "ListingProblem", "PathEscapesRoot", "Storage", "is_uri", "local_path",
    "parent_and_name", "storage_env",
    "read_bytes", "scheme", "write_bytes",
]
