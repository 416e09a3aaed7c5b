"""Training a whole model: ERM / GCE, optional L2-PGD adversarial training, weighted sampling.

`train_model` trains an `AuditModel` (or any ``nn.Module`` mapping images to logits) on a torch
Dataset yielding ``(x, y, ...)`` with x a (C, H, W) float image in [0, 1] (batches come from
`core.models.batches`). One run is a short sequence of named steps: build the optimizer and schedule,
then per epoch draw the order, take the steps (`_TrainLoop.step`), validate and keep the best weights,
and stop early when patience runs out.

Elsewhere: linear heads on cached features (probes, head tuning) in `core.models.linear`, the
adversarial attack in `core.models.attacks`, training a workspace dataset into a registered model in
`core.models.workspace_models`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.models.attacks import l2_pgd_attack
from core.models.batches import evaluate_accuracy, iter_batches
from core.models.linear import positive_int
from core.models.losses import gce_loss
from core.models.optim import OPTIMIZERS, check_optimizer_options, make_optimizer
from core.progress import ProgressFn, null_progress

SCHEDULES = ("none", "cosine", "step")
LOSSES = ("ce", "gce")


# ---------------------------------------------------------------------------------------------
# configs and results
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Options of `train_model`.

    epochs: passes over the training set. batch_size: images per step. lr, optimizer ("adam" | "sgd"),
    momentum (SGD only), weight_decay. schedule: "none" | "cosine" (per step, to 0 over the run) |
    "step" (multiply lr by ``gamma`` every ``step_epochs`` epochs; default ``max(1, epochs // 3)``).
    loss: "ce" | "gce" (``gce_q``). adv_eps > 0 turns on L2-PGD adversarial training in [0, 1] pixel
    space with ``adv_steps`` steps of size ``adv_step_size`` (default ``2.5 * adv_eps / adv_steps``).
    seed: seeds torch's global RNG and the shuffling/sampling generator (runs are deterministic on CPU).
    early_stopping_patience: stop when validation accuracy has not improved for that many epochs
    (needs ``val``; None = never stop early). restore_best: with ``val``, end with the weights of the
    best validation epoch. max_iters: cap on optimizer steps (stops mid-epoch; None = no cap).
    num_workers: DataLoader workers for non-tensor datasets. eval_batch_size: batch size for validation.
    grad_clip: clip the global gradient L2 norm to this value before each step (None = no clipping).
    input_noise_std: add N(0, σ²) noise to every training image (after any adversarial step, before the
    forward pass; pixels are not clipped), 0 = off. Both are the rare-spurious paper's regularisers.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    step_epochs: int | None = None
    gamma: float = 0.1
    loss: str = "ce"
    gce_q: float = 0.7
    adv_eps: float = 0.0
    adv_steps: int = 3
    adv_step_size: float | None = None
    seed: int = 0
    early_stopping_patience: int | None = None
    restore_best: bool = True
    max_iters: int | None = None
    num_workers: int = 0
    eval_batch_size: int = 512
    grad_clip: float | None = None
    input_noise_std: float = 0.0

    def validate(self) -> "TrainConfig":
        """Raise `SpurAuditError` naming the first invalid option; returns self."""
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("loss", self.loss, LOSSES)
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("eval_batch_size", self.eval_batch_size)
        check_optimizer_options(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if not 0 < self.gce_q <= 1:
            raise SpurAuditError(f"gce_q must be in (0, 1], got {self.gce_q}")
        if self.adv_eps < 0:
            raise SpurAuditError(f"adv_eps must be >= 0 (0 = no adversarial training), got {self.adv_eps}")
        if self.adv_eps > 0:
            positive_int("adv_steps", self.adv_steps)
            if self.adv_step_size is not None and self.adv_step_size <= 0:
                raise SpurAuditError(f"adv_step_size must be > 0, got {self.adv_step_size}")
        if self.step_epochs is not None:
            positive_int("step_epochs", self.step_epochs)
        if not 0 < self.gamma <= 1:
            raise SpurAuditError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.early_stopping_patience is not None:
            positive_int("early_stopping_patience", self.early_stopping_patience)
        if self.max_iters is not None:
            positive_int("max_iters", self.max_iters)
        if self.num_workers < 0:
            raise SpurAuditError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise SpurAuditError(f"grad_clip must be a positive number (or None = off), got {self.grad_clip}")
        if not (self.input_noise_std >= 0 and math.isfinite(self.input_noise_std)):
            raise SpurAuditError(f"input_noise_std must be >= 0 (0 = off), got {self.input_noise_std}")
        return self


@dataclass
class TrainResult:
    """What `train_model` returns.

    model: the trained model (on the training device, eval mode). history: one dict per epoch with
    epoch, iterations, lr, train_loss, train_acc (on the possibly adversarial training batches),
    val_acc (None without ``val``), seconds. best_epoch: 1-based epoch whose weights the model holds.
    best_val_accuracy: None without ``val``. wall_time: seconds. stopped_early: patience triggered.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_accuracy: float | None
    wall_time: float
    iterations: int = 0
    stopped_early: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (no model)."""
        last = self.history[-1] if self.history else {}
        return {"best_epoch": self.best_epoch, "best_val_accuracy": self.best_val_accuracy,
                "wall_time": round(self.wall_time, 3), "iterations": self.iterations,
                "stopped_early": self.stopped_early, "epochs_run": len(self.history),
                "final_train_loss": last.get("train_loss"), "final_train_acc": last.get("train_acc")}


# ---------------------------------------------------------------------------------------------
# train_model
# ---------------------------------------------------------------------------------------------
def _check_weights(sample_weights: Any, n: int) -> torch.Tensor | None:
    if sample_weights is None:
        return None
    w = torch.as_tensor(np.asarray(sample_weights, dtype=np.float64)).double().flatten()
    if w.numel() != n:
        raise SpurAuditError(f"sample_weights has {w.numel()} entries but the training set has {n} samples")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise SpurAuditError("sample_weights must be finite, non-negative and not all zero")
    return w


def _trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SpurAuditError("model has no trainable parameters (all requires_grad=False)")
    return params


def _make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """"cosine": stepped per optimizer step, to 0 over ``total_steps``; "step": stepped per epoch."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs or max(1, cfg.epochs // 3),
                                               gamma=cfg.gamma)
    return None


