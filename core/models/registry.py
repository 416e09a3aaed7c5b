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
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from core.errors import SpurAuditError, check_call_options
from core.serialize import to_plain
from core.models.audit_model import AuditModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "spuraudit-model"
CHECKPOINT_VERSION = 1

ModelBuilder = Callable[..., AuditModel]


# ---------------------------------------------------------------------------------------------
# checkpoint helpers
# ---------------------------------------------------------------------------------------------
def torch_load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with user-facing errors (missing file, unsafe pickle)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpurAuditError(f"checkpoint {str(p)!r} not found; pass the path of an existing .pt/.pth file")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        raise SpurAuditError(
            f"could not load checkpoint {str(p)!r} with torch.load(weights_only=True): {str(exc).splitlines()[0]}. "
            "If it holds pickled Python objects, re-save only its tensors in a trusted environment: "
            "torch.save(ckpt['model'] (or its state_dict), 'weights.pt')") from exc


def extract_state_dict(obj: Any, *, keys: Sequence[str] = ("state_dict", "model", "model_state_dict")) -> dict:
    """Return the tensor dict inside a checkpoint (a plain state dict or a dict holding one under ``keys``)."""
    if isinstance(obj, Mapping):
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                if any(torch.is_tensor(v) for v in inner.values()):
                    return dict(inner)
        if obj and all(isinstance(k, str) for k in obj) and any(torch.is_tensor(v) for v in obj.values()):
            return dict(obj)
    raise SpurAuditError(
        "checkpoint holds no state dict (expected a dict of tensors, or one under "
        f"{', '.join(repr(k) for k in keys)}); save it with torch.save(model.state_dict(), path)")


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict:
    """Remove ``prefix`` from every key that has it (others unchanged)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, Any], *, source: str,
                            fix: str = "") -> None:
    """``module.load_state_dict(state_dict, strict=True)`` that raises `SpurAuditError` listing the first
    missing/unexpected keys and shape mismatches, and how to fix them."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state_dict and torch.is_tensor(state_dict[k]) and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        def few(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (checkpoint vs model): {few(mismatched)}")
        hint = fix or ("check that the checkpoint was saved from the same architecture and options "
                       "(arch, widths, num_classes), or strip a key prefix such as 'module.'")
        raise SpurAuditError(f"checkpoint {source} does not match the model: " + "; ".join(parts) + f". Fix: {hint}")
    module.load_state_dict(state_dict, strict=True)


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


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def model_checkpoint(model: AuditModel, *, extra: Mapping[str, Any] | None = None) -> dict:
    """The dict `save_model` writes: format, version, arch, config, num_classes, feature_dim, state_dict, extra."""
    if not isinstance(model, AuditModel):
        raise SpurAuditError(f"save_model needs an AuditModel (from build_model), got {type(model).__name__}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": model.arch,
            "config": to_plain(model.config, keep_tensors=True), "num_classes": int(model.num_classes),
            "feature_dim": int(model.feature_dim), "has_spatial_map": bool(model.has_spatial_map),
            "state_dict": state, "extra": to_plain(dict(extra or {}), keep_tensors=True)}


def save_model(model: AuditModel, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (torch.save) so `load_model` rebuilds it with no other information.

    ``extra`` (training config, metrics, ...) must be JSON-like; dataclasses/numpy values are converted.
    Workspace code should pass a path from ``ws.atomic_path(rel)`` (or use ``ws.save_torch(rel,
    model_checkpoint(model, extra=...))``) so the write is atomic.
    """
    ckpt = model_checkpoint(model, extra=extra)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, p)
    return p


def model_from_checkpoint(ckpt: Mapping[str, Any], *, device: str | torch.device = "cpu",
                          source: str = "checkpoint") -> AuditModel:
    """Rebuild an `AuditModel` from a dict written by `model_checkpoint`/`save_model`."""
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SpurAuditError(
            f"{source} is not a SpurAudit model checkpoint (no 'format': {CHECKPOINT_FORMAT!r}); to use foreign "
            "weights, pass them as pretrained=PATH to build_model (e.g. arch 'resnet50' or 'robust-resnet50')")
    model = build_model(str(ckpt["arch"]), num_classes=int(ckpt["num_classes"]), pretrained=None,
                        **dict(ckpt.get("config") or {}))
    load_state_dict_checked(model, ckpt["state_dict"], source=source,
                            fix="the checkpoint was written by a different version of this architecture; retrain it")
    from core.device import resolve_device

    model.to(resolve_device(device))
    model.eval()
    model.checkpoint_extra = dict(ckpt.get("extra") or {})  # type: ignore[attr-defined]
    return model


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> AuditModel:
    """Load a checkpoint written by `save_model`; returns the model in eval mode on ``device``.

    The checkpoint's ``extra`` dict is available as ``model.checkpoint_extra``.
    """
    return model_from_checkpoint(torch_load(path), device=device, source=repr(str(path)))


# ---------------------------------------------------------------------------------------------
# workspace helpers (the workspace is passed in; every write goes through it)
# ---------------------------------------------------------------------------------------------
def model_checkpoint_rel(name: str) -> str:
    """Workspace-relative checkpoint path of model ``name``: ``models/<name>/model.pt``."""
    return f"models/{name}/model.pt"


def save_workspace_model(ws: Any, name: str, model: AuditModel, *, dataset: str | None,
                         config: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
                         extra: Mapping[str, Any] | None = None, replace: bool = False) -> Any:
    """Save ``model`` atomically as ``models/<name>/model.pt`` and register it (``ws.add_model``).

    ``config`` (training options, model kwargs) and ``metrics`` go to the record and into the
    checkpoint's ``extra`` (with ``extra``). Returns the workspace's `ModelRecord`.
    """
    if not replace and ws.has_model(name):
        raise SpurAuditError(f"model {name!r} already exists; pick another name or pass replace=True (--replace)")
    rel = model_checkpoint_rel(name)
    record_config = to_plain({"model_config": model.config, **dict(config or {})}, keep_tensors=True)
    record_metrics = to_plain(dict(metrics or {}), keep_tensors=True)
    ckpt = model_checkpoint(model, extra={"config": record_config, "metrics": record_metrics, **dict(extra or {})})
    ws.save_torch(rel, ckpt)
    return ws.add_model(name, dataset=dataset, arch=model.arch, checkpoint_rel=rel, config=record_config,
                        metrics=record_metrics, replace=replace)


def load_workspace_model(ws: Any, name: str, *, device: str | torch.device = "cpu") -> AuditModel:
    """Load the registered model ``name`` of workspace ``ws`` (eval mode, on ``device``)."""
    rec = ws.get_model(name)
    rel = getattr(rec, "checkpoint_rel", "") or ws.rel(rec.checkpoint)
    return model_from_checkpoint(ws.load_torch(rel), device=device, source=f"of model {name!r} ({rel})")
