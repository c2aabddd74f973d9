"""Copy a production model version's verified files into a folder ``mlflow models serve`` runs.

``mlflow models serve -m models:/...`` would import whatever code the artifact store holds; the
files are first checked against the promoter-written hashes (``tracking.served``), and only
versions built by promotion are served (never ``{task}-candidates``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.tracking.models import ModelRef, resolve_model
from pipelines.ops.store import StoreSettings, open_store


@dataclass(frozen=True)
class FetchConfig:
    model: str | None = None  # models:/NAME@ALIAS or models:/NAME/VERSION
    dest: str | None = None  # an empty or missing folder
    store: StoreSettings = field(default_factory=StoreSettings)


def fetch_served_model(cfg: FetchConfig) -> tuple[ModelRef, Path]:
    """The verified served files of ``cfg.model`` copied into ``cfg.dest``; its ref and folder."""
    if not cfg.model or not cfg.dest:
        raise ValueError("set --model and --dest")
    dest = Path(cfg.dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    store, client = open_store(cfg.store)
    ref = resolve_model(cfg.model, client, store.uri)
    if ref.served_dir is None:
        raise ValueError(f"{cfg.model}: only production versions built by promotion are served")
    shutil.copytree(ref.served_dir, dest, dirs_exist_ok=True)
    return ref, dest
