"""The one place uint8 clips become network input.

Data loaders hand over uint8 ``(N, T, 3, H, W)`` RGB clips (4x smaller than float to move between
processes); training, evaluation and prediction all call :func:`normalize_clip` on the device
that runs the model, so the normalisation can never drift between them.
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_clip(clip: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB clips ``(N, T, 3, H, W)`` (or one clip ``(T, 3, H, W)``) -> ImageNet-normalised float.

    The result stays on ``clip``'s device; ``dtype`` lets a bf16 run normalise straight into bf16.
    """
    if clip.dtype != torch.uint8:
        raise TypeError(f"normalize_clip expects uint8 clips, got {clip.dtype}")
    if clip.dim() == 4:
        clip = clip.unsqueeze(0)
    if clip.dim() != 5 or clip.shape[2] != 3:
        raise ValueError(
            f"normalize_clip expects (N, T, 3, H, W) or (T, 3, H, W) RGB, got shape {tuple(clip.shape)}"
        )
    mean = torch.tensor(IMAGENET_MEAN, device=clip.device, dtype=torch.float32).view(1, 1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(IMAGENET_STD, device=clip.device, dtype=torch.float32)
    out = clip.to(torch.float32).div_(255.0).sub_(mean).mul_(inv_std.view(1, 1, 3, 1, 1))
    return out.to(dtype)
