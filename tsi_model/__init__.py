"""TSI (Temporal Saliency Integration) and its TSN/TSM baselines in pure PyTorch.

No Ray, MLflow or ffmpeg here: this package is the network, its weights handling and its cost
report, importable anywhere torch is.
"""
from tsi_model.models import ABLATIONS, build_from_checkpoint, get_model, list_models, tsi_r50, tsm_r50, tsn_r50
from tsi_model.resnet import VideoResNet
from tsi_model.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_clip
from tsi_model.weights import LoadReport, WeightsError, load_weights, save_checkpoint

__all__ = [
    "ABLATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadReport",
    "VideoResNet",
    "WeightsError",
    "build_from_checkpoint",
    "get_model",
    "list_models",
    "load_weights",
    "normalize_clip",
    "save_checkpoint",
    "tsi_r50",
    "tsm_r50",
    "tsn_r50",
]
