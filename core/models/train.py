"""Training: ERM / GCE, optional L2-PGD adversarial training, weighted sampling.

`train_model` trains a whole `AuditModel` (or any ``nn.Module`` mapping images to logits) on a torch
Dataset yielding ``(x, y, ...)`` with x a (C, H, W) float image in [0, 1] (uint8 is scaled by 1/255).
In-memory ``TensorDataset``s (and ``Subset``s of them) are indexed by whole batches directly instead
of through a DataLoader with per-item collation, which is several times faster on CPU.

Linear heads on cached features (probes, head tuning) train in `core.models.linear`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from core.device import resolve_device
from core.config import config_from_mapping
from core.errors import SpurAuditError, check_choice
from core.models.linear import positive_int
from core.models.losses import gce_loss
from core.models.optim import OPTIMIZERS, make_optimizer
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
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SpurAuditError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise SpurAuditError(f"need weight_decay >= 0 and 0 <= momentum < 1, got {self.weight_decay}, {self.momentum}")
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
# data access
# ---------------------------------------------------------------------------------------------
def _tensor_source(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) tensors behind a TensorDataset (or a Subset of one), else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, Subset):
        inner = _tensor_source(dataset.dataset)
        if inner is not None:
            idx = torch.as_tensor(list(dataset.indices), dtype=torch.long)
            return inner[0][idx], inner[1][idx]
    return None


def _prepare_x(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float() if x.dtype != torch.float32 else x


def _iter_batches(dataset: Dataset, order: torch.Tensor, batch_size: int, device: torch.device,
                  num_workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches following ``order`` (a (N',) index tensor)."""
    source = _tensor_source(dataset)
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


def _dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    source = _tensor_source(dataset)
    return None if source is None else source[1]


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
    for x, y in _iter_batches(dataset, order, batch_size, dev, num_workers):
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


