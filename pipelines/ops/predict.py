"""Predict the top-k labels of raw videos, one by one or as a Ray Data batch-inference job.

Both paths turn a video into the views evaluation scores (the export's media settings decode it,
``pipelines.loader.views.eval_views`` samples and crops it) and run one :class:`Classifier`, so
they give the same answer as each other, as evaluation of the video's shard, and as the packaged
pyfunc. The model is read from its checkpoint artifact with the platform's own code.

- ``videos``: a few files named on the command line, predicted in this process;
- ``list``: a CSV (a ``path`` column, else the first column) or a folder, local or ``s3://``.
  Ray Data streams it: decoding in CPU tasks, the model in an actor pool (a GPU per actor when
  the cluster has GPUs), predictions written as parquet under ``output``; memory is bounded by
  Ray Data's streaming executor, not by the length of the list. Paths in a CSV are relative to
  the CSV's folder and may not leave it (an absolute path, a URI or ``..`` is a per-video error).

An unreadable video gives a row with ``error`` set and no labels; the others are unaffected.
"""
from __future__ import annotations

import io
import logging
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.annotations import VIDEO_EXTENSIONS
from pipelines.io import Storage, is_uri, read_bytes
from pipelines.loader.clips import ClipSettings
from pipelines.ops.store import StoreSettings

log = logging.getLogger("tsi.ops")


def _output_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())),
                      ("probabilities", pa.list_(pa.float64())), ("error", pa.string()),
                      ("model", pa.string()), ("version", pa.string()), ("alias", pa.string())])


OUTPUT_SCHEMA = _output_schema()


@dataclass(frozen=True)
class PredictConfig:
    model: str | None = None  # models:/NAME@ALIAS, models:/NAME/VERSION or a model.pt
    videos: tuple[str, ...] = ()
    list: str | None = None  # a CSV of paths or a folder (local or URI): the Ray Data path
    output: str | None = None  # parquet folder for the Ray Data path
    top_k: int = 5
    batch_size: int = 8
    actors: int = 1
    cpus_per_actor: float = 1.0
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512  # per decode task; also keeps Ray Data from fusing decode into the
    # model actors (same remote args fuse), which would serialise decoding behind the model
    use_gpu: bool | None = None  # None: a GPU per actor when the cluster has GPUs
    store: StoreSettings = field(default_factory=StoreSettings)


@dataclass(frozen=True)
class VideoPrediction:
    path: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    error: str | None = None


class Classifier:
    """An export's network and the way its training videos were decoded and cropped."""

    def __init__(self, checkpoint: str | bytes, *, top_k: int = 5, device: str = "cpu") -> None:
        import torch

        from pipelines.tracking.video_input import decode_options, require_ffmpeg
        from tsi_model import build_from_checkpoint
        from tsi_model.weights import read_state_dict

        require_ffmpeg()
        with tempfile.TemporaryDirectory() as tmp:
            path = checkpoint
            if isinstance(checkpoint, bytes):
                path = str(Path(tmp) / "model.pt")
                Path(path).write_bytes(checkpoint)
            _, meta = read_state_dict(path)
            self.model = build_from_checkpoint(path).eval().to(device)
        self.torch, self.device, self.top_k = torch, device, top_k
        self.classes = list(meta["classes"])
        self.clip = ClipSettings.from_dict(meta["clip"])
        self.options = decode_options(meta.get("media") or {})

    def views(self, item: str | bytes) -> np.ndarray:
        """uint8 ``(1, T, 3, S, S)`` (``1x1``); ``VideoInputError`` says why a video is unusable."""
        from pipelines.tracking.video_input import clip_views

        return clip_views(item, self.clip, self.options)

    def top(self, views: Sequence[np.ndarray]) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
        """Top-k (labels, probabilities) for each video's views, in one forward pass."""
        from tsi_model import normalize_clip

        torch = self.torch
        counts = [len(v) for v in views]
        batch = torch.from_numpy(np.concatenate(views)).to(self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(normalize_clip(batch)).float(), dim=1).cpu()
        out, start = [], 0
        k = min(self.top_k, len(self.classes))
        for n in counts:
            values, indices = probs[start:start + n].mean(dim=0).topk(k)
            out.append((tuple(self.classes[i] for i in indices.tolist()),
                        tuple(round(float(v), 6) for v in values)))
            start += n
        return out


