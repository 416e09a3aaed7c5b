"""Batches of a torch Dataset on a device, and a model's predictions over one.

Datasets yield ``(x, y, ...)`` with x a (C, H, W) image in [0, 1] (uint8 is scaled by 1/255) and y
an int class index. In-memory ``TensorDataset``s (and ``Subset``s of them) are indexed by whole
batches directly instead of through a DataLoader with per-item collation, which is several times
faster on CPU; both paths yield the same batches.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from core.device import resolve_device
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress


def tensor_source(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) tensors behind a TensorDataset (or a Subset of one), else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, Subset):
        inner = tensor_source(dataset.dataset)
        if inner is not None:
            idx = torch.as_tensor(list(dataset.indices), dtype=torch.long)
            return inner[0][idx], inner[1][idx]
    return None


def _prepare_x(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images on ``device`` as float32 (uint8 scaled to [0, 1])."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float() if x.dtype != torch.float32 else x


def iter_batches(dataset: Dataset, order: torch.Tensor, batch_size: int, device: torch.device,
                 num_workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (B, C, H, W) float32, y (B,) int64) batches on ``device`` following ``order`` (a (N',)
    index tensor)."""
    source = tensor_source(dataset)
    if source is not None:
        xs, ys = source
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield _prepare_x(xs[idx], device), ys[idx].to(device).long()
        return
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    for batch in loader:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise SpurAuditError("training datasets must yield (x, y, ...) tuples; got a single value per item")
        yield _prepare_x(batch[0], device), torch.as_tensor(batch[1]).to(device).long()


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, *, batch_size: int = 512, device: str | torch.device = "auto",
                   num_workers: int = 0, progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) float32 and labels (N,) int64 (both on CPU) of ``model`` on ``dataset``, in order."""
    dev = resolve_device(device)
    progress = progress or null_progress
    was_training = model.training
    model.to(dev).eval()
    n = len(dataset)
    order = torch.arange(n)
    logits, labels = [], []
    done = 0
    for x, y in iter_batches(dataset, order, batch_size, dev, num_workers):
        logits.append(model(x).float().cpu())
        labels.append(y.cpu())
        done += len(y)
        progress(done / max(n, 1), f"predict {done}/{n}")
    model.train(was_training)
    if not logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def evaluate_accuracy(model: nn.Module, dataset: Dataset, *, batch_size: int = 512,
                      device: str | torch.device = "auto", num_workers: int = 0) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``dataset``."""
    logits, labels = predict_logits(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers)
    if len(labels) == 0:
        raise SpurAuditError("cannot evaluate on an empty dataset")
    return float((logits.argmax(1) == labels).float().mean())


__all__ = ["evaluate_accuracy", "iter_batches", "predict_logits", "tensor_source"]