# ---------------------------------------------------------------------------------------------
# adversarial examples
# ---------------------------------------------------------------------------------------------
def l2_pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                  step_size: float | None = None) -> torch.Tensor:
    """L2 projected gradient ascent on the cross-entropy, in [0, 1] pixel space.

    x: (B, C, H, W) float in [0, 1]; y: (B,) int64. Each step moves ``step_size`` along the per-image
    L2-normalised gradient, projects the perturbation onto the L2 ball of radius ``eps`` and clamps
    the image to [0, 1]. Starts from x (no random start). Returns the detached adversarial batch.
    The model's mode is left as is (train mode during adversarial training, like the robustness library).
    """
    if eps <= 0:
        return x.detach()
    step = float(step_size) if step_size is not None else 2.5 * float(eps) / max(int(steps), 1)
    x = x.detach()
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(int(steps)):
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        gnorm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        new = delta.detach() + step * grad / gnorm
        dnorm = new.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        new = new * torch.clamp(float(eps) / dnorm, max=1.0)
        new = (x + new).clamp_(0.0, 1.0) - x
        delta = new.requires_grad_(True)
    return (x + delta).detach()


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
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SpurAuditError("model has no trainable parameters (all requires_grad=False)")
    opt = make_optimizer(cfg.optimizer, params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_iters is not None:
        total_steps = min(total_steps, cfg.max_iters)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    elif cfg.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs or max(1, cfg.epochs // 3),
                                                    gamma=cfg.gamma)

    history: list[dict[str, Any]] = []
    best_acc: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early = False
    it = 0
    report_every = max(1, total_steps // 200)
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        if it >= total_steps:
            break
        t0 = time.perf_counter()
        model.train()
        if weights is not None:
            order = torch.multinomial(weights, n, replacement=True, generator=gen)  # (N,) sampled indices
        else:
            order = torch.randperm(n, generator=gen)  # (N,)
        loss_sum, correct, seen = 0.0, 0, 0
        lr_now = opt.param_groups[0]["lr"]
        for x, y in _iter_batches(train, order, cfg.batch_size, dev, cfg.num_workers):
            if cfg.adv_eps > 0:
                x = l2_pgd_attack(model, x, y, eps=cfg.adv_eps, steps=cfg.adv_steps, step_size=cfg.adv_step_size)
            if cfg.input_noise_std > 0:
                x = x + cfg.input_noise_std * torch.randn(x.shape, generator=gen).to(x.device)
            logits = model(x)  # (B, K)
            if cfg.loss == "gce":
                loss = gce_loss(logits, y, q=cfg.gce_q)
            else:
                loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise SpurAuditError(f"training diverged (loss {float(loss)}) at epoch {epoch}; lower the lr "
                                     f"(now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if cfg.schedule == "cosine":
                scheduler.step()  # type: ignore[union-attr]
            it += 1
            b = len(y)
            loss_sum += float(loss.detach()) * b
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += b
            if it % report_every == 0:
                progress(0.98 * it / total_steps, f"epoch {epoch}/{cfg.epochs} loss {loss_sum / seen:.4f}")
            if it >= total_steps:
                break
        if cfg.schedule == "step":
            scheduler.step()  # type: ignore[union-attr]
        row: dict[str, Any] = {"epoch": epoch, "iterations": it, "lr": lr_now,
                               "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                               "val_acc": None}
        if val is not None:
            acc = evaluate_accuracy(model, val, batch_size=cfg.eval_batch_size, device=dev,
                                    num_workers=cfg.num_workers)
            row["val_acc"] = acc
            if best_acc is None or acc > best_acc:
                best_acc, best_epoch = acc, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        msg = f"epoch {epoch}/{cfg.epochs} loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}"
        if row["val_acc"] is not None:
            msg += f" val {row['val_acc']:.3f}"
        progress(0.98 * it / total_steps, msg)
        if (val is not None and cfg.early_stopping_patience is not None
                and epoch - best_epoch >= cfg.early_stopping_patience):
            stopped_early = True
            break
    if val is None:
        best_epoch = len(history)
    elif cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
        best_acc = history[-1]["val_acc"] if history else None
    model.eval()
    wall = time.perf_counter() - start
    progress(1.0, f"done in {wall:.1f}s" + (f", best val {best_acc:.3f} (epoch {best_epoch})" if best_acc is not None else ""))
    return TrainResult(model=model, history=history, best_epoch=best_epoch, best_val_accuracy=best_acc,
                       wall_time=wall, iterations=it, stopped_early=stopped_early, config=asdict(cfg))


# ---------------------------------------------------------------------------------------------
# workspace training (CLI `model train` and the "train" job kind)
# ---------------------------------------------------------------------------------------------
def train_workspace_model(ws: Any, name: str, *, dataset: str, arch: str = "small_cnn",
                          config: TrainConfig | dict[str, Any] | None = None, pretrained: str | None = None,
                          model_kwargs: dict[str, Any] | None = None, image_size: int | None = None,
                          device: str | torch.device = "auto", replace: bool = False,
                          progress: ProgressFn | None = None) -> dict[str, Any]:
    """Train ``arch`` on the train split of workspace dataset ``dataset`` and register it as ``name``.

    The val split (when present) tracks accuracy and selects the epoch; the test split is evaluated
    (``test_accuracy``, and ``test_aligned/conflicting/unbiased/worst_group_accuracy`` when the
    manifest has bias labels). The checkpoint goes to ``models/<name>/model.pt`` via the workspace.
    ``model_kwargs`` go to `build_model` (``in_channels``/``input_size`` are filled from the data for
    small_cnn/mlp). ``image_size`` resizes images when loading. Returns a JSON-able dict with
    ``model, dataset, arch, checkpoint, metrics, history``.
    """
    from torch.utils.data import TensorDataset as _TD

    from core.data import load_manifest
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.progress import sub_progress

    progress = progress or null_progress
    if isinstance(config, dict):
        config = config_from_mapping(TrainConfig, config, what="training")
    cfg = (config or TrainConfig()).validate()
    if ws.has_model(name) and not replace:
        raise SpurAuditError(f"model {name!r} already exists; pick another name or pass replace=True (--replace)")
    if image_size is not None and int(image_size) < 8:
        raise SpurAuditError(f"image_size must be at least 8 pixels, got {image_size}")
    manifest = load_manifest(ws, dataset)
    train_m = manifest.split("train")
    if len(train_m) == 0:
        raise SpurAuditError(f"dataset {dataset!r} has no train split rows; rebuild or re-add it with a split")
    x, y = train_m.load_tensors(progress=sub_progress(progress, 0.0, 0.05), size=image_size)
    val_m = manifest.split("val")
    val = None
    if len(val_m):
        vx, vy = val_m.load_tensors(progress=sub_progress(progress, 0.05, 0.08), size=image_size)
        val = _TD(vx, vy)
    kwargs = dict(model_kwargs or {})
    if arch == "small_cnn":
        kwargs.setdefault("in_channels", int(x.shape[1]))
    if arch == "mlp":
        kwargs.setdefault("input_size", [int(v) for v in x.shape[1:]])
    model = build_model(arch, num_classes=len(manifest.class_names), pretrained=pretrained, **kwargs)
    result = train_model(model, _TD(x, y), config=cfg, val=val, device=device,
                         progress=sub_progress(progress, 0.08, 0.95))
    metrics: dict[str, Any] = {**result.summary(), "n_train": int(len(y))}
    if val is not None:
        metrics["val_accuracy"] = result.best_val_accuracy
    test_m = manifest.split("test")
    if len(test_m):
        tx, ty = test_m.load_tensors(progress=sub_progress(progress, 0.95, 0.98), size=image_size)
        logits, labels = predict_logits(result.model, _TD(tx, ty), batch_size=cfg.eval_batch_size, device=device)
        pred = logits.argmax(1).numpy()
        try:
            from core.metrics import evaluate_predictions
        except ImportError:  # pragma: no cover - metrics module is part of the tree
            test = {"accuracy": float((pred == labels.numpy()).mean())}
        else:
            test = evaluate_predictions(pred, labels.numpy(), bias=test_m.bias, aligned=test_m.aligned)
        metrics.update({f"test_{k}": (None if isinstance(v, float) and math.isnan(v) else v)
                        for k, v in test.items()})
    record_config = {"train": asdict(cfg), "pretrained": pretrained, "device": str(device),
                     "image_size": image_size}
    rec = save_workspace_model(ws, name, result.model.cpu(), dataset=dataset, config=record_config,
                               metrics=metrics, extra={"history": result.history}, replace=replace)
    progress(1.0, f"saved model {name!r}")
    return {"model": rec.name, "dataset": rec.dataset, "arch": rec.arch, "checkpoint": str(rec.checkpoint),
            "metrics": metrics, "history": result.history}
