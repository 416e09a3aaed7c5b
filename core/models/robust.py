"""Robustness-library (Madry lab) ResNet-50 checkpoints -> `AuditModel`.

The spuriosity-ranking paper's encoder is the robustness library's adversarially trained ResNet-50
(L2 eps=3, ``imagenet_l2_3_0.pt``). Its checkpoint is a dict with the weights under ``['model']``
(sometimes ``['state_dict']``), keyed like::

    module.model.conv1.weight            -> conv1.weight          (the classifier we keep)
    module.attacker.model.conv1.weight   -> dropped               (a copy used by the attacker)
    module.normalizer.new_mean (3,1,1)   -> model normalisation mean
    module.normalizer.new_std  (3,1,1)   -> model normalisation std
    module.attacker.normalize.new_mean   -> dropped

`convert_robustness_state_dict` does this conversion; `build_robust_resnet50` builds the model (arch
``robust-resnet50``, registered on import).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision

from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.checkpoints import extract_state_dict, load_state_dict_checked, torch_load
from core.models.registry import register_model
from core.models.resnet import IMAGENET_MEAN, IMAGENET_STD, wrap_torchvision_resnet


def convert_robustness_state_dict(state: Mapping[str, Any]) -> tuple[dict, tuple[float, ...] | None,
                                                                       tuple[float, ...] | None]:
    """Robustness-library state dict -> (torchvision state dict, mean or None, std or None).

    Strips ``module.`` then ``model.``, drops ``attacker.*`` (and any other non-model keys), and reads
    ``normalizer.new_mean`` / ``normalizer.new_std`` (with or without ``module.``) as the normalisation.
    A state dict that is already torchvision-style (``conv1.weight`` at top level) passes through.
    """
    model_sd: dict[str, torch.Tensor] = {}
    other: dict[str, torch.Tensor] = {}
    mean = std = None
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("attacker."):
            continue
        if k in ("normalizer.new_mean", "normalize.new_mean"):
            mean = tuple(float(v) for v in torch.as_tensor(value).flatten().tolist())
            continue
        if k in ("normalizer.new_std", "normalize.new_std"):
            std = tuple(float(v) for v in torch.as_tensor(value).flatten().tolist())
            continue
        if k.startswith("model."):
            model_sd[k[len("model."):]] = value
        else:
            other[k] = value
    if not model_sd:  # already a plain torchvision state dict
        model_sd = {k: v for k, v in other.items() if not k.startswith("normalizer.")}
    return model_sd, mean, std


@register_model("robust-resnet50")
def build_robust_resnet50(*, num_classes: int, pretrained: str | Path | Mapping | None = None) -> AuditModel:
    """ResNet-50 with a robustness-library checkpoint (path, or an already loaded checkpoint dict).

    ``pretrained=None`` builds a random-init model with ImageNet normalisation (for tests). The
    checkpoint's ImageNet fc becomes the head when ``num_classes`` equals its output size (1000);
    otherwise the head is freshly initialised (train it with `train_linear_probe`).
    """
    net = torchvision.models.resnet50(weights=None)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if pretrained is not None:
        source = "(in-memory dict)" if isinstance(pretrained, Mapping) else repr(str(pretrained))
        obj = pretrained if isinstance(pretrained, Mapping) else torch_load(pretrained)
        state = extract_state_dict(obj, keys=("model", "state_dict"))
        model_sd, ck_mean, ck_std = convert_robustness_state_dict(state)
        if "fc.weight" in model_sd and model_sd["fc.weight"].shape[0] != net.fc.out_features:
            net.fc = torch.nn.Linear(net.fc.in_features, int(model_sd["fc.weight"].shape[0]))
        load_state_dict_checked(
            net, model_sd, source=source,
            fix="pass a robustness-library ResNet-50 checkpoint (keys 'module.model.conv1.weight', ...) "
                "or a torchvision resnet50 state dict; other architectures are not supported by 'robust-resnet50'")
        if ck_mean is not None:
            mean = ck_mean
        if ck_std is not None:
            std = ck_std
        if len(mean) != 3 or len(std) != 3:
            raise SpurAuditError(f"checkpoint normaliser has {len(mean)}/{len(std)} values; expected 3 (RGB)")
    return wrap_torchvision_resnet(net, arch="robust-resnet50", num_classes=num_classes, config={},
                                   mean=mean, std=std)