def _read(path: str) -> str | bytes:
    """A local path as is (ffmpeg reads it), an object-store URI as its bytes."""
    return read_bytes(path) if is_uri(path) else path


def predict_videos(classifier: Classifier, paths: Sequence[str]) -> list[VideoPrediction]:
    """The single-process path: each video in turn, errors per video."""
    from pipelines.tracking.video_input import VideoInputError

    out = []
    for path in paths:
        try:
            views = classifier.views(_read(path))
        except (VideoInputError, OSError) as exc:
            out.append(VideoPrediction(path, (), (), str(exc)))
            continue
        labels, probs = classifier.top([views])[0]
        out.append(VideoPrediction(path, labels, probs))
    return out


def resolve_entry(root: str, entry: str) -> str:
    """A CSV entry as a path or URI under the CSV's folder; ValueError if it would leave it."""
    entry = entry.strip()
    if not entry or is_uri(entry) or entry.startswith(("/", "file:")) or "\\" in entry:
        raise ValueError(f"{entry!r}: list entries must be paths relative to the list's folder")
    normal = posixpath.normpath(entry)
    if normal.startswith("..") or "\x00" in normal:
        raise ValueError(f"{entry!r} leaves the list's folder")
    if is_uri(root):
        return posixpath.join(root, normal)
    real, folder = os.path.realpath(Path(root) / normal), os.path.realpath(root)
    if os.path.commonpath([real, folder]) != folder:  # a link that points out of the folder
        raise ValueError(f"{entry!r} leaves the list's folder (it resolves to {real})")
    return str(Path(root) / normal)


def list_videos(location: str) -> Iterator[dict[str, str]]:
    """Rows ``{"path", "error"}`` of a folder's videos or of a CSV's entries, in order."""
    import pyarrow.csv as pacsv

    if not location.lower().endswith(".csv"):
        storage = Storage.open(location)
        for rel in storage.list_files():
            if posixpath.splitext(rel)[1].lower() in VIDEO_EXTENSIONS:
                try:
                    yield {"path": resolve_entry(storage.uri(), rel), "error": ""}
                except ValueError as exc:
                    yield {"path": storage.uri(rel), "error": str(exc)}
        return
    raw = read_bytes(location)
    table = pacsv.read_csv(io.BytesIO(raw))
    first = table.column_names[0] if table.column_names else ""
    if "path" not in table.column_names and posixpath.splitext(first)[1].lower() in \
            VIDEO_EXTENSIONS:  # no header: the first row is a video, not a column name
        table = pacsv.read_csv(io.BytesIO(raw), read_options=pacsv.ReadOptions(
            autogenerate_column_names=True))
    column = "path" if "path" in table.column_names else table.column_names[0]
    root = location.rsplit("/", 1)[0] if is_uri(location) else str(Path(location).parent)
    for entry in table.column(column).to_pylist():
        try:
            yield {"path": resolve_entry(root, str(entry or "")), "error": ""}
        except ValueError as exc:
            yield {"path": str(entry), "error": str(exc)}


class _Decode:
    """Ray Data map: one row's path → its views (zeros and an error when it cannot be read)."""

    def __init__(self, clip: dict[str, Any], media: dict[str, Any]) -> None:
        from pipelines.tracking.video_input import decode_options

        self.clip, self.options = ClipSettings.from_dict(clip), decode_options(media)
        self.shape = (1, self.clip.frames, 3, self.clip.size, self.clip.size)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from pipelines.tracking.video_input import VideoInputError, clip_views

        views, error = np.zeros(self.shape, np.uint8), row.get("error") or ""
        if not error:
            try:
                views = clip_views(_read(row["path"]), self.clip, self.options)
            except (VideoInputError, OSError) as exc:
                error = str(exc)
        return {"path": row["path"], "views": views, "error": error}


