"""What mitigation runs measure beyond `core.metrics`: model outputs on in-memory images, and cost
(wall time, peak RSS, peak GPU memory)."""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from core.device import resolve_device


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
