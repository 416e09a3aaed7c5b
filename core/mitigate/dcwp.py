"""DCWP — Debiased Contrastive Weight Pruning (Park et al., CVPR 2023; METHODS §2, seed 000).

Stages, all on in-memory tensors (index batches; no DataLoader):

1. Mining (`core.mitigate.mining`): a GCE bias-capturing model (q = 0.7); the training samples it
   misclassifies (or, with ``score="average"``, whose bias score stays high along its training) are
   the proxy bias-conflicting set.
2. Pruning: one mask logit per weight of every Conv2d/Linear layer (`core.models.gates`, init 1.5,
   Gumbel-sigmoid with hard straight-through, τ = 1, fed σ(m) as in the public code); the pretrained
   (biased ERM) weights are frozen and only the logits train (Adam, lr 1e-2). Loss per step::

       CE(batch drawn with mined samples oversampled prune_λ_up times)
       + λ_sparse · Σ logits + λ_align · debiased SupCon (τ = 0.07, `core.mitigate.supcon`)

3. Final mask = logit ≥ 0; the surviving weights are fine-tuned (no reset) with the same loss, mined
   samples oversampled λ_up times (SGD, momentum 0.9, lr 1e-2, weight decay 1e-4). The checkpoint
   with the best *validation* unbiased accuracy is kept (never test); the pruned model before
   fine-tuning (iteration 0) is a candidate too.

`prune_weights` (stage 2) is shared with the MRM baseline (`core.mitigate.baselines`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError
from core.mitigate.data import MitigationData, MitigationResult, params_dict
from core.mitigate.metrics import finish_result, quick_val_metrics
from core.mitigate.mining import MiningConfig, MiningResult, mine_conflicting
from core.mitigate.registry import register_method
from core.mitigate.supcon import debiased_supcon_loss
from core.mitigate.training import (BatchSource, IndexSampler, check_training_options, default_model, fit,
                                    lambda_up_for_fraction, oversample_weights, set_seed)
from core.models.gates import GateConfig, GatedModel, masks_of, sparsity_of_masks
from core.progress import ProgressFn, null_progress, sub_progress


@dataclass
class DCWPConfig:
    """DCWP hyper-parameters (defaults: the paper's CMNIST setting).

    prune_iterations / prune_lr: Adam on the mask logits. finetune_iterations / finetune_lr /
    finetune_optimizer / finetune_weight_decay: training of the surviving weights (SGD with momentum
    0.9, lr 1e-2, weight decay 1e-4: the reference's CMNIST setting). lambda_sparse: weight of Σ logits
    (1e-8 CMNIST, 1e-9 ResNet-18).
    lambda_up: oversampling factor of mined samples during fine-tuning; None = by the mined fraction
    (0.5/1/2/5 % -> 80/50/30/10). prune_lambda_up: the same during pruning (None = lambda_up; the
    public code oversamples 80× while pruning whatever the fraction). lambda_align: weight of the
    alignment loss (0 disables it); temperature: its τ; align_aligned_term: include its second
    (bias-aligned spreading) term. tau / mask_init: Gumbel temperature and initial logit.
    gumbel_input: "sigmoid" (default) feeds σ(m) to the Gumbel-sigmoid as the public DCWP code does,
    so every weight keeps a 27–50 % chance of being dropped while the masks are learned (keep
    probability σ(σ(m)) ∈ (0.5, 0.73)); "score" feeds m itself (keep probability σ(m)). Final mask:
    m ≥ 0 either way. augment_shift: random translation (pixels) of training batches in both stages.
    eval_every: validation evaluation period (selection during fine-tuning).
    prune_eval_every: validation evaluations during pruning, for the history only (0 = none).
    pretrain_iterations: ERM pretraining when no base model is given.
    mining: the bias-capturing model (ignored when a `MiningResult` is passed to `run_dcwp`).
    """

    # budgets and optimisers of the two stages
    prune_iterations: int = 2000
    finetune_iterations: int = 1000
    batch_size: int = 256
    prune_lr: float = 1e-2
    finetune_lr: float = 1e-2
    finetune_optimizer: str = "sgd"
    finetune_weight_decay: float = 1e-4

    # the loss: sparsity, oversampling of mined samples, alignment
    lambda_sparse: float = 1e-8
    lambda_up: float | None = None
    prune_lambda_up: float | None = 80.0
    lambda_align: float = 0.05
    align_aligned_term: bool = True
    temperature: float = 0.07

    # the masks
    tau: float = 1.0
    mask_init: float = 1.5
    gumbel_input: str = "sigmoid"

    # augmentation, evaluation, the base model and the bias-capturing model
    augment_shift: int = 0
    eval_every: int = 100
    prune_eval_every: int = 0
    pretrain_iterations: int = 1000
    mining: MiningConfig = field(default_factory=MiningConfig)

    def __post_init__(self) -> None:
        if isinstance(self.mining, dict):
            self.mining = config_from_mapping(MiningConfig, self.mining, what="dcwp.mining")
        if self.prune_iterations < 0 or self.finetune_iterations < 0 or self.pretrain_iterations < 0:
            raise SpurAuditError("DCWP iteration counts must be >= 0")
        if self.batch_size < 2:
            raise SpurAuditError("DCWP batch_size must be >= 2 (the alignment loss needs pairs)")
        if self.prune_lr <= 0 or self.finetune_lr <= 0:
            raise SpurAuditError("DCWP learning rates must be > 0")
        if self.lambda_sparse < 0 or self.lambda_align < 0:
            raise SpurAuditError("lambda_sparse and lambda_align must be >= 0")
        for name in ("lambda_up", "prune_lambda_up"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SpurAuditError(f"{name} must be > 0 (or None to pick it from the mined fraction)")
        check_training_options(optimizer=self.finetune_optimizer, augment_shift=self.augment_shift,
                               gumbel_input=self.gumbel_input)
        if self.finetune_weight_decay < 0:
            raise SpurAuditError("finetune_weight_decay must be >= 0")


def make_loss(mined: torch.Tensor | None, *, lambda_align: float, temperature: float, aligned_term: bool = True):
    """``loss_fn(model, xb, yb, idx)`` = CE + λ_align · debiased SupCon on the model's penultimate features.

    ``mined``: bool (N_train,) on CPU (indexed with the batch's row indices), or None (plain CE).
    """

    def loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        feats = model.features(xb)                 # (B, D)
        loss = F.cross_entropy(model.forward_head(feats), yb)
        if mined is not None and lambda_align > 0:
            loss = loss + lambda_align * debiased_supcon_loss(feats, yb, mined[idx], temperature=temperature,
                                                             aligned_term=aligned_term)
        return loss

    return loss_fn


def prune_weights(model: nn.Module, data: MitigationData, *, iterations: int, lr: float, lambda_sparse: float,
                  sampler: IndexSampler, loss_fn, tau: float = 1.0, mask_init: float = 1.5, eval_every: int = 0,
                  device: torch.device, history: list[dict] | None = None,
                  progress: ProgressFn | None = None, gumbel_input: str = "score",
                  augment_shift: int = 0) -> tuple[nn.Module, dict]:
    """Learn DCWP weight masks on a copy-free ``model`` (modified in place) and fix them.

    Gates every Conv2d/Linear weight (`GatedModel`, kind "dcwp"), trains only the logits with Adam on
    ``loss_fn(model, xb, yb, idx) + lambda_sparse · Σ logits`` for ``iterations`` steps, then returns
    ``(model with fixed binary masks (logit >= 0), info)``; the returned model's weights are unfrozen
    (trainable) and not reset. ``gumbel_input`` is as in `DCWPConfig` (this function defaults to the
    textbook "score" form; DCWP and MRM pass their config's "sigmoid"); ``augment_shift`` shifts each
    batch (`random_shift`). ``info``: ``sparsity``, ``final_reg``, ``step_wall_s`` / ``step_cpu_s``
    (seconds spent in training steps, evaluations excluded; CPU = process CPU time, all threads).
    BatchNorm layers run in train mode (batch statistics, running statistics updated) while masks are
    sampled.
    """
    progress = progress or null_progress
    gated = GatedModel(model, GateConfig(kind="dcwp", init=float(mask_init), tau=float(tau), gumbel_input=gumbel_input)).to(device)
    opt = torch.optim.Adam(gated.gate_parameters(), lr=lr)
    batches = BatchSource(data, sampler, device=device, augment_shift=augment_shift)
    every = eval_every if eval_every > 0 else max(iterations, 1)
    inner = gated.model
    gated.train()
    running = 0.0
    reg_value = float("nan")
    step_wall = step_cpu = 0.0
    for step in range(1, iterations + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        idx, xb, yb = batches.next()
        task = loss_fn(inner, xb, yb, idx)
        reg = gated.regularizer()
        loss = task + lambda_sparse * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(task.detach())
        step_wall += time.perf_counter() - w0
        step_cpu += time.process_time() - c0
        if step % every == 0 or step == iterations:
            reg_value = float(reg.detach())
            entry: dict[str, Any] = {"stage": "prune", "iteration": step, "train_loss": running / every,
                                     "sparsity": gated.sparsity()}
            running = 0.0
            if data.has_split("val") and eval_every > 0:
                entry["val"] = quick_val_metrics(inner, data, device=device)
                gated.train()
            if history is not None:
                history.append(entry)
            progress(step / iterations, f"prune {step}/{iterations} sparsity {entry['sparsity']:.3f}")
    sparsity = gated.sparsity()
    pruned = gated.release(trainable=True)
    return pruned, {"sparsity": sparsity, "final_reg": reg_value, "step_wall_s": step_wall, "step_cpu_s": step_cpu}


def _pretrained_copy(data: MitigationData, base_model: nn.Module | None, *, iterations: int, batch_size: int,
                     seed: int, device: torch.device, progress: ProgressFn) -> nn.Module:
    if base_model is not None:
        model = copy.deepcopy(base_model)
        for p in model.parameters():
            p.requires_grad_(True)
        return model.to(device)
    model = default_model(data, seed=seed)
    fit(model, data, iterations=iterations, batch_size=batch_size, device=device, seed=seed, select=False,
        stage="pretrain", progress=progress)
    return model


@register_method("dcwp")
def run_dcwp(data: MitigationData, *, base_model: nn.Module | None = None, config: DCWPConfig | None = None,
             seed: int = 0, device: "str | torch.device" = "auto", progress: ProgressFn | None = None,
             mining: MiningResult | None = None) -> MitigationResult:
    """Debias ``base_model`` (a biased `AuditModel`, e.g. ERM) by DCWP pruning + fine-tuning.

    ``mining``: a precomputed `MiningResult` on the same training split (skips stage 1). Without a
    base model an ERM ``small_cnn`` is pretrained for ``config.pretrain_iterations`` steps. Returns a
    `MitigationResult` whose model carries fixed binary masks; ``metrics["sparsity"]`` is the pruned
    fraction of gated weights, ``metrics["mining"]`` the mining precision/recall, ``metrics["prune"]``
    the pruning stage's cost (``s_per_iter`` wall and ``cpu_s_per_iter`` process CPU seconds per training
    step, evaluations excluded), ``metrics["finetune"]`` the fine-tuning stage's.
    """
    config = config or DCWPConfig()
    progress = progress or null_progress
    dev = resolve_device(device)
    started = time.perf_counter()
    set_seed(seed)
    history: list[dict] = []
    model = _pretrained_copy(data, base_model, iterations=config.pretrain_iterations, batch_size=config.batch_size,
                             seed=seed, device=dev, progress=sub_progress(progress, 0.0, 0.1))
    if mining is None:
        mining = mine_conflicting(data, config=config.mining, base_model=model, seed=seed, device=dev,
                                  progress=sub_progress(progress, 0.1, 0.25))
    if len(mining.mined) != data.n_train:
        raise SpurAuditError(f"the mining result covers {len(mining.mined)} samples but the training split has "
                             f"{data.n_train}; mine on the same data")
    mined = torch.from_numpy(np.asarray(mining.mined, dtype=bool))
    n_mined = int(mined.sum())
    lambda_up = config.lambda_up if config.lambda_up is not None else lambda_up_for_fraction(n_mined / data.n_train)
    prune_up = config.prune_lambda_up if config.prune_lambda_up is not None else lambda_up
    weights = oversample_weights(data.n_train, mined, lambda_up) if n_mined else None
    prune_weights_ = oversample_weights(data.n_train, mined, prune_up) if n_mined else None
    loss_fn = make_loss(mined if n_mined else None, lambda_align=config.lambda_align,
                        temperature=config.temperature, aligned_term=config.align_aligned_term)

    t0 = time.perf_counter()
    sampler = IndexSampler(data.n_train, config.batch_size, weights=prune_weights_, seed=seed + 2000)
    model, info = prune_weights(model, data, iterations=config.prune_iterations, lr=config.prune_lr,
                                lambda_sparse=config.lambda_sparse, sampler=sampler, loss_fn=loss_fn,
                                tau=config.tau, mask_init=config.mask_init, eval_every=config.prune_eval_every,
                                device=dev, history=history, progress=sub_progress(progress, 0.25, 0.7),
                                gumbel_input=config.gumbel_input, augment_shift=config.augment_shift)
    prune_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    sampler = IndexSampler(data.n_train, config.batch_size, weights=weights, seed=seed + 3000)
    selector = fit(model, data, iterations=config.finetune_iterations, lr=config.finetune_lr, sampler=sampler,
                   optimizer=config.finetune_optimizer, weight_decay=config.finetune_weight_decay,
                   augment_shift=config.augment_shift,
                   loss_fn=loss_fn, eval_every=config.eval_every, select=True, eval_at_start=True, device=dev, seed=seed,
                   stage="finetune", history=history, progress=sub_progress(progress, 0.7, 0.95))
    finetune_s = time.perf_counter() - t1
    masks = masks_of(model)
    result = finish_result(
        method="dcwp", model=model, data=data, params=params_dict(config, seed=seed, lambda_up_used=lambda_up, prune_lambda_up_used=prune_up),
        device=dev, started=started, history=history, sparsity=sparsity_of_masks(masks) if masks else info["sparsity"],
        mining=mining.metrics, selected_iteration=selector.best_iteration,
        extra={"mined_indices": mining.indices, "masks": masks},
        progress=sub_progress(progress, 0.95, 1.0))
    n_p, n_f = max(config.prune_iterations, 1), max(config.finetune_iterations, 1)
    result.metrics["prune"] = {"iterations": config.prune_iterations, "wall_time_s": prune_s,
                               "s_per_iter": info["step_wall_s"] / n_p, "cpu_s_per_iter": info["step_cpu_s"] / n_p}
    result.metrics["finetune"] = {"iterations": config.finetune_iterations, "wall_time_s": finetune_s,
                                  "s_per_iter": selector.step_wall_s / n_f, "cpu_s_per_iter": selector.step_cpu_s / n_f}
    return result
