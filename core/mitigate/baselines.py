"""Baselines: ERM, JTT and MRM, all on in-memory tensors and selected on validation only.

* ERM: cross-entropy training from a fresh (seeded) initialisation.
* JTT (Liu et al., 2021): an early-stopped ERM model identifies the error set (the training samples
  it misclassifies, `core.mitigate.mining` with method "erm"); a fresh model is retrained with the
  error set upsampled λ_up times.
* MRM ("modular" risk minimisation, the DCWP paper's MRM_debias baseline): DCWP-style weight masks
  learned with plain cross-entropy on the biased pretrained model (uniform sampling, no alignment
  loss), then the surviving weights are reset to their initial values and retrained (lottery-ticket
  style) with the mask fixed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError
from core.mitigate.data import MitigationData, MitigationResult, params_dict
from core.mitigate.dcwp import prune_weights
from core.mitigate.metrics import finish_result
from core.mitigate.mining import MiningConfig, MiningResult, mine_conflicting
from core.mitigate.registry import register_method
from core.mitigate.training import (IndexSampler, check_training_options, default_model, fit, fresh_copy,
                                    lambda_up_for_fraction, oversample_weights, set_seed, state_copy)
from core.models.gates import masks_of, sparsity_of_masks
from core.progress import ProgressFn, sub_progress


def _check_train(iterations: int, batch_size: int, lr: float, name: str) -> None:
    if iterations < 0 or batch_size < 1 or lr <= 0:
        raise SpurAuditError(f"{name}: iterations must be >= 0, batch_size >= 1 and lr > 0")


@dataclass
class ERMConfig:
    """Plain ERM on cross-entropy. select: keep the best validation checkpoint (evaluated every
    ``eval_every`` steps) instead of the last one. arch: used when no base model is given.
    optimizer: "adam" or "sgd" (momentum 0.9); lr_decay: (step_size, gamma) StepLR or None;
    augment_shift: random translation of training batches (pixels, 0 = none)."""

    iterations: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 100
    select: bool = True
    arch: str = "small_cnn"
    optimizer: str = "adam"
    lr_decay: tuple[int, float] | None = None
    augment_shift: int = 0

    def __post_init__(self) -> None:
        _check_train(self.iterations, self.batch_size, self.lr, "ERM")
        check_training_options(optimizer=self.optimizer, augment_shift=self.augment_shift, lr_decay=self.lr_decay)


def _fresh(data: MitigationData, base_model: nn.Module | None, arch: str, seed: int) -> nn.Module:
    return fresh_copy(base_model, seed=seed) if base_model is not None else default_model(data, arch=arch, seed=seed)


@register_method("erm")
def run_erm(data: MitigationData, *, base_model: nn.Module | None = None, config: ERMConfig | None = None,
            seed: int = 0, device: "str | torch.device" = "auto",
            progress: ProgressFn | None = None) -> MitigationResult:
    """Train a fresh, seeded model of ``base_model``'s architecture (or ``config.arch``) with ERM.

    ``base_model`` only gives the architecture (its weights are re-initialised). The returned model is
    the best validation checkpoint (``config.select``). ``extra["init_state"]`` holds the initial
    weights (MRM resets to them) and ``extra["last_state"]`` the weights after the last step (the fully
    trained biased model).
    """
    config = config or ERMConfig()
    dev = resolve_device(device)
    started = time.perf_counter()
    set_seed(seed)
    model = _fresh(data, base_model, config.arch, seed)
    init_state = state_copy(model)
    history: list[dict] = []
    selector = fit(model, data, iterations=config.iterations, batch_size=config.batch_size, lr=config.lr,
                   weight_decay=config.weight_decay, eval_every=config.eval_every, select=config.select,
                   optimizer=config.optimizer, lr_decay=tuple(config.lr_decay) if config.lr_decay else None,
                   augment_shift=config.augment_shift,
                   device=dev, seed=seed, stage="erm", history=history, progress=sub_progress(progress, 0.0, 0.9))
    return finish_result(method="erm", model=model, data=data, params=params_dict(config, seed=seed), device=dev,
                         started=started, history=history, selected_iteration=selector.best_iteration,
                         extra={"init_state": init_state, "last_state": selector.last_state},
                         progress=sub_progress(progress, 0.9, 1.0))


@dataclass
class JTTConfig:
    """JTT: ``identification`` trains the early-stopped ERM (mining method "erm"); the final model is
    retrained from scratch for ``iterations`` steps with the error set upsampled ``lambda_up`` times
    (None = by the error-set fraction, 0.5/1/2/5 % -> 80/50/30/10)."""

    identification: MiningConfig = field(default_factory=lambda: MiningConfig(method="erm", iterations=100,
                                                                              score="final"))
    lambda_up: float | None = None
    iterations: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 100
    arch: str = "small_cnn"
    augment_shift: int = 0

    def __post_init__(self) -> None:
        check_training_options(augment_shift=self.augment_shift)
        if isinstance(self.identification, dict):
            self.identification = config_from_mapping(MiningConfig, self.identification, what="jtt.identification")
        _check_train(self.iterations, self.batch_size, self.lr, "JTT")
        if self.lambda_up is not None and self.lambda_up <= 0:
            raise SpurAuditError("JTT lambda_up must be > 0 (or None)")


@register_method("jtt")
def run_jtt(data: MitigationData, *, base_model: nn.Module | None = None, config: JTTConfig | None = None,
            seed: int = 0, device: "str | torch.device" = "auto", progress: ProgressFn | None = None,
            mining: MiningResult | None = None) -> MitigationResult:
    """Just Train Twice. ``base_model`` only gives the architecture. ``mining``: a precomputed error set."""
    config = config or JTTConfig()
    dev = resolve_device(device)
    started = time.perf_counter()
    set_seed(seed)
    if mining is None:
        mining = mine_conflicting(data, config=config.identification, base_model=base_model, seed=seed, device=dev,
                                  progress=sub_progress(progress, 0.0, 0.2))
    mined = torch.from_numpy(np.asarray(mining.mined, dtype=bool))
    n_mined = int(mined.sum())
    lambda_up = config.lambda_up if config.lambda_up is not None else lambda_up_for_fraction(n_mined / data.n_train)
    weights = oversample_weights(data.n_train, mined, lambda_up) if n_mined else None
    model = _fresh(data, base_model, config.arch, seed)
    history: list[dict] = []
    sampler = IndexSampler(data.n_train, config.batch_size, weights=weights, seed=seed + 4000)
    selector = fit(model, data, iterations=config.iterations, lr=config.lr, weight_decay=config.weight_decay,
                   sampler=sampler, eval_every=config.eval_every, select=True, device=dev, seed=seed,
                   augment_shift=config.augment_shift, stage="jtt", history=history,
                   progress=sub_progress(progress, 0.2, 0.9))
    return finish_result(method="jtt", model=model, data=data,
                         params=params_dict(config, seed=seed, lambda_up_used=lambda_up), device=dev,
                         started=started, history=history, mining=mining.metrics,
                         selected_iteration=selector.best_iteration, extra={"mined_indices": mining.indices},
                         progress=sub_progress(progress, 0.9, 1.0))


@dataclass
class MRMConfig:
    """MRM: masks learned with plain CE on the biased model (``prune_*``, λ_sparse as DCWP), then the
    surviving weights are reset to their initial values and retrained (``retrain_*``).
    pretrain_iterations: ERM pretraining when no base model is given."""

    prune_iterations: int = 2000
    prune_lr: float = 1e-2
    lambda_sparse: float = 1e-8
    tau: float = 1.0
    mask_init: float = 1.5
    retrain_iterations: int = 1000
    retrain_lr: float = 1e-3
    batch_size: int = 256
    eval_every: int = 100
    pretrain_iterations: int = 1000
    gumbel_input: str = "sigmoid"
    augment_shift: int = 0

    def __post_init__(self) -> None:
        check_training_options(augment_shift=self.augment_shift, gumbel_input=self.gumbel_input)
        _check_train(self.prune_iterations, self.batch_size, self.prune_lr, "MRM pruning")
        _check_train(self.retrain_iterations, self.batch_size, self.retrain_lr, "MRM retraining")
        if self.lambda_sparse < 0:
            raise SpurAuditError("MRM lambda_sparse must be >= 0")


@register_method("mrm")
def run_mrm(data: MitigationData, *, base_model: nn.Module | None = None, config: MRMConfig | None = None,
            seed: int = 0, device: "str | torch.device" = "auto", progress: ProgressFn | None = None,
            init_state: dict | None = None) -> MitigationResult:
    """Prune the biased ``base_model`` with plain CE, reset surviving weights to ``init_state`` and retrain.

    ``init_state``: the base model's weights before training (e.g. ``run_erm(...).extra["init_state"]``);
    None = a fresh seeded initialisation. Without a base model, an ERM model is pretrained first from a
    seeded init (whose weights are then the reset target).
    """
    config = config or MRMConfig()
    dev = resolve_device(device)
    started = time.perf_counter()
    set_seed(seed)
    if base_model is None:
        model = default_model(data, seed=seed)
        init_state = state_copy(model)
        fit(model, data, iterations=config.pretrain_iterations, batch_size=config.batch_size, select=False,
            device=dev, seed=seed, stage="pretrain", progress=sub_progress(progress, 0.0, 0.2))
    else:
        model = copy.deepcopy(base_model).to(dev)
        if init_state is None:
            init_state = fresh_copy(base_model, seed=seed).state_dict()
    history: list[dict] = []
    sampler = IndexSampler(data.n_train, config.batch_size, seed=seed + 5000)

    def ce(m, xb, yb, idx):
        return torch.nn.functional.cross_entropy(m(xb), yb)

    model, info = prune_weights(model, data, iterations=config.prune_iterations, lr=config.prune_lr,
                                lambda_sparse=config.lambda_sparse, sampler=sampler, loss_fn=ce, tau=config.tau,
                                mask_init=config.mask_init, eval_every=config.eval_every, device=dev,
                                history=history, progress=sub_progress(progress, 0.2, 0.5),
                                gumbel_input=config.gumbel_input, augment_shift=config.augment_shift)
    masks = masks_of(model)
    # reset every surviving weight (and BN/bias) to its initial value; the fixed masks stay attached
    with torch.no_grad():
        own = model.state_dict()
        for key, value in own.items():
            src_key = key.replace(".parametrizations.weight.original", ".weight")
            if src_key in init_state and init_state[src_key].shape == value.shape:
                value.copy_(init_state[src_key].to(value.device))
    sampler = IndexSampler(data.n_train, config.batch_size, seed=seed + 6000)
    selector = fit(model, data, iterations=config.retrain_iterations, lr=config.retrain_lr, sampler=sampler,
                   eval_every=config.eval_every, select=True, device=dev, seed=seed, stage="retrain",
                   augment_shift=config.augment_shift,
                   history=history, progress=sub_progress(progress, 0.5, 0.95))
    return finish_result(method="mrm", model=model, data=data, params=params_dict(config, seed=seed), device=dev,
                         started=started, history=history, sparsity=sparsity_of_masks(masks),
                         selected_iteration=selector.best_iteration, extra={"masks": masks},
                         progress=sub_progress(progress, 0.95, 1.0))
