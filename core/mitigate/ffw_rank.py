"""FFW's "bias-rank" rule (SpurAudit's variant, ``FFWConfig(structured=True, structured_rule="bias-rank")``):
structured pruning without any gate training.

The bottleneck neurons of the vanilla are ranked by the share of their variance the bias explains
(η², `core.mitigate.probes.bias_variance_share`, max over attributes, on the gate-training part) and
the k least biased are kept, k chosen on the held-out part as the best task accuracy whose fresh-probe
bias accuracy is at most ``chance + bias_budget · (vanilla − chance)`` (`rank_prune`). With
``refit_head`` the linear task head is re-fitted on the kept features of the gate-training part: the
original head, trained with every neuron, cannot read a handful of survivors.

Why (see `core.mitigate.ffw`): gates trained against one frozen privacy head learn to fool that head
while a re-trained probe still reads the bias; dropping the neurons that carry the bias removes it for
every probe. `prune_by_rank` has `core.mitigate.ffw_gates.ffw_prune`'s signature and result;
`core.mitigate.ffw.run_ffw` picks between them by ``structured_rule``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from core.device import resolve_device
from core.errors import SpurAuditError
from core.mitigate.ffw_gates import FFWConfig, FFWOutcome, mask_head_columns, set_head, start_pruning
from core.mitigate.probes import bias_variance_share, privacy_bias_accuracy
from core.models.linear import fit_standardized_linear
from core.progress import ProgressFn, null_progress


def _candidate_sizes(n: int) -> list[int]:
    """Kept-neuron counts tried by `rank_prune`: 1, 2, ..., 6, then steps of about ×4/3 (8, 10, 13, 17, ...), and n."""
    sizes, k = [], 1
    while k < n:
        sizes.append(k)
        k = max(k + 1, int(k * 4 / 3))
    return sizes + [n]


def rank_prune(z_fit: torch.Tensor, y_fit: torch.Tensor, b_fit: Mapping[str, torch.Tensor], z_hold: torch.Tensor,
               y_hold: torch.Tensor, b_hold: Mapping[str, torch.Tensor], *, num_bias_values: Mapping[str, int],
               num_classes: int, head: nn.Linear, vanilla_bias_accuracy: Mapping[str, float], bias_budget: float = 0.5,
               refit_head: bool = False) -> tuple[torch.Tensor, nn.Linear | None, list[dict], int, bool]:
    """Structured pruning by bias rank (FFW ``structured_rule="bias-rank"``): no gate is trained.

    The alive bottleneck neurons (non-constant on the fit part) are ranked by `bias_variance_share`
    (max over attributes, fit part); for each candidate k the k least biased are kept and scored on the
    held-out part: task accuracy (``head`` on ``z ⊙ m``, or a head re-fitted on the fit part when
    ``refit_head``) and bias accuracy of a fresh standardized probe (fit part -> held-out part), per
    attribute. A k qualifies when every attribute's bias accuracy is at most
    ``chance + bias_budget · (vanilla − chance)`` (chance = the majority share of that attribute on the
    held-out part); the qualifying k with the best task accuracy (ties: fewer neurons) wins. If none
    qualifies, the k with the lowest bias accuracy is kept (fallback).

    Shapes: z_* (N, D) float bottleneck features of the vanilla model, y_* (N,) int64, b_* attribute ->
    (N,) int64. Returns (keep mask (D,) bool, re-fitted head or None, one row per k, chosen row index,
    fallback flag).
    """
    attrs = sorted(b_fit)
    share = torch.stack([bias_variance_share(z_fit, b_fit[a], num_values=num_bias_values[a]) for a in attrs]).amax(0)
    alive = torch.nonzero(z_fit.float().var(0, unbiased=False) > 1e-12).flatten()
    if len(alive) == 0:
        raise SpurAuditError("every bottleneck feature is constant on the unbiased split: nothing to rank")
    order = alive[torch.argsort(share[alive], stable=True)]
    caps = {}
    for a in attrs:
        chance = float(torch.bincount(b_hold[a], minlength=num_bias_values[a]).max()) / max(len(b_hold[a]), 1)
        caps[a] = chance + bias_budget * max(float(vanilla_bias_accuracy[a]) - chance, 0.0)
    rows: list[dict] = []
    heads: list[nn.Linear | None] = []
    for k in _candidate_sizes(len(order)):
        mask = torch.zeros(z_fit.shape[1], dtype=torch.bool, device=z_fit.device)
        mask[order[:k]] = True
        zf, zh = z_fit * mask, z_hold * mask
        task_head = fit_standardized_linear(zf, y_fit, num_values=num_classes) if refit_head else None
        with torch.no_grad():
            logits = (task_head or head)(zh)
        bias = {a: privacy_bias_accuracy(zf, b_fit[a], zh, b_hold[a], num_values=num_bias_values[a])
                for a in attrs}
        rows.append({"epoch": len(rows) + 1, "kept_neurons": k, "sparsity": 1.0 - k / z_fit.shape[1],
                     "max_bias_share_kept": float(share[order[k - 1]]),
                     "hard_task_accuracy": float((logits.argmax(1) == y_hold).float().mean()),
                     "hard_bias_accuracy": float(np.mean(list(bias.values()))),
                     "hard_bias_accuracy_by_attribute": bias, "bias_cap": caps,
                     "qualifies": all(bias[a] <= caps[a] + 1e-9 for a in attrs),
                     "hard_predicted_classes": int(torch.unique(logits.argmax(1)).numel())})
        heads.append(task_head)
    ok = [i for i, r in enumerate(rows) if r["qualifies"] and r["hard_predicted_classes"] > 1]
    if ok:
        pick, fallback = max(ok, key=lambda i: (rows[i]["hard_task_accuracy"], -rows[i]["kept_neurons"])), False
    else:
        pick, fallback = min(range(len(rows)), key=lambda i: (rows[i]["hard_bias_accuracy"],
                                                               -rows[i]["hard_task_accuracy"])), True
    keep = torch.zeros(z_fit.shape[1], dtype=torch.bool)
    keep[order[:rows[pick]["kept_neurons"]].cpu()] = True
    return keep, heads[pick], rows, pick, fallback


def prune_by_rank(model: nn.Module, *, x_fit: torch.Tensor, y_fit: torch.Tensor, b_fit: Mapping[str, torch.Tensor],
                  x_hold: torch.Tensor, y_hold: torch.Tensor, b_hold: Mapping[str, torch.Tensor],
                  num_bias_values: Mapping[str, int], config: FFWConfig | None = None, seed: int = 0,
                  device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> FFWOutcome:
    """The "bias-rank" rule on an `AuditModel`-like model; arguments and result as
    `core.mitigate.ffw_gates.ffw_prune` (``config.structured`` must be True).

    Starts as the gates do (`start_pruning`: frozen copy, cached vanilla bottleneck, privacy heads and
    held-out metrics of the vanilla), then `rank_prune` on the cached bottleneck; the kept neurons'
    mask goes onto the head's input columns (after the re-fitted head, with ``refit_head``). History:
    one row per tried k.
    """
    config = (config or FFWConfig(structured=True, structured_rule="bias-rank")).validate()
    if not config.structured:
        raise SpurAuditError("the bias-rank rule ranks bottleneck neurons: set structured=true")
    progress = progress or null_progress
    start = start_pruning(model, x_fit=x_fit, y_fit=y_fit, b_fit=b_fit, x_hold=x_hold, y_hold=y_hold, b_hold=b_hold,
                          num_bias_values=num_bias_values, config=config, seed=seed, device=resolve_device(device),
                          progress=progress)
    net = start.net
    keep, head, rows, pick, fallback = rank_prune(
        start.z_fit, start.y_fit, start.b_fit, start.z_hold, start.y_hold, start.b_hold,
        num_bias_values=num_bias_values, num_classes=int(net.head.out_features), head=net.head,
        bias_budget=config.bias_budget, vanilla_bias_accuracy=start.vanilla["bias_accuracy_by_attribute"],
        refit_head=config.refit_head)
    if head is not None:
        set_head(net, head)
    masks = mask_head_columns(net, keep)
    net.eval()
    row = rows[pick]
    progress(1.0, f"bias-rank done: {row['kept_neurons']} of {start.dim} neurons kept")
    return FFWOutcome(model=net, masks=masks, feature_mask=keep, sparsity=float((~keep).float().mean()),
                      history=rows, selected_epoch=int(row["epoch"]), selection_fallback=fallback,
                      vanilla=start.vanilla, selected=dict(row), privacy=start.privacy)


__all__ = ["rank_prune", "prune_by_rank"]
