"""Training a workspace dataset into a registered workspace model (CLI ``model train``, the ``train``
job kind and the demo share it).

`train_workspace_model` reads the dataset's train split (and val, which selects the epoch), trains
with `core.models.train.train_model`, evaluates on test (accuracy; aligned / conflicting / unbiased /
worst-group accuracy when the manifest has bias labels, through `core.metrics.evaluate_predictions`)
and saves the checkpoint as ``models/<name>/model.pt`` through the workspace
(`core.models.checkpoints.save_workspace_model`).
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from core.config import config_from_mapping
from core.data import load_manifest
from core.data.manifest import Manifest
from core.errors import SpurAuditError
from core.metrics import evaluate_predictions
from core.models.batches import predict_logits
from core.models.checkpoints import model_checkpoint_rel, save_workspace_model
from core.models.head_subset import head_rows_for, read_head_classes, restrict_head
from core.models.registry import build_model
from core.models.train import TrainConfig, train_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import Workspace


def _data_model_kwargs(arch: str, model_kwargs: dict[str, Any] | None, x: torch.Tensor) -> dict[str, Any]:
    """``model_kwargs`` with the input shape of the images ``x`` (N, C, H, W) filled in where the
    architecture needs it (``in_channels`` for small_cnn, ``input_size`` for mlp) and not given."""
    kwargs = dict(model_kwargs or {})
    if arch == "small_cnn":
        kwargs.setdefault("in_channels", int(x.shape[1]))
    if arch == "mlp":
        kwargs.setdefault("input_size", [int(v) for v in x.shape[1:]])
    return kwargs


def _test_metrics(model: torch.nn.Module, test: Manifest, *, cfg: TrainConfig, image_size: int | None,
                  device: str | torch.device, progress: ProgressFn) -> dict[str, Any]:
    """``test_<key>`` for every key of `evaluate_predictions` on the test split (NaN -> None)."""
    tx, ty = test.load_tensors(progress=progress, size=image_size)
    logits, labels = predict_logits(model, TensorDataset(tx, ty), batch_size=cfg.eval_batch_size, device=device)
    pred = logits.argmax(1).numpy()
    scores = evaluate_predictions(pred, labels.numpy(), bias=test.bias, aligned=test.aligned)
    return {f"test_{k}": (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()}


def train_workspace_model(ws: Workspace, name: str, *, dataset: str, arch: str = "small_cnn",
                          config: TrainConfig | dict[str, Any] | None = None, pretrained: str | None = None,
                          model_kwargs: dict[str, Any] | None = None, image_size: int | None = None,
                          device: str | torch.device = "auto", replace: bool = False,
                          progress: ProgressFn | None = None) -> dict[str, Any]:
    """Train ``arch`` on the train split of workspace dataset ``dataset`` and register it as ``name``.

    The val split (when present) tracks accuracy and selects the epoch; the test split is evaluated
    (``test_accuracy``, and ``test_aligned/conflicting/unbiased/worst_group_accuracy`` when the
    manifest has bias labels). The checkpoint goes to ``models/<name>/model.pt`` via the workspace.
    ``config`` is a `TrainConfig` or a mapping of its fields. ``model_kwargs`` go to `build_model`
    (``in_channels``/``input_size`` are filled from the data for small_cnn/mlp). ``image_size``
    resizes images when loading. Returns a JSON-able dict with ``model, dataset, arch, checkpoint,
    metrics, history``.
    """
    progress = progress or null_progress
    if isinstance(config, dict):
        config = config_from_mapping(TrainConfig, config, what="training")
    cfg = (config or TrainConfig()).validate()
    if ws.has_model(name) and not replace:
        raise SpurAuditError(f"model {name!r} already exists; pick another name or pass replace=True (--replace)")
    if image_size is not None and int(image_size) < 8:
        raise SpurAuditError(f"image_size must be at least 8 pixels, got {image_size}")
    ws.check_writable(model_checkpoint_rel(name))   # before the training, not after it
    manifest = load_manifest(ws, dataset)
    train_m = manifest.split("train")
    if len(train_m) == 0:
        raise SpurAuditError(f"dataset {dataset!r} has no train split rows; rebuild or re-add it with a split")
    x, y = train_m.load_tensors(progress=sub_progress(progress, 0.0, 0.05), size=image_size)
    val_m = manifest.split("val")
    val = None
    if len(val_m):
        vx, vy = val_m.load_tensors(progress=sub_progress(progress, 0.05, 0.08), size=image_size)
        val = TensorDataset(vx, vy)
    model = build_model(arch, num_classes=len(manifest.class_names), pretrained=pretrained,
                        **_data_model_kwargs(arch, model_kwargs, x))
    result = train_model(model, TensorDataset(x, y), config=cfg, val=val, device=device,
                         progress=sub_progress(progress, 0.08, 0.95))
    metrics: dict[str, Any] = {**result.summary(), "n_train": int(len(y))}
    if val is not None:
        metrics["val_accuracy"] = result.best_val_accuracy
    test_m = manifest.split("test")
    if len(test_m):
        metrics.update(_test_metrics(result.model, test_m, cfg=cfg, image_size=image_size, device=device,
                                     progress=sub_progress(progress, 0.95, 0.98)))
    record_config = {"train": asdict(cfg), "pretrained": pretrained, "device": str(device),
                     "image_size": image_size}
    rec = save_workspace_model(ws, name, result.model.cpu(), dataset=dataset, config=record_config,
                               metrics=metrics, extra={"history": result.history}, replace=replace)
    progress(1.0, f"saved model {name!r}")
    return {"model": rec.name, "dataset": rec.dataset, "arch": rec.arch, "checkpoint": str(rec.checkpoint),
            "metrics": metrics, "history": result.history}


__all__ = ["train_workspace_model", "register_checkpoint"]
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def register_checkpoint(ws: Workspace, name: str, *, dataset: str | None, arch: str, checkpoint: str | None = None,
                        num_classes: int | None = None, head_classes: str | None = None,
                        replace: bool = False) -> dict[str, Any]:
    """Build registry architecture ``arch`` with the weights at ``checkpoint`` (None = the architecture's
    default, e.g. random init) and register it as ``name`` for ``dataset`` (None: a model of no dataset;
    then ``num_classes`` is required). Head size: the dataset's class count unless ``num_classes``.

    ``head_classes``: a file listing the checkpoint's outputs in order (`core.models.head_subset`); the
    checkpoint's head is kept and restricted to the dataset's classes, matched by name (an ImageNet-1k
    model on a few wnid class folders). A checkpoint of another architecture is a `SpurAuditError` listing
    the missing and unexpected keys (`build_model`). Returns model, dataset, arch, checkpoint (the
    workspace copy), feature_dim, num_classes, has_spatial_map, head_rows (None without ``head_classes``)."""
    if dataset is None and num_classes is None:
        raise SpurAuditError("give the number of classes, or a dataset to take the number of classes from")
    record = ws.get_dataset(dataset) if dataset is not None else None
    num_classes = num_classes or record.num_classes
    if ws.has_model(name) and not replace:
        raise SpurAuditError(f"model {name!r} already exists; pick another name or replace it")
    if checkpoint is not None and not str(checkpoint).strip():
        checkpoint = None
    if checkpoint is not None and ("/" in str(checkpoint) or Path(str(checkpoint)).suffix in CHECKPOINT_SUFFIXES) \
            and not Path(str(checkpoint)).expanduser().is_file():
        raise SpurAuditError(f"checkpoint file {checkpoint} does not exist; type the path of a .pt/.pth file")
    pretrained = str(Path(str(checkpoint)).expanduser()) if checkpoint else None
    rows = None
    if head_classes:
        if record is None or checkpoint is None:
            raise SpurAuditError("a head classes file needs a dataset (its class names pick the head rows) and "
                                 "a checkpoint (whose head is restricted)")
        listed = read_head_classes(head_classes)
        rows = head_rows_for(record.class_names, listed)
        model = build_model(arch, num_classes=len(listed), pretrained=pretrained)
        restrict_head(model, rows)
    else:
        model = build_model(arch, num_classes=num_classes, pretrained=pretrained)
    config = {"pretrained": checkpoint, **({"head_classes": str(head_classes), "head_rows": rows} if rows else {})}
    rec = save_workspace_model(ws, name, model, dataset=dataset, config=config, metrics={}, replace=replace)
    return {"model": rec.name, "dataset": rec.dataset, "arch": rec.arch, "checkpoint": str(rec.checkpoint),
            "feature_dim": model.feature_dim, "num_classes": model.num_classes,
            "has_spatial_map": model.has_spatial_map, "head_rows": rows}
