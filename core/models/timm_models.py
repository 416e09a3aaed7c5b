"""``timm:<name>``: any timm model as an `AuditModel` (the ``timm:`` family, registered on import).

Spatial map = ``forward_features`` when that returns (B, D, h, w) and timm's own pre-logits equal its
global average; otherwise features = timm's pre-logits and there is no spatial map (the input is then
resized to the model's input size inside the model). timm is a heavy optional backend: it is imported
inside the builder, so ``import core.models`` never loads it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.checkpoints import extract_state_dict, is_checkpoint_path, load_state_dict_checked, strip_prefix, \
    torch_load
from core.models.registry import register_model
from core.models.resnet import IMAGENET_MEAN, IMAGENET_STD

_TIMM_WEIGHT_TAGS = {"true", "timm", "default", "imagenet"}


class _TimmEncoder(nn.Module):
    """timm model -> spatial map (``forward_features``) or pre-logits features."""

    def __init__(self, net: nn.Module, spatial: bool):
        super().__init__()
        self.net = net
        self.spatial = bool(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.forward_features(x)
        if self.spatial:
            return out  # (B, D, h, w)
        return self.net.forward_head(out, pre_logits=True)  # (B, D)


def _create_timm_net(name: str, pretrained: Any, timm_kwargs: dict) -> nn.Module:
    """``timm.create_model(name)`` with timm's cached weights (``pretrained`` True or a tag) or a local
    state dict (``pretrained`` a path) loaded in."""
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a dependency
        raise SpurAuditError("arch 'timm:<name>' needs the timm package; pip install timm") from exc
    if not name:
        raise SpurAuditError("timm arch needs a model name, e.g. 'timm:resnet18'; see timm.list_models()")
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        raise SpurAuditError(f"unknown timm model {name!r}; similar names: {', '.join(close) or '(none)'}")
    use_timm_weights = pretrained is True or (isinstance(pretrained, str) and not is_checkpoint_path(pretrained)
                                              and pretrained.lower() in _TIMM_WEIGHT_TAGS)
    try:
        net = timm.create_model(name, pretrained=use_timm_weights, **timm_kwargs)
    except Exception as exc:
        raise SpurAuditError(
            f"could not create timm model {name!r}: {str(exc).splitlines()[0] if str(exc) else exc}. "
            "Without internet pass pretrained=<local state dict path> or pretrained=None") from exc
    if pretrained is not None and pretrained is not False and not use_timm_weights:
        if not is_checkpoint_path(pretrained):
            raise SpurAuditError(f"timm pretrained must be a local checkpoint path, True or None; got {pretrained!r}")
        state = strip_prefix(extract_state_dict(torch_load(pretrained)), "module.")
        load_state_dict_checked(net, state, source=repr(str(pretrained)),
                                fix=f"pass a state dict saved from timm.create_model({name!r})")
    return net


def _matching_classifier(net: nn.Module, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) copies of timm's classifier when it already has ``num_classes`` outputs, else None."""
    get_clf = getattr(net, "get_classifier", None)
    if callable(get_clf):
        clf = get_clf()
        if isinstance(clf, nn.Linear) and clf.out_features == int(num_classes):
            return clf.weight.detach().clone(), clf.bias.detach().clone() if clf.bias is not None else None
    return None


def _probe_spatial(net: nn.Module, input_size: tuple) -> tuple[bool, int]:
    """(spatial, feature_dim): a spatial map is used only when timm's pooled features are its global
    average (checked on two seeded random images)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        probe = torch.rand(2, *input_size, generator=torch.Generator().manual_seed(0))
        fmap = net.forward_features(probe)
        pooled = net.forward_head(fmap, pre_logits=True)
        spatial = (fmap.dim() == 4 and pooled.dim() == 2 and fmap.shape[1] == pooled.shape[1]
                   and torch.allclose(fmap.mean(dim=(2, 3)), pooled, atol=1e-4, rtol=1e-4))
        feature_dim = int(fmap.shape[1]) if spatial else int(pooled.shape[-1])
    net.train(was_training)
    return bool(spatial), feature_dim


@register_model("timm:")
def build_timm(*, name: str, num_classes: int, pretrained: Any = None, **timm_kwargs: Any) -> AuditModel:
    """Any timm model; ``pretrained`` = local state-dict path, True (timm's cached weights) or None."""
    net = _create_timm_net(name, pretrained, timm_kwargs)
    classifier = _matching_classifier(net, num_classes)   # kept as the head when it already fits
    net.reset_classifier(0)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    spatial, feature_dim = _probe_spatial(net, input_size)
    resize = None if spatial else (int(input_size[1]), int(input_size[2]))
    model = AuditModel(arch=f"timm:{name}", config=dict(timm_kwargs), encoder=_TimmEncoder(net, spatial),
                       feature_dim=feature_dim, num_classes=num_classes, mean=mean, std=std,
                       has_spatial_map=spatial, resize=resize)
    if classifier is not None:
        with torch.no_grad():
            model.head.weight.copy_(classifier[0])
            if classifier[1] is not None:
                model.head.bias.copy_(classifier[1])
    return model


__all__ = ["build_timm"]
