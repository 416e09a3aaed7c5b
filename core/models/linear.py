"""Linear heads on cached features: the one cross-entropy loop every head fit uses, and the two fits
built on it.

* `fit_linear`: minibatch (or full-batch) cross-entropy steps on (N, D) features with a per-epoch
  callback that can stop early. Head tuning, error tuning, FFW's privacy head and the probes below
  all train through it.
* `train_linear_probe` (+ `ProbeConfig`): a new ``nn.Linear`` on frozen features, the frozen-backbone
  path of METHODS §1 (SGD momentum 0.9, lr 0.01, 20 epochs, batch 128), best validation epoch kept.
* `fit_standardized_linear`: full-batch Adam from zero weights on z-scored features, the
  standardisation folded into the returned layer (deterministic; used by FFW's fresh probes).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.models.optim import OPTIMIZERS, check_optimizer_options, make_optimizer
from core.progress import ProgressFn, null_progress

EpochFn = Callable[[int, float], bool | None]


def _rows(features: torch.Tensor | np.ndarray, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` as float32 on ``device`` (numpy/memmap rows are read in ascending order)."""
    if torch.is_tensor(features):
        return features[idx].to(device).float()
    rows = np.asarray(features[np.asarray(idx)], dtype=np.float32)
    return torch.from_numpy(rows).to(device)


