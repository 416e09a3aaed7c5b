"""The small from-scratch architectures: ``small_cnn`` and ``mlp`` (registered on import).

- ``small_cnn``: DCWP's Colored-MNIST net: 3 conv 4x4 stride 2 (padding 1), widths 64/128/256,
  BatchNorm + ReLU, global average pool, fc. kwargs ``widths=(64, 128, 256)``, ``in_channels=3``,
  ``mean``/``std`` (default: no normalisation). Feature map = last block's ReLU output.
- ``mlp``: flattened input, hidden layers with ReLU; kwargs ``hidden=(100, 100, 100)``,
  ``input_size=(3, 28, 28)``. Features = last hidden layer. No spatial map.

``pretrained=`` is a SpurAudit checkpoint or a plain state dict of the same architecture.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.checkpoints import load_weights_into
from core.models.registry import register_model


def _small_cnn_encoder(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_channels
    for w in widths:
        layers += [nn.Conv2d(prev, w, kernel_size=4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                   nn.ReLU(inplace=True)]
        prev = w
    return nn.Sequential(*layers)


def _identity_normalisation(channels: int, mean: Sequence[float] | None,
                            std: Sequence[float] | None) -> tuple[list[float], list[float]]:
    """``mean``/``std`` as float lists; None = no normalisation (0 and 1 per channel)."""
    return ([0.0] * channels if mean is None else [float(v) for v in mean],
            [1.0] * channels if std is None else [float(v) for v in std])


@register_model("small_cnn")
def build_small_cnn(*, num_classes: int, pretrained: str | Path | None = None, widths: Sequence[int] = (64, 128, 256),
                    in_channels: int = 3, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> AuditModel:
    """DCWP's CMNIST CNN. 28x28 input -> feature map (B, widths[-1], 3, 3)."""
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise SpurAuditError(f"small_cnn widths must be positive integers, got {widths}")
    if int(in_channels) < 1:
        raise SpurAuditError(f"in_channels must be >= 1, got {in_channels}")
    in_channels = int(in_channels)
    mean, std = _identity_normalisation(in_channels, mean, std)
    config: dict[str, Any] = {"widths": widths, "in_channels": in_channels, "mean": mean, "std": std}
    model = AuditModel(arch="small_cnn", config=config, encoder=_small_cnn_encoder(in_channels, widths),
                       feature_dim=widths[-1], num_classes=num_classes, mean=mean, std=std, has_spatial_map=True)
    if pretrained is not None:
        load_weights_into(model, pretrained)
    return model


class _MLPEncoder(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
            prev = h
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))  # (B, C, H, W) -> (B, C*H*W) -> (B, hidden[-1])


@register_model("mlp")
def build_mlp(*, num_classes: int, pretrained: str | Path | None = None, hidden: Sequence[int] = (100, 100, 100),
              input_size: int | Sequence[int] = (3, 28, 28), mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> AuditModel:
    """MLP on flattened images; features = last hidden layer (post-ReLU); no spatial map."""
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise SpurAuditError(f"mlp hidden sizes must be positive integers, got {hidden}")
    size = [int(input_size)] if isinstance(input_size, int) else [int(v) for v in input_size]
    if not size or min(size) < 1:
        raise SpurAuditError(f"mlp input_size must be positive, e.g. (3, 28, 28); got {input_size}")
    in_features = 1
    for v in size:
        in_features *= v
    channels = size[0] if len(size) == 3 else 1
    mean, std = _identity_normalisation(channels, mean, std)
    config = {"hidden": hidden, "input_size": size, "mean": mean, "std": std}
    model = AuditModel(arch="mlp", config=config, encoder=_MLPEncoder(in_features, hidden), feature_dim=hidden[-1],
                       num_classes=num_classes, mean=mean, std=std, has_spatial_map=False)
    if pretrained is not None:
        load_weights_into(model, pretrained)
    return model


__all__ = ["build_mlp", "build_small_cnn"]
