"""`AuditModel`: an image encoder with a spatial feature map, and a plain linear head.

Every classifier SpurAudit audits is wrapped the same way (timm-style hooks)::

    x (B, C, H, W) RGB float in [0, 1]
      -> normalize            (mean/std buffers, part of the model; optional resize)
      -> encoder              -> feature map (B, D, h, w)   [or (B, D) when there is no spatial map]
      -> global average pool  -> features (B, D)            (the penultimate layer)
      -> head: nn.Linear(D, K) -> logits (B, K)

Channel ``j`` of `feature_map` is feature ``j`` of `features`, so a neural activation map of feature
``j`` is simply ``feature_map(x)[:, j]`` and ``features(x) == feature_map(x).mean((2, 3))``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import SpurAuditError


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with mean/std as (persistent) buffers of shape (1, C, 1, 1).

    When ``resize`` is given as ``(H, W)``, inputs of another spatial size are first resized
    bilinearly (used by encoders with a fixed input size such as CLIP ViTs). Differentiable.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, resize: tuple[int, int] | None = None):
        super().__init__()
        mean_t = torch.as_tensor([float(v) for v in mean], dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor([float(v) for v in std], dtype=torch.float32).view(1, -1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise SpurAuditError(f"normalisation mean {list(mean)} and std {list(std)} differ in length")
        if bool((std_t <= 0).any()):
            raise SpurAuditError(f"normalisation std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)
        self.resize = tuple(int(v) for v in resize) if resize is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and x.dim() == 4 and tuple(x.shape[-2:]) != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}, resize={self.resize}"


class AuditModel(nn.Module):
    """Encoder + global average pool + linear head, with normalisation inside the model.

    Attributes:
        arch: registry name the model was built from (e.g. ``"small_cnn"``, ``"timm:resnet10t"``).
        config: the constructor keyword arguments (JSON-able) that `build_model` needs to rebuild it.
        num_classes: K, the head's output size.
        feature_dim: D, the number of features (= channels of the feature map).
        normalize: the `Normalize` module applied to inputs in [0, 1].
        encoder: normalised image (B, C, H, W) -> (B, D, h, w) (spatial) or (B, D) (non-spatial).
        head: ``nn.Linear(D, K)``.
        has_spatial_map: whether `feature_map` is available.
    """

    def __init__(
        self,
        *,
        arch: str,
        config: dict[str, Any],
        encoder: nn.Module,
        feature_dim: int,
        num_classes: int,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        has_spatial_map: bool = True,
        resize: tuple[int, int] | None = None,
    ):
        super().__init__()
        if int(num_classes) < 1:
            raise SpurAuditError(f"num_classes must be >= 1, got {num_classes}")
        if int(feature_dim) < 1:
            raise SpurAuditError(f"feature_dim must be >= 1, got {feature_dim}")
        self.arch = str(arch)
        self.config = dict(config)
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        self.has_spatial_map = bool(has_spatial_map)
        self.normalize = Normalize(mean, std, resize=resize)
        self.encoder = encoder
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    # -- hooks -------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise SpurAuditError(
                f"{self.arch} expects a batch of images (B, C, H, W) in [0, 1], got shape {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0)")
        channels = int(self.normalize.mean.shape[1])
        # a 1-channel image broadcasts to RGB; a flattened-input MLP (1 normalisation channel) takes any
        if x.shape[1] != channels and x.shape[1] != 1 and (channels > 1 or self.has_spatial_map):
            raise SpurAuditError(
                f"{self.arch} expects {channels}-channel images, got {x.shape[1]} channels; convert the images "
                f"(e.g. to RGB) or build the model with in_channels={x.shape[1]}")
        return self.encoder(self.normalize(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last conv layer's post-activation map, (B, C, H, W) float in [0, 1] -> (B, D, h, w).

        Channel ``j`` is feature ``j`` (``features(x) == feature_map(x).mean((2, 3))``).
        Raises `SpurAuditError` for encoders without a spatial map (``has_spatial_map`` False).
        """
        if not self.has_spatial_map:
            raise SpurAuditError(
                f"model {self.arch!r} has no spatial feature map (has_spatial_map is False); activation maps "
                "need a convolutional encoder such as small_cnn, resnet18/50, robust-resnet50 or a timm CNN")
        fmap = self._encode(x)
        if fmap.dim() != 4:
            raise SpurAuditError(f"encoder of {self.arch!r} returned shape {tuple(fmap.shape)}, expected (B, D, h, w)")
        return fmap

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, (B, C, H, W) in [0, 1] -> (B, D) float (global average pool of the map)."""
        out = self._encode(x)
        if out.dim() == 4:
            out = out.mean(dim=(2, 3))  # (B, D, h, w) -> (B, D)
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, D) -> logits (B, K)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) float in [0, 1] -> logits (B, K)."""
        return self.head(self.features(x))

    def reset_head(self, num_classes: int | None = None) -> None:
        """Replace the head by a freshly initialised ``nn.Linear(D, num_classes)`` (same device/dtype).

        ``num_classes=None`` keeps the current K.
        """
        k = self.num_classes if num_classes is None else int(num_classes)
        if k < 1:
            raise SpurAuditError(f"num_classes must be >= 1, got {num_classes}")
        ref = self.head.weight
        self.head = nn.Linear(self.feature_dim, k).to(device=ref.device, dtype=ref.dtype)
        self.num_classes = k

    def set_head(self, linear: nn.Linear) -> None:
        """Copy a trained ``nn.Linear(D, K)`` (e.g. from `train_linear_probe`) into this model's head."""
        set_head(self, linear)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, feature_dim={self.feature_dim}, num_classes={self.num_classes}, "
                f"has_spatial_map={self.has_spatial_map}")


def set_head(model: AuditModel, linear: nn.Linear) -> AuditModel:
    """Put a trained linear layer (D -> K) into ``model.head`` (weights copied; K may differ).

    Returns the model. Raises `SpurAuditError` when the input size does not match ``model.feature_dim``.
    """
    if not isinstance(linear, nn.Linear):
        raise SpurAuditError(f"expected an nn.Linear head, got {type(linear).__name__}")
    if linear.in_features != model.feature_dim:
        raise SpurAuditError(
            f"head has {linear.in_features} inputs but the model has {model.feature_dim} features; train the "
            "probe on features extracted from this model")
    ref = model.head.weight
    new = nn.Linear(linear.in_features, linear.out_features)  # always with a bias (zero if none given)
    with torch.no_grad():
        new.weight.copy_(linear.weight.detach())
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())
        else:
            new.bias.zero_()
    model.head = new.to(device=ref.device, dtype=ref.dtype)
    model.num_classes = linear.out_features
    return model