def fit_linear(head: nn.Module, features: torch.Tensor | np.ndarray, labels: torch.Tensor, *,
               optimizer: torch.optim.Optimizer, epochs: int, batch_size: int | None = None,
               generator: torch.Generator | None = None, min_batch: int = 1,
               on_epoch: EpochFn | None = None) -> int:
    """Train ``head`` with cross-entropy on ``(features, labels)``; returns the epochs run.

    Args:
        head: maps (B, D) float to (B, K) logits (an ``nn.Linear`` or a module around one).
        features: (N, D) float tensor, or a numpy array/float16 memmap (read batch by batch, each
            batch's rows in ascending order).
        labels: (N,) int64 in [0, K), on any device (moved per batch).
        optimizer: over ``head``'s parameters (`core.models.optim.make_optimizer`).
        epochs: passes over the data.
        batch_size: rows per step, batches in the order of a fresh ``torch.randperm(N, generator=...)``
            each epoch; None = one full-batch step per epoch, no shuffling (no random state used).
        min_batch: batches smaller than this are skipped (a statistic over the batch needs ≥ 2 rows).
        on_epoch: ``on_epoch(epoch, mean train loss)`` after each epoch (1-based); returning True stops.
    """
    n = int(features.shape[0])
    device = next(head.parameters()).device
    with torch.enable_grad():
        for epoch in range(1, int(epochs) + 1):
            if batch_size is None:
                batches = [None]
            else:
                order = torch.randperm(n, generator=generator)                        # (N,)
                batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
            loss_sum, seen = 0.0, 0
            for idx in batches:
                if idx is None:
                    x = features.to(device).float() if torch.is_tensor(features) else \
                        _rows(features, torch.arange(n), device)
                    y = labels.to(device)
                else:
                    if len(idx) < min_batch:
                        continue
                    if not torch.is_tensor(features):
                        idx = idx.sort().values  # sequential reads on memmaps
                    x, y = _rows(features, idx, device), labels[idx.to(labels.device)].to(device)
                loss = F.cross_entropy(head(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(y)
                seen += len(y)
            if on_epoch is not None and on_epoch(epoch, loss_sum / max(seen, 1)):
                return epoch
    return int(epochs)


@torch.no_grad()
def linear_accuracy(head: nn.Module, features: torch.Tensor | np.ndarray, labels: torch.Tensor, *,
                    chunk: int = 8192) -> float:
    """Accuracy of ``head`` on (N, D) features and (N,) labels, ``chunk`` rows at a time."""
    device = next(head.parameters()).device
    correct = 0
    for s in range(0, len(labels), chunk):
        idx = torch.arange(s, min(s + chunk, len(labels)))
        correct += int((head(_rows(features, idx, device)).argmax(1).cpu() == labels[idx].cpu()).sum())
    return correct / max(len(labels), 1)


# ---------------------------------------------------------------------------------------------
# linear probe on cached features
# ---------------------------------------------------------------------------------------------
@dataclass
class ProbeConfig:
    """Options of `train_linear_probe` (defaults: METHODS §1, SGD momentum 0.9, lr 0.01, 20 epochs, batch 128)."""

    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    restore_best: bool = True

    def validate(self) -> "ProbeConfig":
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        check_optimizer_options(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return self


def positive_int(name: str, value: Any) -> None:
    """`SpurAuditError` unless ``value`` is an integer ≥ 1 (booleans refused)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < 1:
        raise SpurAuditError(f"{name} must be a positive integer, got {value!r}")


def _as_rows(features: Any, name: str) -> torch.Tensor | np.ndarray:
    if torch.is_tensor(features):
        if features.dim() != 2:
            raise SpurAuditError(f"{name} must be (N, D), got shape {tuple(features.shape)}")
        return features
    arr = features if isinstance(features, np.ndarray) else np.asarray(features)
    if arr.ndim != 2:
        raise SpurAuditError(f"{name} must be (N, D), got shape {arr.shape}")
    return arr


def _as_labels(labels: Any, n: int, num_classes: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels)).long().flatten()
    if y.numel() != n:
        raise SpurAuditError(f"{name} has {y.numel()} entries but the features have {n} rows")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise SpurAuditError(f"{name} must be class indices in [0, {num_classes}); got range "
                             f"[{int(y.min())}, {int(y.max())}]")
    return y


def train_linear_probe(features: Any, labels: Any, *, num_classes: int, config: ProbeConfig | None = None,
                       val: tuple[Any, Any] | None = None, device: str | torch.device = "auto",
                       progress: ProgressFn | None = None) -> nn.Linear:
    """Train ``nn.Linear(D, num_classes)`` on frozen features with cross-entropy.

    Args:
        features: (N, D) float array/tensor (float16 memmaps are fine; read batch by batch).
        labels: (N,) int class indices in [0, num_classes).
        config: `ProbeConfig` (SGD momentum 0.9, lr 0.01, 20 epochs, batch 128 by default).
        val: optional ``(features, labels)``; with ``config.restore_best`` the head of the best validation
            epoch is returned.
        device, progress: as everywhere.

    Returns:
        The trained ``nn.Linear`` on CPU, eval mode. Put it into a model with ``set_head(model, head)``.
    """
    cfg = (config or ProbeConfig()).validate()
    progress = progress or null_progress
    positive_int("num_classes", num_classes)
    feats = _as_rows(features, "features")
    n, d = int(feats.shape[0]), int(feats.shape[1])
    if n == 0:
        raise SpurAuditError("no features to train the probe on")
    y = _as_labels(labels, n, num_classes, "labels")
    val_feats = val_y = None
    if val is not None:
        val_feats = _as_rows(val[0], "val features")
        if int(val_feats.shape[1]) != d:
            raise SpurAuditError(f"val features have {val_feats.shape[1]} columns, train features {d}")
        val_y = _as_labels(val[1], int(val_feats.shape[0]), num_classes, "val labels")
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    head = nn.Linear(d, int(num_classes)).to(dev)
    opt = make_optimizer(cfg.optimizer, head.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay)
    best: dict[str, Any] = {"acc": None, "state": None}

    def after_epoch(epoch: int, loss: float) -> None:
        msg = f"probe epoch {epoch}/{cfg.epochs} loss {loss:.4f}"
        if val_feats is not None and val_y is not None:
            acc = linear_accuracy(head, val_feats, val_y)
            msg += f" val {acc:.3f}"
            if best["acc"] is None or acc > best["acc"]:
                best.update(acc=acc, state=copy.deepcopy(head.state_dict()))
        progress(epoch / cfg.epochs, msg)

    fit_linear(head, feats, y, optimizer=opt, epochs=cfg.epochs, batch_size=cfg.batch_size, generator=gen,
               on_epoch=after_epoch)
    if cfg.restore_best and best["state"] is not None:
        head.load_state_dict(best["state"])
    return head.cpu().eval()


# ---------------------------------------------------------------------------------------------
# standardized full-batch fit
# ---------------------------------------------------------------------------------------------
def fit_standardized_linear(z: torch.Tensor, labels: torch.Tensor, *, num_values: int, steps: int = 300,
                            lr: float = 0.05, weight_decay: float = 1e-4) -> nn.Linear:
    """A linear classifier trained to convergence (full-batch Adam, ``steps`` steps) on z-scored features.

    ``z``: (N, D) float, ``labels``: (N,) int64 in [0, num_values). The standardisation (statistics of
    ``z``) is folded into the returned ``nn.Linear(D, num_values)``, so it reads raw features:
    ``W_s (z − μ)/σ + b = (W_s/σ) z + (b − W_s μ/σ)``. Weights start at zero, so a feature constant on
    ``z`` (a pruned neuron) keeps weight 0. Full-batch from zero weights: deterministic, no random
    state used.
    """
    z = z.detach().float()
    mu = z.mean(0, keepdim=True)
    sd = z.std(0, keepdim=True, unbiased=False) + 1e-6
    a = (z - mu) / sd                                          # (N, D)
    lin = nn.Linear(a.shape[1], int(num_values)).to(a.device)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    opt = make_optimizer("adam", lin.parameters(), lr=lr, weight_decay=weight_decay)
    fit_linear(lin, a, labels, optimizer=opt, epochs=steps, batch_size=None)
    folded = nn.Linear(a.shape[1], int(num_values)).to(a.device)
    with torch.no_grad():
        w = lin.weight / sd                                    # (K, D)
        folded.weight.copy_(w)
        folded.bias.copy_(lin.bias - w @ mu[0])
    return folded


__all__ = ["fit_linear", "linear_accuracy", "ProbeConfig", "train_linear_probe", "fit_standardized_linear",
           "positive_int"]
