"""ResNet-50 for clips: 2D bottlenecks with optional temporal modules, TSN's average consensus.

Parameter names are exactly torchvision's ``resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc`` ...), so an ImageNet state dict saved by torchvision loads from a
local file; the temporal modules add parameters under ``layerX.Y.temporal`` only. ``width`` scales
the base channels (64 in ResNet-50) so tests and CPU demos keep the topology at a fraction of the cost.

Frames are folded into the batch, ``(N, T, 3, H, W) -> (N*T, 3, H, W)``; the head scores every
frame and averages the scores over T (temporal average pooling of Fig. 4).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware

RESNET50_LAYERS = (3, 4, 6, 3)
EXPANSION = 4

# (stage index 2..5, block index, width of the 3x3 conv) -> module, or None for a plain block
ModuleFactory = Callable[[int, int, int], nn.Module | None]


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv) with two optional temporal hooks.

    ``shift`` runs on the residual branch before ``conv1`` (TSM's residual shift);
    ``temporal`` runs after ``conv2``/``bn2``/ReLU, where TSI places SME and CTI (Sec. 3.4).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shift: nn.Module | None = None,
        temporal: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shift = shift
        self.temporal = temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x if self.shift is None else self.shift(x)
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.temporal is not None:
            out = self.temporal(out)  # Sec. 3.4 / Eq. 1-2: SME then CTI on the 3x3 conv's output
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class VideoResNet(nn.Module):
    """ResNet-50 over folded frames with a per-frame classifier averaged over time."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_frames: int,
        dropout: float = 0.5,
        width: int = 64,
        layers: Sequence[int] = RESNET50_LAYERS,
        shift_factory: ModuleFactory | None = None,
        temporal_factory: ModuleFactory | None = None,
    ) -> None:
        super().__init__()
        if width < 4:
            raise ValueError(f"width must be >= 4, got {width}")
        self.num_frames = num_frames
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for index, blocks in enumerate(layers):
            stage = index + 2  # res2 .. res5 in the paper's naming
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            modules = []
            for block in range(blocks):
                downsample = None
                if block == 0 and (stride != 1 or inplanes != planes * EXPANSION):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * EXPANSION, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes * EXPANSION),
                    )
                modules.append(
                    Bottleneck(
                        inplanes,
                        planes,
                        stride if block == 0 else 1,
                        downsample,
                        shift=shift_factory(stage, block, inplanes) if shift_factory else None,
                        temporal=temporal_factory(stage, block, planes) if temporal_factory else None,
                    )
                )
                inplanes = planes * EXPANSION
            setattr(self, f"layer{index + 1}", nn.Sequential(*modules))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation for the 2D layers; temporal modules keep their own."""
        for name, module in self.named_modules():
            if ".temporal" in name:
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    @property
    def has_temporal_modules(self) -> bool:
        return any(isinstance(m, FrameAware) for m in self.modules())

    def set_num_frames(self, num_frames: int) -> None:
        """Tell every temporal module the clip length (called automatically when T changes)."""
        self.num_frames = num_frames
        for module in self.modules():
            if isinstance(module, FrameAware):
                module.num_frames = num_frames

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N*T, 3, H, W)`` -> pooled per-frame features ``(N*T, C)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """``(N, T, 3, H, W)`` normalised float clips -> logits ``(N, num_classes)``."""
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected clips of shape (N, T, 3, H, W), got {tuple(clip.shape)}")
        n, t = clip.shape[:2]
        if t != self.num_frames:
            self.set_num_frames(t)
        if t < 2 and self.has_temporal_modules:
            raise ValueError("temporal models need at least 2 frames per clip")
        # NCHW-contiguous frames: a permuted (channels-last) input would otherwise propagate odd
        # strides into every temporal reshape and run ~30x slower on CPU
        frames = clip.flatten(0, 1).contiguous()
        scores = self.fc(self.dropout(self.features(frames)))
        return scores.view(n, t, -1).mean(dim=1)  # TSN consensus: average of per-frame scores
