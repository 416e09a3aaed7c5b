"""What mitigation runs measure beyond `core.metrics`.

* `model_outputs`: logits and penultimate features of a model on in-memory images.
* `evaluate_model` / `quick_val_metrics`: group accuracies of a model on one split of a
  `MitigationData` (`core.metrics.evaluate_predictions`) plus bias decodability of its features.
* `selection_key`: the validation score every method maximises when it selects a checkpoint.
* `finish_result`: evaluate the selected model on val and (once, for reporting) on test and pack the
  `MitigationResult`. Model selection uses the validation split only; the test split is read here, at
  the end, and nowhere before.
* Cost: `measure_cost` / `CostMeter` (wall time, peak RSS, peak GPU memory), `peak_rss_mb`.
"""
from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from core.device import resolve_device
from core.metrics import bias_decodability, evaluate_predictions
from core.mitigate.data import MitigationData, MitigationResult
from core.progress import ProgressFn, null_progress


@torch.inference_mode()
def model_outputs(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 512,
                  device: "str | torch.device" = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, K) float32 and penultimate features (N, D) float32 of an `AuditModel`-like model
    (``features(x)`` and ``forward_head(f)``) on in-memory images (N, C, H, W) in [0, 1]."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        xb = images[start:start + batch_size].to(dev, non_blocking=True)
        f = model.features(xb)
        logits.append(model.forward_head(f).float().cpu())
        feats.append(f.float().cpu())
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


@dataclass
class CostMeter:
    """Wall time and peak memory of a block (``with measure_cost() as cost: ...``)."""

    wall_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    _start: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, float | None]:
        return {"wall_time_s": self.wall_time_s, "peak_rss_mb": self.peak_rss_mb, "peak_cuda_mb": self.peak_cuda_mb}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / (1024.0 * 1024.0)


@contextmanager
def measure_cost(device: "str | torch.device" = "cpu") -> Iterator[CostMeter]:
    meter = CostMeter(_start=time.perf_counter())
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        yield meter
    finally:
        meter.wall_time_s = time.perf_counter() - meter._start
        meter.peak_rss_mb = peak_rss_mb()
        if dev.type == "cuda":
            meter.peak_cuda_mb = torch.cuda.max_memory_allocated(dev) / 2**20


# ---------------------------------------------------------------------------------------------
# evaluation of a model on a split, selection score, the finished result
# ---------------------------------------------------------------------------------------------
def selection_key(metrics: dict) -> float:
    """The validation score a run maximises: unbiased accuracy when bias labels exist, else accuracy."""
    value = metrics.get("unbiased_accuracy")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = metrics["accuracy"]
    return float(value)


def evaluate_model(model: nn.Module, data: MitigationData, split: str, *, device: "str | torch.device" = "auto",
                   decodability: bool = True, batch_size: int = 512) -> dict:
    """Metrics of ``model`` (an `AuditModel`) on one split.

    Returns `evaluate_predictions` keys (``accuracy``, ``unbiased_accuracy``, ``aligned_accuracy``,
    ``conflicting_accuracy``, ``worst_group_accuracy``, ``n_groups``, ``n``) plus
    ``bias_decodability`` (cross-validated accuracy of a standardized linear probe reading the bias
    from the penultimate features; only when ``decodability`` and ≥ 2 bias values are known).
    """
    sp = data.split(split)
    logits, feats = model_outputs(model, sp.x, batch_size=batch_size, device=device)
    pred = logits.argmax(1)
    has_bias = sp.has_bias
    out = evaluate_predictions(pred, sp.y.numpy(), bias=sp.bias.numpy() if has_bias else None,
                               aligned=sp.aligned.numpy() if has_bias else None)
    if decodability and has_bias:
        known = sp.bias.numpy() >= 0
        if len(np.unique(sp.bias.numpy()[known])) >= 2:
            out["bias_decodability"] = bias_decodability(feats, sp.bias.numpy())
    return out


@torch.no_grad()
def quick_val_metrics(model: nn.Module, data: MitigationData, *, device: torch.device,
                      batch_size: int = 1000) -> dict:
    """Validation group accuracies (no decodability probe); used for checkpoint selection."""
    return evaluate_model(model, data, "val", device=device, decodability=False, batch_size=batch_size)


def finish_result(*, method: str, model: nn.Module, data: MitigationData, params: dict, device: torch.device,
                  started: float, history: list[dict], extra: dict | None = None, sparsity: float | None = None,
                  mining: dict | None = None, selected_iteration: int | None = None,
                  decodability: bool = True, progress: ProgressFn | None = None) -> MitigationResult:
    """Evaluate the selected model on val and (once, for reporting) on test and pack the result."""
    progress = progress or null_progress
    wall = time.perf_counter() - started  # training cost; evaluation is not counted
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if data.has_split(split):
            progress(0.5 if split == "val" else 0.9, f"evaluating on {split}")
            metrics[split] = evaluate_model(model, data, split, device=device, decodability=decodability)
    metrics["sparsity"] = sparsity
    metrics["wall_time_s"] = wall
    metrics["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if mining is not None:
        metrics["mining"] = mining
    metrics["selected_iteration"] = selected_iteration
    progress(1.0, f"{method} done")
    return MitigationResult(method=method, model=model, params=params, metrics=metrics, history=history,
                            extra=extra or {})

