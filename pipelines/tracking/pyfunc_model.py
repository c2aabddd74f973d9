"""The packaged model (MLflow models-from-code): video files or bytes in, top-k labels out.

Logged by :func:`pipelines.tracking.registry.log_packaged_model` with the exported checkpoint as
the ``checkpoint`` artifact and ``tsi_model`` + ``pipelines`` as the ``code`` artifact (one zip,
put first on ``sys.path``), so it loads without this repository installed and without network.
Input: a list (or one-column frame) of video paths, raw bytes, or ``"base64:<data>"`` strings
(the JSON form for ``/invocations``: ``{"inputs": ["base64:AAAA..."]}``). Output, per video in order: ``{"labels": [...],
"probabilities": [...], "error": null}``, or ``{"labels": [], "probabilities": [], "error":
"why"}`` for an unreadable video; the others are unaffected.

Evaluation and promotion never run this file: they read the checkpoint with their own code.
"""
from __future__ import annotations

import sys
from typing import Any

import mlflow
import torch

TOP_K = 5


class TSIVideoClassifier(mlflow.pyfunc.PythonModel):
    """Decodes, samples and crops each video exactly as the evaluation of its shard would."""

    def load_context(self, context: Any) -> None:
        code = context.artifacts.get("code")  # registry.CODE_ARTIFACT (not importable yet)
        if code and code not in sys.path:
            sys.path.insert(0, code)
        from pipelines.loader.clips import ClipSettings
        from pipelines.tracking.video_input import decode_options, require_ffmpeg
        from tsi_model import build_from_checkpoint
        from tsi_model.weights import read_state_dict

        require_ffmpeg()
        path = context.artifacts["checkpoint"]
        _, meta = read_state_dict(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_from_checkpoint(path).eval().to(self.device)
        self.classes = list(meta["classes"])
        self.clip = ClipSettings.from_dict(meta["clip"])
        self.options = decode_options(meta.get("media") or {})
        config = getattr(context, "model_config", None) or {}
        self.top_k = int(config.get("top_k", TOP_K))

    def _items(self, model_input: Any) -> list[Any]:
        if hasattr(model_input, "iloc"):  # a pandas frame from the serving layer: first column
            return list(model_input.iloc[:, 0]) if model_input.ndim > 1 else list(model_input)
        if isinstance(model_input, (str, bytes)):
            return [model_input]
        return list(model_input)

    @torch.no_grad()
    def predict(self, context, model_input, params=None):  # untyped: MLflow infers no schema
        from pipelines.tracking.video_input import VideoInputError, clip_views
        from tsi_model import normalize_clip

        top_k = int((params or {}).get("top_k", self.top_k))
        out = []
        for item in self._items(model_input):
            try:
                views = torch.from_numpy(clip_views(item, self.clip, self.options)).to(self.device)
            except (VideoInputError, OSError) as exc:
                out.append({"labels": [], "probabilities": [], "error": str(exc)})
                continue
            probs = torch.softmax(self.model(normalize_clip(views)).float(), dim=1).mean(dim=0)
            values, indices = probs.cpu().topk(min(top_k, len(self.classes)))
            out.append({"labels": [self.classes[i] for i in indices.tolist()],
                        "probabilities": [round(float(v), 6) for v in values], "error": None})
        return out


mlflow.models.set_model(TSIVideoClassifier())
