"""The model registry: a dict from architecture name to builder, and `build_model`.

A leaf (as timm's ``_registry.py``): it imports no builder. Builder modules register themselves with
the `register_model` decorator when they are imported, and ``core/models/__init__.py`` imports them
all, so every name below is registered as soon as anything under ``core.models`` is imported:

- ``small_cnn``, ``mlp``: `core.models.small_nets`
- ``resnet18``, ``resnet50``: `core.models.resnet` (torchvision)
- ``robust-resnet50``: `core.models.robust` (robustness-library checkpoints)
- ``timm:<name>``: `core.models.timm_models`
- ``clip:<model-name>``: `core.models.clip_tower` (open_clip image tower)
- ``demo_cnn``: `core.models.demo_encoder` (the shipped demo encoder)

Every builder has the signature ``builder(*, num_classes, pretrained=None, **kwargs) -> AuditModel``;
a name ending in ``":"`` is a prefix family (``timm:``, ``clip:``) whose builder also receives
``name=`` (the part after the colon).
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import SpurAuditError, check_call_options
from core.models.audit_model import AuditModel

ModelBuilder = Callable[..., AuditModel]

#: name -> builder (a name ending in ":" is a prefix family: "timm:" builds "timm:<name>")
MODEL_REGISTRY: dict[str, ModelBuilder] = {}

_FILLED_IN = ("num_classes", "pretrained", "name")   # passed by build_model itself, not user options


def register_model(name: str, builder: ModelBuilder | None = None, *, replace: bool = False) -> Any:
    """Register ``builder`` under ``name``; with no builder, return a decorator that registers the
    function it decorates (and returns it unchanged)::

        @register_model("small_cnn")
        def build_small_cnn(*, num_classes, pretrained=None, widths=(64, 128, 256)) -> AuditModel: ...

        register_model("my_net", build_my_net)         # the call form, for tests and extensions

    A name ending in ``":"`` registers a prefix family whose builder also receives ``name=``.
    An existing name raises `SpurAuditError` unless ``replace=True``.
    """
    if not name:
        raise SpurAuditError("model name must be non-empty")

    def add(fn: ModelBuilder) -> ModelBuilder:
        if name in MODEL_REGISTRY and not replace:
            raise SpurAuditError(f"model {name!r} is already registered; pass replace=True to override")
        MODEL_REGISTRY[name] = fn
        return fn

    return add if builder is None else add(builder)


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
            so `core.models.checkpoints.load_model` can rebuild the model.
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
        check_call_options(f"arch {arch!r}", builder, kwargs, unlisted=_FILLED_IN)
        return builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
    if ":" in arch:
        family, name = arch.split(":", 1)
        builder = MODEL_REGISTRY.get(family + ":")
        if builder is not None:
            check_call_options(f"arch {arch!r}", builder, kwargs, unlisted=_FILLED_IN)
            return builder(name=name, num_classes=num_classes, pretrained=pretrained, **kwargs)
    raise SpurAuditError(f"unknown arch {arch!r}; valid choices: {', '.join(available_models())}")


__all__ = ["MODEL_REGISTRY", "ModelBuilder", "available_models", "build_model", "register_model"]
