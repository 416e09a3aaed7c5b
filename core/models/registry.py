"""Model registry: build an `AuditModel` by name, save it and load it back.

Names (``MODEL_REGISTRY``):

- ``small_cnn``: DCWP's Colored-MNIST net: 3 conv 4x4 stride 2 (padding 1), widths 64/128/256,
  BatchNorm + ReLU, global average pool, fc. kwargs ``widths=(64, 128, 256)``, ``in_channels=3``,
  ``mean``/``std`` (default: no normalisation). Feature map = last block's ReLU output.
- ``mlp``: flattened input, hidden layers with ReLU; kwargs ``hidden=(100, 100, 100)``,
  ``input_size=(3, 28, 28)``. Features = last hidden layer. No spatial map.
- ``resnet18`` / ``resnet50``: torchvision; ``pretrained=`` a local checkpoint path (or a torchvision
  weights name such as ``"DEFAULT"`` when the weights are already cached). Feature map = layer4 output.
- ``robust-resnet50``: torchvision ResNet-50 from a robustness-library checkpoint (see `core.models.robust`);
  the checkpoint's normaliser becomes the model's normalisation.
- ``timm:<name>``: any timm model. Spatial map = ``forward_features`` when that returns (B, D, h, w) and
  timm's own pre-logits equal its global average; otherwise features = timm's pre-logits, no spatial map.
- ``clip:<model-name>``: an open_clip image tower (see `core.models.clip_tower`); features = image embedding.
- ``demo_cnn``: the shipped demo encoder (`core.models.demo_encoder`, imported lazily).

Every builder has the signature ``builder(*, num_classes, pretrained=None, **kwargs) -> AuditModel``;
prefix families (``timm:``, ``clip:``) also receive ``name=`` (the part after the colon).
Heavy libraries (timm, open_clip) are imported inside their builders.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from core.errors import SpurAuditError, check_call_options
from core.serialize import to_plain
from core.models.audit_model import AuditModel
from core.models.checkpoints import extract_state_dict, load_state_dict_checked, strip_prefix, torch_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ModelBuilder = Callable[..., AuditModel]


def _is_path_like(value: Any) -> bool:
    if isinstance(value, Path):
        return True
    if not isinstance(value, str):
        return False
    return os.path.exists(os.path.expanduser(value)) or "/" in value or value.endswith((".pt", ".pth", ".bin",
                                                                                          ".safetensors", ".ckpt"))


# ---------------------------------------------------------------------------------------------
# small_cnn and mlp
# ---------------------------------------------------------------------------------------------
def _small_cnn_encoder(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_channels
    for w in widths:
        layers += [nn.Conv2d(prev, w, kernel_size=4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                   nn.ReLU(inplace=True)]
        prev = w
    return nn.Sequential(*layers)


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
    mean = [0.0] * in_channels if mean is None else [float(v) for v in mean]
    std = [1.0] * in_channels if std is None else [float(v) for v in std]
    config: dict[str, Any] = {"widths": widths, "in_channels": in_channels, "mean": mean, "std": std}
    model = AuditModel(arch="small_cnn", config=config, encoder=_small_cnn_encoder(in_channels, widths),
                       feature_dim=widths[-1], num_classes=num_classes, mean=mean, std=std, has_spatial_map=True)
    if pretrained is not None:
        _load_weights_file(model, pretrained)
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
    mean = [0.0] * channels if mean is None else [float(v) for v in mean]
    std = [1.0] * channels if std is None else [float(v) for v in std]
    config = {"hidden": hidden, "input_size": size, "mean": mean, "std": std}
    model = AuditModel(arch="mlp", config=config, encoder=_MLPEncoder(in_features, hidden), feature_dim=hidden[-1],
                       num_classes=num_classes, mean=mean, std=std, has_spatial_map=False)
    if pretrained is not None:
        _load_weights_file(model, pretrained)
    return model


def _load_weights_file(model: AuditModel, pretrained: str | Path) -> None:
    """Load a SpurAudit checkpoint or plain state dict of the same AuditModel into ``model``."""
    obj = torch_load(pretrained)
    state = extract_state_dict(obj)
    load_state_dict_checked(model, strip_prefix(state, "module."), source=repr(str(pretrained)))


# ---------------------------------------------------------------------------------------------
# torchvision ResNets
# ---------------------------------------------------------------------------------------------
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


def _build_torchvision_resnet(depth: int, *, num_classes: int, pretrained: Any = None) -> AuditModel:
    import torchvision

    fn = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    arch = f"resnet{depth}"
    if pretrained is None or pretrained is False:
        net = fn(weights=None)
    elif _is_path_like(pretrained):
        net = fn(weights=None)
        state = strip_prefix(extract_state_dict(torch_load(pretrained)), "module.")
        if any(k.startswith("model.") for k in state) and not any(k.startswith("conv1.") for k in state):
            state = strip_prefix(state, "model.")
        if "fc.weight" in state and state["fc.weight"].shape[0] != net.fc.out_features:
            net.fc = nn.Linear(net.fc.in_features, int(state["fc.weight"].shape[0]))
        load_state_dict_checked(net, state, source=repr(str(pretrained)),
                                fix=f"pass a torchvision {arch} state dict (keys conv1.weight, layer1.0..., fc.weight); "
                                    "for robustness-library checkpoints use arch 'robust-resnet50'")
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


def build_resnet18(*, num_classes: int, pretrained: Any = None) -> AuditModel:
    """torchvision ResNet-18 (ImageNet normalisation); feature map = layer4 (B, 512, H/32, W/32)."""
    return _build_torchvision_resnet(18, num_classes=num_classes, pretrained=pretrained)


def build_resnet50(*, num_classes: int, pretrained: Any = None) -> AuditModel:
    """torchvision ResNet-50 (ImageNet normalisation); feature map = layer4 (B, 2048, H/32, W/32)."""
    return _build_torchvision_resnet(50, num_classes=num_classes, pretrained=pretrained)


def build_robust_resnet50(*, num_classes: int, pretrained: Any = None) -> AuditModel:
    """ResNet-50 from a robustness-library checkpoint (``pretrained`` = its path; None = random init)."""
    from core.models.robust import build_robust_resnet50 as _build

    return _build(num_classes=num_classes, pretrained=pretrained)


# ---------------------------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------------------------
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


def build_timm(*, name: str, num_classes: int, pretrained: Any = None, **timm_kwargs: Any) -> AuditModel:
    """Any timm model; ``pretrained`` = local state-dict path, True (timm's cached weights) or None."""
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a dependency
        raise SpurAuditError("arch 'timm:<name>' needs the timm package; pip install timm") from exc
    if not name:
        raise SpurAuditError("timm arch needs a model name, e.g. 'timm:resnet18'; see timm.list_models()")
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        raise SpurAuditError(f"unknown timm model {name!r}; similar names: {', '.join(close) or '(none)'}")
    use_timm_weights = pretrained is True or (isinstance(pretrained, str) and not _is_path_like(pretrained)
                                              and pretrained.lower() in {"true", "timm", "default", "imagenet"})
    try:
        net = timm.create_model(name, pretrained=use_timm_weights, **timm_kwargs)
    except Exception as exc:
        raise SpurAuditError(
            f"could not create timm model {name!r}: {str(exc).splitlines()[0] if str(exc) else exc}. "
            "Without internet pass pretrained=<local state dict path> or pretrained=None") from exc
    if pretrained is not None and pretrained is not False and not use_timm_weights:
        if not _is_path_like(pretrained):
            raise SpurAuditError(f"timm pretrained must be a local checkpoint path, True or None; got {pretrained!r}")
        state = strip_prefix(extract_state_dict(torch_load(pretrained)), "module.")
        load_state_dict_checked(net, state, source=repr(str(pretrained)),
                                fix=f"pass a state dict saved from timm.create_model({name!r})")
    # keep timm's classifier if it already has num_classes outputs
    classifier = None
    get_clf = getattr(net, "get_classifier", None)
    if callable(get_clf):
        clf = get_clf()
        if isinstance(clf, nn.Linear) and clf.out_features == int(num_classes):
            classifier = (clf.weight.detach().clone(), clf.bias.detach().clone() if clf.bias is not None else None)
    net.reset_classifier(0)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    # probe: a spatial map is used only when timm's pooled features are its global average
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


def build_clip(*, name: str, num_classes: int, pretrained: Any = None, **kwargs: Any) -> AuditModel:
    """open_clip image tower; see `core.models.clip_tower.build_clip_model`."""
    from core.models.clip_tower import build_clip_model

    return build_clip_model(name=name, num_classes=num_classes, pretrained=pretrained, **kwargs)


def build_demo_cnn(*, num_classes: int, pretrained: Any = None, **kwargs: Any) -> AuditModel:
    """The demo encoder's CNN (``core.models.demo_encoder``; ``pretrained="shipped"`` = the bundled
    weights). Resolved lazily so checkpoints of arch ``demo_cnn`` load in any process."""
    from core.models.demo_encoder import build_demo_cnn as _build

    return _build(num_classes=num_classes, pretrained=pretrained, **kwargs)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
MODEL_REGISTRY: dict[str, ModelBuilder] = {
    "small_cnn": build_small_cnn,
    "mlp": build_mlp,
    "resnet18": build_resnet18,
    "resnet50": build_resnet50,
    "robust-resnet50": build_robust_resnet50,
    "demo_cnn": build_demo_cnn,
    "timm:": build_timm,   # prefix family: "timm:<name>"
    "clip:": build_clip,   # prefix family: "clip:<model-name>"
}


def register_model(name: str, builder: ModelBuilder, *, replace: bool = False) -> None:
    """Add a builder (``builder(*, num_classes, pretrained=None, **kwargs) -> AuditModel``).

    A name ending in ``":"`` registers a prefix family whose builder also receives ``name=``.
    """
    if not name:
        raise SpurAuditError("model name must be non-empty")
    if name in MODEL_REGISTRY and not replace:
        raise SpurAuditError(f"model {name!r} is already registered; pass replace=True to override")
    MODEL_REGISTRY[name] = builder


def available_models() -> list[str]:
    """Registered names (prefix families shown as ``timm:<name>``, ``clip:<name>``)."""
    return [k + "<name>" if k.endswith(":") else k for k in MODEL_REGISTRY]


def build_model(arch: str, *, num_classes: int, pretrained: Any = None, **kwargs: Any) -> AuditModel:
    """Build an `AuditModel` by registry name.

    Args:
        arch: a `MODEL_REGISTRY` name, or ``"timm:<name>"`` / ``"clip:<name>"``.
        num_classes: K, the head's output size.
        pretrained: a local checkpoint path (or a library weights tag, see each builder); None = random init.
        **kwargs: builder options (``widths``, ``in_channels``, ``hidden``, ...); stored in ``model.config``
            so `load_model` can rebuild the model.
    """
    if not isinstance(arch, str) or not arch:
        raise SpurAuditError(f"arch must be a model name; valid choices: {', '.join(available_models())}")
    try:
        num_classes = int(num_classes)
    except (TypeError, ValueError) as exc:
        raise SpurAuditError(f"num_classes must be an integer >= 1, got {num_classes!r}") from exc
    if num_classes < 1:
        raise SpurAuditError(f"num_classes must be >= 1, got {num_classes}")
    if arch in MODEL_REGISTRY and not arch.endswith(":"):
        builder = MODEL_REGISTRY[arch]
        check_call_options(f"arch {arch!r}", builder, kwargs, unlisted=("num_classes", "pretrained", "name"))
        return builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
    if ":" in arch:
        family, name = arch.split(":", 1)
        builder = MODEL_REGISTRY.get(family + ":")
        if builder is not None:
            check_call_options(f"arch {arch!r}", builder, kwargs, unlisted=("num_classes", "pretrained", "name"))
            return builder(name=name, num_classes=num_classes, pretrained=pretrained, **kwargs)
    raise SpurAuditError(f"unknown arch {arch!r}; valid choices: {', '.join(available_models())}")