class _Predict:
    """Ray Data actor: the model, once per actor, over batches of decoded rows."""

    def __init__(self, checkpoint: bytes, top_k: int, device: str,
                 identity: dict[str, str | None]) -> None:
        self.classifier = Classifier(checkpoint, top_k=top_k, device=device)
        self.identity = identity

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        errors = [str(e) for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        tops = {}
        if good:
            tops = dict(zip(good, self.classifier.top([batch["views"][i] for i in good])))
        return pa.table({  # an explicit schema: a block without errors still types them as strings
            "path": [str(p) for p in batch["path"]],
            "labels": [list(tops[i][0]) if i in tops else [] for i in range(len(errors))],
            "probabilities": [list(tops[i][1]) if i in tops else [] for i in range(len(errors))],
            "error": [e or None for e in errors],
            **{k: [self.identity.get(k)] * len(errors) for k in ("model", "version", "alias")}},
            schema=OUTPUT_SCHEMA)


def _fresh_output(output: str) -> str:
    """Where this run writes: a new sibling folder for a local output (swapped in by
    :func:`_swap_in` when done, so a re-run replaces the rows instead of adding to them); a
    remote output must not exist yet (object stores have no atomic rename)."""
    if is_uri(output):
        if Storage.open(output).list_files():
            raise ValueError(f"{output} already holds files: a re-run would duplicate rows; "
                             "choose a new --output")
        return output
    return f"{output.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"


def _swap_in(written: str, output: str) -> None:
    if written == output:
        return
    target = Path(output)
    old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    Path(written).rename(target)
    shutil.rmtree(old, ignore_errors=True)


def predict_on_ray(cfg: PredictConfig, checkpoint: str, meta: dict[str, Any],
                   identity: dict[str, str | None] | None = None) -> dict[str, int]:
    """The batch-inference job; returns counts of predicted and failed videos. Every row names
    the model, version and alias it was predicted with."""
    from pipelines.cluster import ensure_ray

    if not cfg.output:
        raise ValueError("a list of videos needs --output (a parquet folder, local or URI)")
    ray = ensure_ray()
    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    rows = list_videos(cfg.list)
    ds = ray.data.from_items(list(rows))
    if ds.count() == 0:
        raise ValueError(f"{cfg.list} lists no videos")
    decoded = ds.map(_Decode(meta["clip"], meta.get("media") or {}), num_cpus=cfg.decode_cpus,
                     memory=cfg.decode_memory_mb * 2**20)
    predicted = decoded.map_batches(
        _Predict, fn_constructor_kwargs={"checkpoint": Path(checkpoint).read_bytes(),
                                         "top_k": cfg.top_k,
                                         "device": "cuda" if use_gpu else "cpu",
                                         "identity": identity or {}},
        batch_size=cfg.batch_size, compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=cfg.cpus_per_actor, num_gpus=1 if use_gpu else 0, batch_format="numpy")
    written = _fresh_output(cfg.output)
    predicted.write_parquet(written)
    _swap_in(written, cfg.output)
    errors = ray.data.read_parquet(cfg.output, columns=["error"]).to_arrow_refs()
    column = [value for ref in errors for value in ray.get(ref).column("error").to_pylist()]
    return {"videos": len(column), "failed": sum(value is not None for value in column)}


def run_predict(cfg: PredictConfig) -> list[VideoPrediction] | dict[str, int]:
    """``jobs.predict``: the named videos in process, or the list on Ray Data."""
    from pipelines.tracking.models import parse_registry_uri, resolve_model
    from pipelines.ops.store import open_store

    if not cfg.model:
        raise ValueError("no model: set --model")
    if bool(cfg.videos) == bool(cfg.list):
        raise ValueError("give either VIDEO arguments or --list (a CSV or a folder)")
    if cfg.model.startswith("models:/"):
        store, client = open_store(cfg.store)
        ref = resolve_model(cfg.model, client, store.uri)
    else:
        ref = resolve_model(cfg.model, None, "")
    if cfg.list:
        parsed = parse_registry_uri(cfg.model)
        identity = {"model": ref.name or ref.checkpoint, "version": ref.version,
                    "alias": parsed[1] if parsed else None}
        return predict_on_ray(cfg, ref.checkpoint, ref.meta, identity)
    return predict_videos(Classifier(ref.checkpoint, top_k=cfg.top_k), list(cfg.videos))
