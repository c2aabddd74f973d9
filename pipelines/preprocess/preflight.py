"""Checks that fail a run in milliseconds, before Ray starts or any file is written.

Each problem is one line naming the setting and what is wrong with it, raised as
:class:`~pipelines.preprocess.errors.PreprocessError` (the job exits 2). Object-store locations
are only checked for shape here; their first access reports what is wrong with them.
"""
from __future__ import annotations

import os
import tempfile

from pipelines.io import is_uri, local_path
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.errors import PreprocessError
from pipelines.preprocess.lock import missing_dirs, remove_empty_dirs
from pipelines.shards import contract

_GLOB = "*?["


def _readable_file(setting: str, location: str) -> None:
    if is_uri(location) or any(c in location for c in _GLOB):
        return
    path = local_path(location)
    if not os.path.exists(path):
        raise PreprocessError(f"{setting} {location} does not exist")
    if os.path.isdir(path):
        if setting == "--classes":
            raise PreprocessError(f"{setting} {location} is a folder, expected a file")
        return  # an annotation folder stands for the files in it
    if not os.access(path, os.R_OK):
        raise PreprocessError(f"{setting} {location} is not readable")


def _readable_dir(setting: str, location: str) -> None:
    if is_uri(location):
        return
    path = local_path(location)
    if not os.path.exists(path):
        raise PreprocessError(f"{setting} {location} does not exist")
    if not os.path.isdir(path):
        raise PreprocessError(f"{setting} {location} is a file, expected a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise PreprocessError(f"{setting} {location} is not readable")


def _writable_dir(setting: str, location: str) -> None:
    """The folder exists or can be made, and a file can be created in it."""
    if is_uri(location):
        return
    path = local_path(location)
    if os.path.exists(path) and not os.path.isdir(path):
        raise PreprocessError(f"{setting} {location} is a file, expected a folder")
    made = missing_dirs(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise PreprocessError(f"{setting} {location} is not writable: {reason}") from None
    finally:
        remove_empty_dirs(made)  # a check leaves nothing behind (the run makes the folder)


def check_config(cfg: PreprocessConfig) -> None:
    """Refuse a run that cannot succeed: missing settings, bad split, unusable paths."""
    missing = cfg.missing()
    if missing:
        raise PreprocessError(f"missing setting(s): {', '.join('--' + m for m in missing)}")
    if cfg.split is not None:
        try:
            contract.check_split(cfg.split)
        except ValueError as exc:
            raise PreprocessError(f"--split: {exc}") from None
    for location in cfg.annotations:
        _readable_file("--annotations", location)
    if cfg.classes:
        _readable_file("--classes", cfg.classes)
    _readable_dir("--videos", cfg.videos)  # type: ignore[arg-type]
    _writable_dir("--output", cfg.output)  # type: ignore[arg-type]
    if cfg.ray.staging_dir:
        _writable_dir("ray.staging_dir", cfg.ray.staging_dir)
    if not is_uri(cfg.output) and not is_uri(cfg.videos):  # type: ignore[arg-type]
        videos, output = local_path(cfg.videos), local_path(cfg.output)  # type: ignore[arg-type]
        if os.path.realpath(output) == os.path.realpath(videos):
            raise PreprocessError("--output must not be the videos folder itself")
