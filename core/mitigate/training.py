"""The shared training loop of the weight-training methods (ERM, JTT, MRM, DCWP, mining), on in-memory
tensors (no DataLoader, no per-iteration disk reads).

* Sampling: `IndexSampler` (uniform epochs or weighted draws of row indices), `oversample_weights`,
  `lambda_up_for_fraction` (DCWP's λ_up table).
* Batches: `BatchSource` (index batches -> image/label batches on the device, optionally shifted by
  `random_shift`, the translation augmentation).
* Selection: `ValSelector` keeps the best validation checkpoint (`core.mitigate.metrics.selection_key`).
* `fit`: a generic optimiser loop with validation selection, as a short sequence of named steps.
* Models: `set_seed`, `fresh_copy` (same architecture, re-initialised), `default_model`.
* `check_training_options`: validation of the options the method configs share.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import SpurAuditError, check_choice
from core.mitigate.data import MitigationData
from core.mitigate.metrics import quick_val_metrics, selection_key
from core.models.gates import GUMBEL_INPUTS
from core.models.optim import OPTIMIZERS, make_optimizer
from core.models.registry import build_model
from core.progress import ProgressFn, null_progress


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
def oversample_weights(n: int, mined: torch.Tensor | np.ndarray, lambda_up: float) -> torch.Tensor:
    """Per-sample sampling weights, float64 (n,): ``lambda_up`` for mined samples, 1 for the rest.

    ``mined``: bool mask (n,) or int indices. With these weights a sampler draws each mined sample
    ``lambda_up`` times as often as each other sample (in expectation).
    """
    if lambda_up <= 0:
        raise SpurAuditError(f"lambda_up must be > 0 (1 = no oversampling), got {lambda_up}")
    mask = _as_mask(n, mined)
    w = torch.ones(n, dtype=torch.float64)
    w[mask] = float(lambda_up)
    return w


def _as_mask(n: int, mined) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mined) if not isinstance(mined, torch.Tensor) else mined)
    if t.dtype == torch.bool:
        if t.numel() != n:
            raise SpurAuditError(f"mined mask has {t.numel()} entries for {n} samples")
        return t.reshape(-1).clone()
    idx = t.long().reshape(-1)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise SpurAuditError(f"mined indices must lie in [0, {n}), got range [{int(idx.min())}, {int(idx.max())}]")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return mask


LAMBDA_UP_TABLE = ((0.005, 80.0), (0.01, 50.0), (0.02, 30.0), (0.05, 10.0))


def lambda_up_for_fraction(fraction: float) -> float:
    """DCWP's upweighting λ_up for a conflicting fraction (0.5/1/2/5 % -> 80/50/30/10), nearest in log."""
    if not fraction or fraction <= 0 or not math.isfinite(fraction):
        return LAMBDA_UP_TABLE[1][1]
    lf = math.log(fraction)
    return min(LAMBDA_UP_TABLE, key=lambda kv: abs(math.log(kv[0]) - lf))[1]


class IndexSampler:
    """Batches of row indices drawn in memory (no DataLoader).

    Uniform (``weights=None``): epochs of a seeded random permutation, each sample once per epoch.
    Weighted: i.i.d. draws with replacement proportional to ``weights`` (float (N,)), pre-drawn in
    chunks. ``next()`` returns int64 (batch_size,) indices.
    """

    def __init__(self, n: int, batch_size: int, *, weights: torch.Tensor | None = None, seed: int = 0,
                 chunk: int = 64) -> None:
        if n < 1:
            raise SpurAuditError("cannot sample from an empty training set")
        if batch_size < 1:
            raise SpurAuditError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size = int(n), int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
            if len(w) != n or bool((w < 0).any()) or float(w.sum()) <= 0:
                raise SpurAuditError("sampler weights must be (N,) non-negative with a positive sum")
            self.weights = w
        self.chunk = int(chunk)
        self._buffer = torch.empty(0, dtype=torch.long)

    def _refill(self) -> None:
        if self.weights is None:
            need = max(self.batch_size, 1)
            parts = [self._buffer]
            total = len(self._buffer)
            while total < need:
                perm = torch.randperm(self.n, generator=self.generator)
                parts.append(perm)
                total += len(perm)
            self._buffer = torch.cat(parts)
        else:
            draws = torch.multinomial(self.weights, self.batch_size * self.chunk, replacement=True,
                                      generator=self.generator)
            self._buffer = torch.cat([self._buffer, draws])

    def next(self) -> torch.Tensor:
        if len(self._buffer) < self.batch_size:
            self._refill()
        out, self._buffer = self._buffer[:self.batch_size], self._buffer[self.batch_size:]
        return out

    def __iter__(self):
        while True:
            yield self.next()


