"""All checkpoint I/O of the engine: reading any torch file safely, state-dict helpers, SpurAudit model
checkpoints (save / load / from a workspace record), and masked (pruned) model exports.

* `torch_load` is the one reader (``weights_only=True``; every failure is a `SpurAuditError`).
* `extract_state_dict`, `strip_prefix`, `load_state_dict_checked`: foreign weights into a model, with
  missing/unexpected keys listed; `load_weights_into` (a SpurAudit checkpoint or plain state dict of the
  same architecture, the ``pretrained=`` of the small builders); `is_checkpoint_path` (is a
  ``pretrained=`` value a file path rather than a library weights tag?).
* `model_checkpoint` / `save_model` / `load_model` / `model_from_checkpoint`: the ``spuraudit-model``
  format (``format``, ``version``, ``arch``, ``config``, ``num_classes``, ``feature_dim``,
  ``has_spatial_map``, ``state_dict``, ``extra``), rebuilt through the registry with no other information.
* `save_workspace_model` / `load_workspace_model`: ``models/<name>/model.pt`` plus the workspace record.
* `export_masked_model` / `load_masked_model`: the ``spuraudit-masked-model`` format of mitigation runs
  (pruned weights zeroed plus the binary masks).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from core.device import resolve_device
from core.errors import SpurAuditError
from core.models.audit_model import AuditModel
from core.models.gates import apply_masks, masked_state
from core.models.registry import build_model
from core.serialize import to_plain

CHECKPOINT_FORMAT = "spuraudit-model"
CHECKPOINT_VERSION = 1
MASKED_FORMAT = "spuraudit-masked-model"


def torch_load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: the one way the engine reads a checkpoint file.

    Every failure is a `SpurAuditError` naming the file and the fix: missing, a folder, empty (0 bytes),
    truncated or not a torch file, or holding pickled Python objects that ``weights_only`` refuses
    (those are never executed)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SpurAuditError(f"checkpoint {str(p)!r} not found; pass the path of an existing .pt/.pth file")
    if not p.is_file():
        raise SpurAuditError(f"checkpoint {str(p)!r} is a folder, not a file; pass the .pt/.pth file inside it")
    if p.stat().st_size == 0:
        raise SpurAuditError(f"checkpoint {str(p)!r} is empty (0 bytes), probably an interrupted copy or save; "
                             "copy or save it again")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():   # no class or function named: the bytes are not a pickle
            raise SpurAuditError(f"checkpoint {str(p)!r} is not a readable torch file (damaged or of another "
                                 "format); save it again with torch.save") from None
        raise SpurAuditError(
            f"checkpoint {str(p)!r} holds pickled Python objects, which are never loaded (torch.load(weights_only=True) "
            "refuses them: they could run code). "
            "Re-save only its tensors in a trusted environment: torch.save(ckpt['model'] (or its state_dict), "
            "'weights.pt')") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file; all mean the same
        raise SpurAuditError(
            f"checkpoint {str(p)!r} is not a readable torch file ({type(exc).__name__}: {_first_line(exc)}); "
            "it may be truncated or of another format — save it again with torch.save") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


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


def is_checkpoint_path(value: Any) -> bool:
    """Whether a ``pretrained=`` value names a file (a `Path`, an existing path, a string with a ``/`` or a
    checkpoint suffix) rather than a library weights tag such as ``"DEFAULT"``."""
    if isinstance(value, Path):
        return True
    if not isinstance(value, str):
        return False
    return os.path.exists(os.path.expanduser(value)) or "/" in value or value.endswith((".pt", ".pth", ".bin",
                                                                                          ".safetensors", ".ckpt"))


def load_weights_into(model: nn.Module, pretrained: str | Path) -> None:
    """Load a SpurAudit checkpoint or a plain state dict of the same architecture (keys may carry a
    ``module.`` prefix) from ``pretrained`` into ``model``; mismatches raise `SpurAuditError`."""
    state = extract_state_dict(torch_load(pretrained))
    load_state_dict_checked(model, strip_prefix(state, "module."), source=repr(str(pretrained)))


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
    return model_from_checkpoint(torch_load(ws.path(rel)), device=device, source=f"of model {name!r} ({rel})")


# ---------------------------------------------------------------------------------------------
# masked (pruned) models of mitigation runs
# ---------------------------------------------------------------------------------------------
def export_masked_model(model: nn.Module) -> dict:
    """A ``torch.save``-able dict (tensors, str, lists only) of an `AuditModel` with its binary masks.

    Keys: ``format`` (``spuraudit-masked-model``), ``arch``, ``config``, ``num_classes``, ``state_dict``
    (pruned weights zeroed), ``masks`` (layer name -> bool tensor; empty when unpruned). Load with
    `load_masked_model` (works with ``torch.load(weights_only=True)``).
    """
    state = masked_state(model)
    return {"format": MASKED_FORMAT, "arch": getattr(model, "arch", ""),
            "config": dict(getattr(model, "config", {})), "num_classes": int(getattr(model, "num_classes", 0)),
            "state_dict": state["state_dict"], "masks": state["masks"]}


def load_masked_model(obj: dict, *, device: "str | torch.device" = "cpu") -> nn.Module:
    """Rebuild the `AuditModel` saved by `export_masked_model` (architecture from the registry, masks attached)."""
    if not isinstance(obj, dict) or obj.get("format") != MASKED_FORMAT:
        raise SpurAuditError("not a SpurAudit masked-model checkpoint; save it with "
                             "core.models.checkpoints.export_masked_model")
    model = build_model(obj["arch"], num_classes=int(obj["num_classes"]), **obj["config"])
    model.load_state_dict(obj["state_dict"])
    if obj["masks"]:
        apply_masks(model, obj["masks"])
    return model.to(resolve_device(device)).eval()
