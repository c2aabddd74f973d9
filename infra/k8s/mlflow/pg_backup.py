"""Back up and restore MLflow's Postgres databases to and from object storage.

    python pg_backup.py backup  --dest s3://BUCKET/mlflow-backups        # the nightly CronJob
    python pg_backup.py restore --source s3://BUCKET/mlflow-backups      # newest backup
    python pg_backup.py restore --source s3://BUCKET/mlflow-backups/20261203T020000Z

One backup is a folder ``<dest>/<UTC stamp>/`` holding one ``pg_dump --format=custom`` file per
database (``mlflow``: runs, models, registry and aliases; ``mlflow_auth``: users and
permissions) and ``SHA256SUMS``, uploaded last, so a half-written backup is never taken for a
complete one. ``restore`` verifies the sums, then recreates each
database from its dump (``pg_restore --create --clean --if-exists``: a dropped database comes
back, an existing one is replaced). Stop the MLflow server before a restore.

Connection from libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD); databases from
``--databases`` (default ``mlflow,mlflow_auth``). Object storage through ``pyarrow.fs``
(``s3://``, ``gs://`` or a local path): on Kubernetes the credentials come from the pod's
workload identity (IRSA / GKE Workload Identity), never from this script. Needs ``pg_dump`` /
``pg_restore`` of the server's major version or newer on PATH. Exit 0 done, 1 failed, 2 bad
arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs

SUMS = "SHA256SUMS"


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def backup(dest: str, databases: list[str], stamp: str | None = None) -> str:
    """Dump every database, upload the dumps then their sums; the backup folder's URI."""
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    fs, root = _fs(dest)
    folder = f"{root.rstrip('/')}/{stamp}"
    with tempfile.TemporaryDirectory() as tmp:
        sums = []
        for db in databases:
            local = Path(tmp) / f"{db}.dump"
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                  f"--dbname={db}", f"--file={local}"])
            sums.append(f"{_sha256(local)}  {local.name}\n")
        fs.create_dir(folder, recursive=True)
        for name in [f"{db}.dump" for db in databases]:
            pafs.copy_files(str(Path(tmp) / name), f"{folder}/{name}",
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        with fs.open_output_stream(f"{folder}/{SUMS}") as out:  # last: marks it complete
            out.write("".join(sums).encode())
    return f"{dest.rstrip('/')}/{stamp}"


def _newest_complete(fs: pafs.FileSystem, root: str) -> str:
    folders = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                     if i.type == pafs.FileType.Directory)
    for folder in reversed(folders):
        if fs.get_file_info(f"{folder}/{SUMS}").type == pafs.FileType.File:
            return folder
    raise FileNotFoundError(f"no complete backup (a folder with {SUMS}) under {root}")


def restore(source: str, databases: list[str]) -> str:
    """Recreate every database from the backup at ``source`` (a backup folder or its parent)."""
    fs, path = _fs(source)
    path = path.rstrip("/")
    if fs.get_file_info(f"{path}/{SUMS}").type != pafs.FileType.File:
        path = _newest_complete(fs, path)
    with tempfile.TemporaryDirectory() as tmp:
        pafs.copy_files(path, tmp, source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        expected = {}
        for line in (Path(tmp) / SUMS).read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            expected[name] = digest
        for db in databases:
            local = Path(tmp) / f"{db}.dump"
            if expected.get(local.name) is None or not local.is_file():
                raise FileNotFoundError(f"{path}: no {local.name} in this backup")
            if _sha256(local) != expected[local.name]:
                raise ValueError(f"{path}/{local.name}: sha256 differs from {SUMS}")
        for db in databases:  # --create connects to the maintenance db and recreates `db`
            _run(["pg_restore", "--create", "--clean", "--if-exists", "--no-owner",
                  "--no-privileges", "--exit-on-error", "--dbname=postgres",
                  str(Path(tmp) / f"{db}.dump")])
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--dest", required=True, help="URI or path; a <UTC stamp>/ folder goes there")
    r = sub.add_parser("restore")
    r.add_argument("--source", required=True, help="a backup folder, or its parent (newest)")
    for s in (b, r):
        s.add_argument("--databases", default="mlflow,mlflow_auth")
    args = p.parse_args(argv)
    databases = [d for d in args.databases.split(",") if d]
    if not databases:
        print("error: --databases is empty", file=sys.stderr)
        return 2
    try:
        if args.command == "backup":
            print(f"backup written: {backup(args.dest, databases)}", flush=True)
        else:
            print(f"restored {', '.join(databases)} from {restore(args.source, databases)}",
                  flush=True)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