@dataclass
class _Best:
    """The best validation epoch so far and a copy of its weights."""

    accuracy: float | None = None
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, accuracy: float, epoch: int) -> None:
        if self.accuracy is None or accuracy > self.accuracy:
            self.accuracy, self.epoch = accuracy, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}


class _TrainLoop:
    """The optimizer, schedule, sampling generator and step counter of one `train_model` run."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, n: int, device: torch.device,
                 progress: ProgressFn) -> None:
        self.model, self.cfg, self.device, self.progress = model, cfg, device, progress
        self.gen = torch.Generator().manual_seed(cfg.seed)
        model.to(device)
        self.params = _trainable_parameters(model)
        self.opt = make_optimizer(cfg.optimizer, self.params, lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)
        self.total_steps = cfg.epochs * math.ceil(n / cfg.batch_size)
        if cfg.max_iters is not None:
            self.total_steps = min(self.total_steps, cfg.max_iters)
        self.scheduler = _make_scheduler(cfg, self.opt, self.total_steps)
        self.iterations = 0
        self.report_every = max(1, self.total_steps // 200)

    @property
    def done(self) -> bool:
        return self.iterations >= self.total_steps

    def epoch_order(self, n: int, weights: torch.Tensor | None) -> torch.Tensor:
        """(N,) indices of one epoch: drawn with replacement in proportion to ``weights``, else a permutation."""
        if weights is not None:
            return torch.multinomial(weights, n, replacement=True, generator=self.gen)
        return torch.randperm(n, generator=self.gen)

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch the model trains on: adversarial (``adv_eps`` > 0), then noisy (``input_noise_std``)."""
        cfg = self.cfg
        if cfg.adv_eps > 0:
            x = l2_pgd_attack(self.model, x, y, eps=cfg.adv_eps, steps=cfg.adv_steps, step_size=cfg.adv_step_size)
        if cfg.input_noise_std > 0:
            x = x + cfg.input_noise_std * torch.randn(x.shape, generator=self.gen).to(x.device)
        return x

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch; returns the (detached) loss and the logits (B, K)."""
        cfg = self.cfg
        logits = self.model(self._inputs(x, y))  # (B, K)
        loss = gce_loss(logits, y, q=cfg.gce_q) if cfg.loss == "gce" else F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise SpurAuditError(f"training diverged (loss {float(loss)}) at epoch {epoch}; lower the lr "
                                 f"(now {cfg.lr})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        if cfg.schedule == "cosine":
            self.scheduler.step()  # type: ignore[union-attr]
        self.iterations += 1
        return loss.detach(), logits.detach()

    def run_epoch(self, train: Dataset, epoch: int, weights: torch.Tensor | None) -> dict[str, Any]:
        """Train one epoch (or up to the step cap); returns the history row without val_acc/seconds."""
        cfg = self.cfg
        self.model.train()
        order = self.epoch_order(len(train), weights)  # (N,)
        loss_sum, correct, seen = 0.0, 0, 0
        lr_now = self.opt.param_groups[0]["lr"]
        for x, y in iter_batches(train, order, cfg.batch_size, self.device, cfg.num_workers):
            loss, logits = self.step(x, y, epoch)
            b = len(y)
            loss_sum += float(loss) * b
            correct += int((logits.argmax(1) == y).sum())
            seen += b
            if self.iterations % self.report_every == 0:
                self.progress(0.98 * self.iterations / self.total_steps,
                              f"epoch {epoch}/{cfg.epochs} loss {loss_sum / seen:.4f}")
            if self.done:
                break
        if cfg.schedule == "step":
            self.scheduler.step()  # type: ignore[union-attr]
        return {"epoch": epoch, "iterations": self.iterations, "lr": lr_now,
                "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1), "val_acc": None}


def _epoch_message(row: dict[str, Any], epochs: int) -> str:
    msg = f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}"
    if row["val_acc"] is not None:
        msg += f" val {row['val_acc']:.3f}"
    return msg


def _chosen_epoch(model: nn.Module, cfg: TrainConfig, history: list[dict[str, Any]], best: _Best,
                  has_val: bool) -> tuple[int, float | None]:
    """(1-based epoch whose weights the model ends with, its validation accuracy): the best validation
    epoch (weights restored) with ``val`` and ``restore_best``, else the last epoch."""
    if not has_val:
        return len(history), best.accuracy
    if cfg.restore_best and best.state is not None:
        model.load_state_dict(best.state)
        return best.epoch, best.accuracy
    return len(history), history[-1]["val_acc"] if history else None


def train_model(model: nn.Module, train: Dataset, *, config: TrainConfig | None = None, val: Dataset | None = None,
                sample_weights: Any = None, device: str | torch.device = "auto",
                progress: ProgressFn | None = None) -> TrainResult:
    """Train ``model`` (images -> logits) on ``train``; returns a `TrainResult`.

    Args:
        model: an `AuditModel` (or any module mapping (B, C, H, W) in [0, 1] to (B, K) logits).
        train: Dataset yielding ``(x, y, ...)``; x (C, H, W) float in [0, 1], y an int class index.
        config: `TrainConfig` (defaults if None).
        val: optional Dataset like ``train``; its accuracy is tracked per epoch, drives early stopping and
            (with ``config.restore_best``) picks the returned weights. Never use the test split here.
        sample_weights: optional (N,) non-negative weights; batches are then drawn with replacement with
            probability proportional to them (``WeightedRandomSampler`` semantics; JTT/DCWP upweighting).
            The loss itself is unweighted.
        device: "auto" | "cpu" | "cuda" | ...; the model is moved there and returned there.
        progress: ``progress(fraction, message)``.
    """
    cfg = (config or TrainConfig()).validate()
    progress = progress or null_progress
    if not isinstance(model, nn.Module):
        raise SpurAuditError(f"model must be an nn.Module, got {type(model).__name__}")
    n = len(train)
    if n == 0:
        raise SpurAuditError("training set is empty; check the dataset split")
    weights = _check_weights(sample_weights, n)
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    loop = _TrainLoop(model, cfg, n=n, device=dev, progress=progress)
    history: list[dict[str, Any]] = []
    best = _Best()
    stopped_early = False
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        if loop.done:
            break
        t0 = time.perf_counter()
        row = loop.run_epoch(train, epoch, weights)
        if val is not None:
            row["val_acc"] = evaluate_accuracy(model, val, batch_size=cfg.eval_batch_size, device=dev,
                                               num_workers=cfg.num_workers)
            best.update(model, row["val_acc"], epoch)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        progress(0.98 * loop.iterations / loop.total_steps, _epoch_message(row, cfg.epochs))
        if (val is not None and cfg.early_stopping_patience is not None
                and epoch - best.epoch >= cfg.early_stopping_patience):
            stopped_early = True
            break
    best_epoch, best_acc = _chosen_epoch(model, cfg, history, best, val is not None)
    model.eval()
    wall = time.perf_counter() - start
    progress(1.0, f"done in {wall:.1f}s" + (f", best val {best_acc:.3f} (epoch {best_epoch})" if best_acc is not None else ""))
    return TrainResult(model=model, history=history, best_epoch=best_epoch, best_val_accuracy=best_acc,
                       wall_time=wall, iterations=loop.iterations, stopped_early=stopped_early, config=asdict(cfg))


__all__ = ["LOSSES", "SCHEDULES", "TrainConfig", "TrainResult", "train_model"]
