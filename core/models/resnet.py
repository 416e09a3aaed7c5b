"""torchvision ResNets: ``resnet18`` / ``resnet50`` (registered on import), and the wrapper that turns
any torchvision ResNet into an `AuditModel` (also used by `core.models.robust`).

``pretrained=`` a local checkpoint path (a torchvision state dict, keys ``conv1.weight``, ...), or a
torchvision weights name such as ``"DEFAULT"`` when the weights are already cached (no downloads
happen offline); None = random init. Feature map = layer4 output; ImageNet normalisation.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torchvision
from torch import nn

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.checkpoints import extract_state_dict, is_checkpoint_path, load_state_dict_checked, strip_prefix, \
    torch_load
from core.models.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_encoder(net: nn.Module) -> nn.Sequential:
    """torchvision ResNet trunk up to layer4 (post-ReLU): (B, 3, H, W) -> (B, D, H/32, W/32)."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


def wrap_torchvision_resnet(net: nn.Module, *, arch: str, num_classes: int, config: dict,
                            mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> AuditModel:
    """Wrap a torchvision ResNet; its ``fc`` becomes the head when it already has ``num_classes`` outputs."""
    feature_dim = int(net.fc.in_features)
    model = AuditModel(arch=arch, config=config, encoder=resnet_encoder(net), feature_dim=feature_dim,
                       num_classes=num_classes, mean=mean, std=std, has_spatial_map=True)
    if int(net.fc.out_features) == int(num_classes):
        with torch.no_grad():
            model.head.weight.copy_(net.fc.weight)
            model.head.bias.copy_(net.fc.bias)
    return model


def _load_local_resnet(net: nn.Module, pretrained: Any, arch: str) -> None:
    """A torchvision state dict from a file into ``net`` (``module.``/``model.`` prefixes stripped; an fc
    of another size is replaced by one of the checkpoint's size first)."""
    state = strip_prefix(extract_state_dict(torch_load(pretrained)), "module.")
    if any(k.startswith("model.") for k in state) and not any(k.startswith("conv1.") for k in state):
        state = strip_prefix(state, "model.")
    if "fc.weight" in state and state["fc.weight"].shape[0] != net.fc.out_features:
        net.fc = nn.Linear(net.fc.in_features, int(state["fc.weight"].shape[0]))
    load_state_dict_checked(net, state, source=repr(str(pretrained)),
                            fix=f"pass a torchvision {arch} state dict (keys conv1.weight, layer1.0..., fc.weight); "
                                "for robustness-library checkpoints use arch 'robust-resnet50'")


def _build_torchvision_resnet(depth: int, *, num_classes: int, pretrained: Any = None) -> AuditModel:
    fn = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    arch = f"resnet{depth}"
    if pretrained is None or pretrained is False:
        net = fn(weights=None)
    elif is_checkpoint_path(pretrained):
        net = fn(weights=None)
        _load_local_resnet(net, pretrained, arch)
    else:
        weights = "DEFAULT" if pretrained is True else str(pretrained)
        try:
            net = fn(weights=weights)
        except Exception as exc:  # unknown weights name, or not cached and offline
            raise SpurAuditError(
                f"could not get torchvision {arch} weights {weights!r}: {str(exc).splitlines()[0] if str(exc) else exc}. "
                "Pass pretrained=<path to a local .pth state dict> (no downloads happen offline), "
                "or pretrained=None for random init") from exc
    return wrap_torchvision_resnet(net, arch=arch, num_classes=num_classes, config={})


@register_model("resnet18")
def build_resnet18(*, num_classes: int, pretrained: Any = None) -> AuditModel:
    """torchvision ResNet-18 (ImageNet normalisation); feature map = layer4 (B, 512, H/32, W/32)."""
    return _build_torchvision_resnet(18, num_classes=num_classes, pretrained=pretrained)


@register_model("resnet50")
def build_resnet50(*, num_classes: int, pretrained: Any = None) -> AuditModel:
    """torchvision ResNet-50 (ImageNet normalisation); feature map = layer4 (B, 2048, H/32, W/32)."""
    return _build_torchvision_resnet(50, num_classes=num_classes, pretrained=pretrained)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_resnet18", "build_resnet50", "resnet_encoder",
           "wrap_torchvision_resnet"]
