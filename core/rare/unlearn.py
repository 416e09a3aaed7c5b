"""Removing rare spurious examples from a trained model: group influence and incremental retraining.

Group influence (first order). With θ* minimising the mean training loss L(θ) = (1/n) Σ ℓ_i(θ),
deleting a group G moves the optimum to approximately

    θ_new = θ* + (1/n) H⁻¹ Σ_{i∈G} ∇ℓ_i(θ*),      H = ∇²L(θ*),

(the influence of up-weighting G by −1/n). H⁻¹v is estimated with LiSSA: h₀ = v,
h_t = v + (1 − damping)·h_{t−1} − (H h_{t−1}) / scale, and H⁻¹v ≈ h_T / scale, where each Hessian-vector
product comes from double backward on a random mini-batch (torch.func handles the functional call).

Incremental retraining deletes the group and keeps training from the current weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from core.device import resolve_device
from core.errors import SpurAuditError
from core.models.train import TrainConfig, train_model
from core.progress import ProgressFn, null_progress



@dataclass
class LissaConfig:
    """LiSSA settings: ``scale`` must exceed the largest Hessian eigenvalue for convergence."""

    iterations: int = 200
    batch_size: int = 256
    damping: float = 0.01
    scale: float = 25.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.scale <= 0 or not 0 <= self.damping < 1:
            raise SpurAuditError("LiSSA needs iterations >= 1, batch_size >= 1, scale > 0 and damping in [0, 1)")


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def _loss(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def inverse_hvp(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, vector: torch.Tensor, *,
                config: LissaConfig | None = None, device: "str | torch.device" = "auto",
                progress: ProgressFn | None = None) -> torch.Tensor:
    """LiSSA estimate of H⁻¹ v for the mean training loss (v flat over trainable params, float32)."""
    config = config or LissaConfig()
    progress = progress or null_progress
    dev = resolve_device(device)
    model = model.to(dev).eval()
    params = _params(model)
    names = list(params)
    v = vector.to(dev)
    h = v.clone()
    gen = torch.Generator().manual_seed(config.seed)
    for t in range(config.iterations):
        if config.batch_size >= len(images):  # full batch: the exact Hessian of the mean loss
            idx = torch.arange(len(images))
        else:
            idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        x, y = images[idx].to(dev), labels[idx].to(dev)
        p = {k: params[k].clone().requires_grad_(True) for k in names}
        grads = torch.autograd.grad(_loss(model, p, x, y), [p[k] for k in names], create_graph=True)
        offsets = torch.split(h, [p[k].numel() for k in names])
        dot = sum((g * o.view_as(g)).sum() for g, o in zip(grads, offsets))
        hvp = _flat(torch.autograd.grad(dot, [p[k] for k in names])).detach()
        h = v + (1 - config.damping) * h - hvp / config.scale
        if not torch.isfinite(h).all():
            raise SpurAuditError("LiSSA diverged; increase scale (it must exceed the Hessian's largest eigenvalue)")
        if t % 10 == 0:
            progress((t + 1) / config.iterations, "LiSSA inverse-HVP")
    return h / config.scale


def group_influence_removal(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                            remove: torch.Tensor, *, config: LissaConfig | None = None,
                            device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> nn.Module:
    """Return a copy of ``model`` with the group ``remove`` (indices into the training set) unlearned."""

    if len(remove) == 0:
        raise SpurAuditError("nothing to remove: the group is empty")
    dev = resolve_device(device)
    new = copy.deepcopy(model).to(dev).eval()
    params = _params(new)
    names = list(params)
    p = {k: params[k].clone().requires_grad_(True) for k in names}
    group_loss = nn.functional.cross_entropy(functional_call(new, p, (images[remove].to(dev),)),
                                             labels[remove].to(dev), reduction="sum")
    g = _flat(torch.autograd.grad(group_loss, [p[k] for k in names])).detach()
    step = inverse_hvp(new, images, labels, g, config=config, device=dev, progress=progress) / len(images)
    with torch.no_grad():
        offset = 0
        named = dict(new.named_parameters())
        for k in names:
            n = named[k].numel()
            named[k].add_(step[offset:offset + n].view_as(named[k]))
            offset += n
    return new


def incremental_retraining(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, remove: torch.Tensor, *,
                           epochs: int = 5, lr: float = 0.01, momentum: float = 0.9, batch_size: int = 128,
                           optimizer: str = "sgd", seed: int = 0, config: TrainConfig | None = None,
                           device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> nn.Module:
    """Delete ``remove`` from the training set and keep training a copy of ``model`` for ``epochs``
    epochs (through `core.models.train.train_model`, a fresh optimizer). ``config`` (a `TrainConfig`,
    e.g. the recipe the model was trained with) replaces the optimizer/lr/momentum/batch options; its
    ``epochs`` and ``seed`` are set from the arguments."""
    if epochs < 1:
        raise SpurAuditError("epochs must be >= 1")
    keep = torch.ones(len(images), dtype=torch.bool)
    keep[remove] = False
    base = config or TrainConfig(lr=lr, momentum=momentum, batch_size=batch_size, optimizer=optimizer)
    cfg = replace(base, epochs=int(epochs), seed=int(seed), max_iters=None, early_stopping_patience=None)
    new = copy.deepcopy(model)
    result = train_model(new, TensorDataset(images[keep], labels[keep]), config=cfg, device=device,
                         progress=progress)
    return result.model.eval()