# ---------------------------------------------------------------------------------------------
# batches and augmentation
# ---------------------------------------------------------------------------------------------
def random_shift(images: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by its own random offset in [-max_shift, max_shift] pixels.

    ``images``: (B, C, H, W) float; the uncovered border is filled with zeros. Returns a new tensor of
    the same shape (the input is untouched); ``max_shift <= 0`` returns ``images`` itself. Offsets are
    drawn on the CPU from ``generator`` (seeded runs stay reproducible).
    """
    k = int(max_shift)
    if k <= 0:
        return images
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * k + 1, (2, b), generator=generator).to(images.device)   # (2, B) in [0, 2k]
    padded = F.pad(images, (k, k, k, k))                                                  # (B, C, H+2k, W+2k)
    rows = torch.arange(h, device=images.device)[None, :] + offsets[0][:, None]             # (B, H)
    cols = torch.arange(w, device=images.device)[None, :] + offsets[1][:, None]             # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chan = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


class BatchSource:
    """Training batches of ``data``'s train split drawn by ``sampler``.

    The (small) training tensors move to an accelerator ``device`` once, instead of one transfer per
    step. ``next()`` returns ``(idx, xb, yb)``: the CPU int64 (B,) row indices (for per-sample state
    such as mined flags), images (B, C, H, W) and labels (B,) on ``device``; with ``augment_shift > 0``
    the images are translated by `random_shift`, offsets drawn from the sampler's generator.
    """

    def __init__(self, data: MitigationData, sampler: IndexSampler, *, device: torch.device,
                 augment_shift: int = 0) -> None:
        self.sampler, self.augment_shift = sampler, int(augment_shift)
        self.on_cpu = device.type == "cpu"
        self.x, self.y = data.x_train, data.y_train
        if not self.on_cpu:
            self.x, self.y = self.x.to(device), self.y.to(device)
        self.device = device

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.sampler.next()
        gidx = idx if self.on_cpu else idx.to(self.device)
        xb, yb = self.x[gidx], self.y[gidx]
        if self.augment_shift > 0:
            xb = random_shift(xb, self.augment_shift, generator=self.sampler.generator)
        return idx, xb, yb


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def set_seed(seed: int) -> None:
    """Seed torch and numpy (the generators of samplers are seeded separately)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def fresh_copy(model: nn.Module, *, seed: int) -> nn.Module:
    """A deep copy of ``model`` with every parameter re-initialised (same architecture), seeded."""
    out = copy.deepcopy(model)
    torch.manual_seed(int(seed))
    for module in out.modules():
        if hasattr(module, "reset_parameters") and module is not out:
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def default_model(data: MitigationData, *, arch: str = "small_cnn", seed: int = 0) -> nn.Module:
    """A freshly initialised `AuditModel` of ``arch`` for ``data`` (used when no base model is given)."""
    torch.manual_seed(int(seed))
    return build_model(arch, num_classes=data.num_classes)


def check_training_options(*, optimizer: str | None = None, augment_shift: int = 0, lr_decay=None,
                           gumbel_input: str | None = None) -> None:
    """Validate the training options shared by the method configs; raise `SpurAuditError` naming the
    bad one. ``None`` skips an option the method does not have."""
    if optimizer is not None:
        check_choice("optimizer", optimizer, OPTIMIZERS)
    if gumbel_input is not None:
        check_choice("gumbel_input", gumbel_input, GUMBEL_INPUTS)
    if augment_shift < 0:
        raise SpurAuditError(f"augment_shift must be >= 0 pixels, got {augment_shift}")
    if lr_decay is not None and (len(lr_decay) != 2 or int(lr_decay[0]) < 1 or not 0 < float(lr_decay[1]) <= 1):
        raise SpurAuditError(f"lr_decay must be (step_size >= 1, gamma in (0, 1]), got {lr_decay}")


# ---------------------------------------------------------------------------------------------
# selection and the loop
# ---------------------------------------------------------------------------------------------
def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class ValSelector:
    """Keeps the state of the best model seen so far by a validation score (higher is better).

    ``update(model, metrics, iteration)`` returns True when ``metrics`` improved on the best (strictly).
    ``restore(model)`` loads the best state back. Without a val split nothing is selected and the
    last state is kept.
    """

    def __init__(self) -> None:
        self.best_score = -math.inf
        self.best_iteration: int | None = None
        self.best_metrics: dict | None = None
        self._state: dict | None = None
        self.last_state: dict | None = None   # set by `fit`: the weights after the last step
        self.step_wall_s = 0.0   # set by `fit`: wall / process-CPU seconds spent in training steps only
        self.step_cpu_s = 0.0    # (validation evaluations excluded)

    def update(self, model: nn.Module, metrics: dict, iteration: int) -> bool:
        score = selection_key(metrics)
        if score > self.best_score:
            self.best_score, self.best_iteration, self.best_metrics = score, int(iteration), dict(metrics)
            self._state = state_copy(model)
            return True
        return False

    def restore(self, model: nn.Module) -> nn.Module:
        if self._state is not None:
            model.load_state_dict(self._state)
        return model


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy (the ``loss_fn`` `fit` uses by default)."""
    return F.cross_entropy(model(xb), yb)


def fit(model: nn.Module, data: MitigationData, *, iterations: int, batch_size: int = 256, lr: float = 1e-3,
        weight_decay: float = 0.0, sampler: IndexSampler | None = None, loss_fn: LossFn | None = None,
        params: list[nn.Parameter] | None = None, eval_every: int = 0, select: bool = True,
        lr_decay: tuple[int, float] | None = None, eval_at_start: bool = False, device: torch.device,
        seed: int = 0, stage: str = "train", optimizer: str = "adam", momentum: float = 0.9,
        on_step: Callable[[int], None] | None = None, augment_shift: int = 0,
        history: list[dict] | None = None, progress: ProgressFn | None = None) -> ValSelector:
    """Train ``model`` in place with an optimiser (Adam by default) on in-memory training tensors.

    Args:
        iterations: number of mini-batch steps (>= 0).
        sampler: where batch indices come from (default: uniform epochs, seeded with ``seed``).
        loss_fn: ``loss_fn(model, xb, yb, idx) -> scalar`` (default cross-entropy).
        params: what to optimise (default: every parameter with ``requires_grad``).
        eval_every: evaluate on val every so many steps (0 = only at the end); each evaluation is
            appended to ``history`` (val metrics only).
        select: restore the best validation checkpoint at the end (when a val split exists).
        lr_decay: ``(step_size, gamma)`` of a StepLR schedule, or None.
        optimizer: "adam" or "sgd" (with ``momentum``; the DCWP reference's CMNIST setting).
        on_step: called with the step number after every optimiser step (e.g. to score samples
            along the training trajectory); it must leave the model in training mode.
        augment_shift: translate every training batch by up to this many pixels (`random_shift`);
            0 = no augmentation. Evaluation never sees augmented images.
        eval_at_start: also evaluate (and make selectable, as iteration 0) the model before training.

    Returns the `ValSelector` (``best_iteration`` = selected step, or None without val/selection;
    ``last_state`` = the state dict after the last step, before restoring the selected one).
    """
    if iterations < 0:
        raise SpurAuditError(f"iterations must be >= 0, got {iterations}")
    progress = progress or null_progress
    loss_fn = loss_fn or ce_loss_fn
    sampler = sampler or IndexSampler(data.n_train, batch_size, seed=seed)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    model.to(device)
    selector = ValSelector()
    has_val = data.has_split("val")
    if iterations == 0 or not params:   # nothing to train: the model as it is is the selection
        if has_val and select:
            selector.update(model, quick_val_metrics(model, data, device=device), 0)
        return selector
    opt = make_optimizer(optimizer, params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_decay[0], gamma=lr_decay[1]) if lr_decay else None
    batches = BatchSource(data, sampler, device=device, augment_shift=augment_shift)
    every = eval_every if eval_every > 0 else iterations
    if eval_at_start and has_val:
        m0 = _select_on_val(model, data, selector, iteration=0, select=select, device=device)
        if history is not None:
            history.append({"stage": stage, "iteration": 0, "val": m0})
    model.train()
    running = 0.0
    for step in range(1, iterations + 1):
        running += _train_step(model, batches, loss_fn, opt, sched, on_step, step, selector)
        if step % every == 0 or step == iterations:
            entry: dict[str, Any] = {"stage": stage, "iteration": step, "train_loss": running / every}
            running = 0.0
            if has_val:
                entry["val"] = _select_on_val(model, data, selector, iteration=step, select=select, device=device)
                model.train()
            if history is not None:
                history.append(entry)
            progress(step / iterations, f"{stage} {step}/{iterations} loss {entry['train_loss']:.3f}")
    selector.last_state = state_copy(model)
    if select and has_val:
        selector.restore(model)
    model.eval()
    return selector


def _train_step(model: nn.Module, batches: BatchSource, loss_fn: LossFn, opt: torch.optim.Optimizer, sched,
                on_step: Callable[[int], None] | None, step: int, selector: ValSelector) -> float:
    """One optimiser step on the next batch (then the schedule, then ``on_step``); returns the loss.
    Its wall / process-CPU time is added to ``selector.step_wall_s`` / ``step_cpu_s``."""
    w0, c0 = time.perf_counter(), time.process_time()
    idx, xb, yb = batches.next()
    loss = loss_fn(model, xb, yb, idx)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    if on_step is not None:
        on_step(step)
    value = float(loss.detach())
    selector.step_wall_s += time.perf_counter() - w0
    selector.step_cpu_s += time.process_time() - c0
    return value


def _select_on_val(model: nn.Module, data: MitigationData, selector: ValSelector, *, iteration: int, select: bool,
                   device: torch.device) -> dict:
    """Validation metrics of the current model, offered to ``selector`` as ``iteration`` when ``select``."""
    metrics = quick_val_metrics(model, data, device=device)
    if select:
        selector.update(model, metrics, iteration)
    return metrics


__all__ = ["oversample_weights", "LAMBDA_UP_TABLE", "lambda_up_for_fraction", "IndexSampler", "random_shift",
           "BatchSource", "set_seed", "fresh_copy", "default_model", "check_training_options", "ValSelector",
           "LossFn", "ce_loss_fn", "state_copy", "fit"]
