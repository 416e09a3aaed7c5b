"""FFW — Finding Fantastic Weights (Nahon et al., ECCV 2024; seed 001, METHODS.md §3).

FFW extracts an unbiased sub-network from a vanilla-trained model **without fine-tuning any weight**:
it learns gates on the encoder so that a *privacy head* P (a linear bias classifier on the
bottleneck, the same size as the task head) can no longer read the bias, while the task loss keeps
the digit features.

* Unstructured: one gate per encoder weight (every Conv2d/Linear weight except the task head), via
  `core.models.gates.GatedModel` with ``GateConfig(kind="ffw")``: effective weight
  ``w · min(1, 2σ(m/T))``, straight-through past the clamp, pruned where ``m < 0``.
* Structured: one gate per bottleneck neuron (penultimate feature ``z_j``), ``z_j · min(1, 2σ(m_j/T))``
  (eq. 9 of the paper). The exported model carries this mask on the task head's input columns
  (``C(z ⊙ m) = (W diag(m)) z + b``, identical logits) and in ``extra["feature_mask"]``.

Objective on the gates (Adam, lr 1e-3): ``CE(task) + γ · Σ_a MI(b_a, P_a(z))`` with γ = 10 and the
empirical mutual information of `empirical_mutual_information`; one privacy head per bias attribute.
P is trained with CE on the bias labels (SGD lr 0.1, momentum 0.9) until a plateau on the held-out
part; the gate loss never updates P (P's parameters are frozen during the gate step) and P is refreshed
on the current features before every gate epoch (Algorithm 1: "train P; optimise the gates; until a
plateau on D_val"). The temperature T starts at 1 and is multiplied by ``temperature_factor`` (0.5)
whenever the held-out MI plateaus; training stops when the soft model (gates at T) predicts like the
hard model (T → 0, the exported ``m >= 0`` mask) on the held-out part, or after ``max_epochs``.

Data. FFW needs a small bias-labelled, *unbiased* split D^u. SpurAudit uses the dataset's ``val``
split: it is divided (seeded, stratified by class) into a gate-training part (``1 - holdout_fraction``)
and a held-out part used for P's plateaus, the temperature schedule and the gate selection. The test
split is never touched. Without bias labels `run_ffw` raises `SpurAuditError`, unless the user opts in to
mined pseudo-bias labels (``use_mined_bias=True``, from `core.mitigate.mining`).

Selection: the gates kept are those of the epoch whose **hard** model has the lowest held-out bias
accuracy, among epochs whose hard held-out task accuracy is at least the vanilla's minus
``task_tolerance`` and whose hard model is not collapsed (it predicts more than one class on the
held-out part — a constant model hides the bias trivially, and when the vanilla itself is at chance the
accuracy floor alone would not exclude it). When no epoch qualifies, the best task-minus-bias epoch
among the non-collapsed ones (or among all, if every epoch collapsed) is kept and
``extra["selection_fallback"]`` is True.

SpurAudit variants (opt-in, not in the paper). ``structured_rule="bias-rank"`` trains no gate: it
ranks the bottleneck neurons by the share of their variance the bias explains (η², gate-training
part) and keeps the k least biased, k chosen on the held-out part as the best task accuracy whose
fresh-probe bias accuracy is at most ``chance + bias_budget · (vanilla − chance)`` (`rank_prune`).
``refit_head=True`` re-fits the linear task head on the kept features with the gate-training part
(last-layer retraining on the unbiased split). Why: the MI term is measured through a privacy head
that is frozen during each gate step, and gates learn to fool that one head — its accuracy falls to
chance while a re-trained probe still reads the bias (biased MNIST, `benchmarks/debias_ffw.py`);
dropping the neurons that carry the bias removes it for every probe, and the original head, trained
with all neurons, cannot read a handful of survivors, hence the re-fit.

Known pitfalls handled (METHODS.md §3):
* P divides its input by the batch's overall RMS before a fixed per-feature z-score (`PrivacyHead`), so
  shrinking the whole feature scale (pruning shrank it ~40× in the reference run) cannot lower the
  MI; the reported bias accuracy
  uses a *fresh* standardized head trained to convergence on the hard model's features, and
  `run_ffw` also reports `core.mitigate.metrics.bias_decodability` (a cross-validated standardized probe).
* MI and bias accuracy are always computed against bias labels (the reference evaluation passed the
  task label as the private label).
* Sparsity is recorded from the first epoch (with init 0 about half the gates drop below 0 after the
  first Adam steps).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError
from core.mitigate.common import IndexSampler, MitigationResult, register_method
from core.models.gates import GateConfig, GatedModel, WeightGate, apply_masks
from core.models.linear import fit_linear, fit_standardized_linear
from core.models.optim import make_optimizer
from core.progress import ProgressFn, null_progress, sub_progress

__all__ = [
    "FFWConfig",
    "FFW_PRESETS",
    "FFWOutcome",
    "PrivacyHead",
    "FeatureGate",
    "empirical_mutual_information",
    "train_privacy_head",
    "privacy_bias_accuracy",
    "ffw_prune",
    "run_ffw",
    "split_holdout",
    "select_epoch",
    "bias_variance_share",
    "rank_prune",
]


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
STRUCTURED_RULES = ("gates", "bias-rank")

# Named option sets (benchmark variants, dashboard choices): the paper's MI gates per weight / per
# bottleneck neuron, optionally with the head re-fitted, and the bias-ranked neuron pruning.
FFW_PRESETS: dict[str, dict[str, Any]] = {
    "unstructured": {"structured": False},
    "structured": {"structured": True},
    "structured-refit": {"structured": True, "refit_head": True},
    "rank-refit": {"structured": True, "structured_rule": "bias-rank", "refit_head": True},
}


@dataclass
class FFWConfig:
    """Hyper-parameters of FFW (defaults from the paper where it gives them).

    structured: per-bottleneck-neuron gates (True) or per-weight gates on the encoder (False).
    gamma: weight γ of the MI term. lr: Adam learning rate of the gates. init: initial gate value.
    batch_size: gate/P mini-batch size. steps_per_epoch: gate steps between two P refreshes /
        held-out checks (batches from reshuffled passes over the gate-training part; the unbiased
        split is small, so an "epoch" is a fixed number of steps). max_epochs: gate epochs at most; min_epochs: before stopping.
    temperature / temperature_factor / min_temperature: T schedule (T ← factor·T on an MI plateau;
        stop once T would go below min_temperature).
    patience / min_delta: an MI plateau is ``patience`` epochs without the held-out MI falling by
        more than ``min_delta`` (normalised MI units).
    stop_agreement / stop_mi_tolerance: stop when the soft (T) and hard (T→0) models agree on this
        fraction of held-out predictions *and* their held-out MI differs by at most the tolerance
        (after ``min_epochs``): the soft model then behaves like T = 0.
    privacy_lr / privacy_momentum: SGD of P (paper: fixed lr 0.1). privacy_max_epochs: initial P
        training; privacy_refresh_epochs: P epochs before each gate epoch; privacy_patience: plateau.
    holdout_fraction: share of the val split held out for plateaus and selection.
    task_tolerance: selection keeps epochs whose hard held-out task accuracy ≥ vanilla − tolerance.
    bias_attributes: which bias attributes to hide (None = all available: ``bias`` plus any
        ``extra_bias`` of the data).
    use_mined_bias: when the data has no bias labels, use the predictions of a bias-capturing model
        (core.mitigate.mining, options in ``mining``) as pseudo-bias labels (opt-in).
    structured_rule (structured only): "gates" — the paper's MI-trained gates; "bias-rank" — a
        SpurAudit variant without gate training: rank the bottleneck neurons by how much of their
        variance the bias explains (η², max over attributes, on the gate-training part), keep the k
        least biased, k chosen on the held-out part (`rank_prune`).
    bias_budget ("bias-rank"): the held-out bias accuracy allowed, as a fraction of the vanilla's
        margin over chance: cap = chance + bias_budget · (vanilla − chance); 0.5 halves it. To aim
        at a drop of D points, bias_budget ≈ 1 − D / (vanilla − chance) (e.g. D = 50 from 99 % with
        chance 10 %: 0.44); lower values remove more bias and keep fewer neurons (less task accuracy).
    refit_head: after pruning, re-fit the linear task head on the kept features with the gate-training
        part (last-layer retraining on the unbiased split; the paper fine-tunes nothing, default off).
    """

    structured: bool = False
    gamma: float = 10.0
    lr: float = 1e-3
    init: float = 0.0
    batch_size: int = 128
    steps_per_epoch: int = 50
    max_epochs: int = 60
    min_epochs: int = 3
    temperature: float = 1.0
    temperature_factor: float = 0.5
    min_temperature: float = 1e-4
    patience: int = 2
    min_delta: float = 1e-3
    stop_agreement: float = 0.995
    stop_mi_tolerance: float = 0.02
    privacy_lr: float = 0.1
    privacy_momentum: float = 0.9
    privacy_max_epochs: int = 100
    privacy_refresh_epochs: int = 5
    privacy_patience: int = 5
    holdout_fraction: float = 0.4
    task_tolerance: float = 0.05
    bias_attributes: list[str] | None = None
    use_mined_bias: bool = False
    mining: dict = field(default_factory=dict)
    structured_rule: str = "gates"
    bias_budget: float = 0.5
    refit_head: bool = False

    def validate(self) -> "FFWConfig":
        if self.gamma < 0:
            raise SpurAuditError(f"ffw gamma must be >= 0 (paper: 10), got {self.gamma}")
        if self.lr <= 0 or self.privacy_lr <= 0:
            raise SpurAuditError("ffw lr and privacy_lr must be > 0 (paper: 1e-3 and 0.1)")
        if self.batch_size < 2:
            raise SpurAuditError("ffw batch_size must be >= 2 (the MI estimate needs a batch)")
        if self.steps_per_epoch < 1:
            raise SpurAuditError("ffw steps_per_epoch must be >= 1")
        if self.max_epochs < 1 or self.min_epochs < 0:
            raise SpurAuditError("ffw max_epochs must be >= 1 and min_epochs >= 0")
        if not 0 < self.temperature_factor < 1:
            raise SpurAuditError(f"temperature_factor must be in (0, 1) (paper 0.5), got {self.temperature_factor}")
        if self.temperature <= 0 or self.min_temperature <= 0:
            raise SpurAuditError("temperature and min_temperature must be > 0")
        if not 0 < self.holdout_fraction < 1:
            raise SpurAuditError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0 < self.stop_agreement <= 1:
            raise SpurAuditError("stop_agreement must be in (0, 1]")
        if self.patience < 1 or self.privacy_patience < 1:
            raise SpurAuditError("patience and privacy_patience must be >= 1")
        if self.task_tolerance < 0:
            raise SpurAuditError("task_tolerance must be >= 0")
        if self.structured_rule not in STRUCTURED_RULES:
            raise SpurAuditError(f"structured_rule must be one of {STRUCTURED_RULES}, got {self.structured_rule!r}")
        if self.structured_rule == "bias-rank" and not self.structured:
            raise SpurAuditError("structured_rule='bias-rank' ranks bottleneck neurons: set structured=true too")
        if not 0.0 <= self.bias_budget <= 1.0:
            raise SpurAuditError(f"bias_budget must be in [0, 1] (share of the vanilla's bias margin over chance "
                                 f"that may remain), got {self.bias_budget}")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "FFWConfig":
        """Build from a plain dict (e.g. CLI ``--set`` pairs), type-checked by `core.config.config_from_mapping`."""
        return config_from_mapping(cls, values, what="ffw")


# ---------------------------------------------------------------------------------------------
# mutual information and the privacy head
# ---------------------------------------------------------------------------------------------
def empirical_mutual_information(bias: torch.Tensor, probs: torch.Tensor, *, num_values: int | None = None,
                                 eps: float = 1e-8, normalize: bool = True) -> torch.Tensor:
    """Empirical MI between bias labels and a head's predicted distribution over a batch.

    ``joint = onehot(b)ᵀ p / N`` (K × K', clamped to ``eps``), ``MI = Σ joint · log(joint /
    (row · col))`` with the row (true bias) and column (predicted) marginals of the joint;
    divided by ``log K`` when ``normalize`` (so identical variables with K uniform values give 1 and
    independent ones give ≈ 0). Differentiable in ``probs``.

    Args:
        bias: (N,) int64 bias labels in ``[0, K)``.
        probs: (N, K') float, rows summing to 1 (e.g. ``softmax(P(z))``).
        num_values: K (default: ``probs.shape[1]``).
    Returns: scalar tensor (≥ 0 up to the clamp's rounding).
    """
    if bias.dim() != 1 or probs.dim() != 2 or probs.shape[0] != bias.shape[0]:
        raise SpurAuditError(f"MI needs bias (N,) and probs (N, K); got {tuple(bias.shape)} and {tuple(probs.shape)}")
    k = int(num_values or probs.shape[1])
    if k < 2:
        raise SpurAuditError("MI needs at least two bias values")
    if bias.numel() and (int(bias.min()) < 0 or int(bias.max()) >= k):
        raise SpurAuditError(f"bias labels must lie in [0, {k}) for the MI estimate (unknown = -1 rows must be dropped)")
    onehot = F.one_hot(bias, k).to(probs.dtype)                      # (N, K)
    joint = (onehot.t() @ probs / bias.shape[0]).clamp_min(eps)       # (K, K')
    row = joint.sum(dim=1, keepdim=True)                              # (K, 1)
    col = joint.sum(dim=0, keepdim=True)                              # (1, K')
    mi = (joint * torch.log(joint / (row * col))).sum()
    return mi / math.log(k) if normalize else mi


class PrivacyHead(nn.Module):
    """P: a linear bias classifier on normalised bottleneck features, (B, D) -> (B, K_b).

    Input normalisation (no parameters, so P's parameter count equals the task head's when K_b = K):
    ``u = z / rms(z)`` with ``rms`` the root-mean-square of the whole batch (one scalar), then a per-feature
    z-score of ``u`` with *fixed* statistics (buffers ``mean``/``std``, re-fitted by
    `fit_standardization` every time P is (re)trained). The scalar makes P blind to a global rescaling
    of the bottleneck, so the gates cannot lower the MI by shrinking every feature (the reference run's
    features shrank ~40× after pruning); the per-feature statistics are fixed (not per batch) so that
    shrinking *one* neuron relative to the others still changes P's output and the MI stays
    differentiable in the gates (a per-batch, per-feature z-score would make structured gates
    invisible to P). Call it on batches of ≥ 2 rows.
    """

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__()
        self.linear = nn.Linear(int(dim), int(num_values))
        self.register_buffer("mean", torch.zeros(1, int(dim)))
        self.register_buffer("std", torch.ones(1, int(dim)))

    @staticmethod
    def _rescale(z: torch.Tensor) -> torch.Tensor:
        return z / (z.pow(2).mean().sqrt() + 1e-12)          # (B, D) / scalar

    @torch.no_grad()
    def fit_standardization(self, z: torch.Tensor) -> None:
        """Set the z-score statistics from features (N, D)."""
        u = self._rescale(z)
        self.mean.copy_(u.mean(dim=0, keepdim=True))
        self.std.copy_(u.std(dim=0, keepdim=True, unbiased=False) + 1e-6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((self._rescale(z) - self.mean) / self.std)


def train_privacy_head(head: PrivacyHead, z_train: torch.Tensor, b_train: torch.Tensor,
                       z_val: torch.Tensor, b_val: torch.Tensor, *, lr: float = 0.1, momentum: float = 0.9,
                       max_epochs: int = 100, patience: int = 5, batch_size: int = 128,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """Train P with CE on bias labels (features detached) until the val loss plateaus.

    Args: features (N, D) float and bias (N,) int64 on the head's device. The standardisation is
    re-fitted on ``z_train`` first; the linear weights continue from their current values (a refresh).
    Keeps the epoch with the lowest val CE. Returns ``{"epochs", "val_loss", "val_accuracy"}``.
    """
    head.fit_standardization(z_train.detach())
    for p in head.parameters():
        p.requires_grad_(True)
    opt = make_optimizer("sgd", head.parameters(), lr=lr, momentum=momentum)
    z_train, z_val = z_train.detach(), z_val.detach()
    best = {"loss": float("inf"), "state": copy.deepcopy(head.state_dict()), "acc": 0.0, "stale": 0}

    def after_epoch(epoch: int, loss: float) -> bool:
        with torch.no_grad():
            logits = head(z_val)
            val_loss = float(F.cross_entropy(logits, b_val))
            val_acc = float((logits.argmax(1) == b_val).float().mean())
        if val_loss < best["loss"] - 1e-4:
            best.update(loss=val_loss, state=copy.deepcopy(head.state_dict()), acc=val_acc, stale=0)
            return False
        best["stale"] += 1
        return best["stale"] >= patience

    epochs = fit_linear(head, z_train, b_train, optimizer=opt, epochs=max_epochs, batch_size=batch_size,
                        generator=generator, min_batch=2, on_epoch=after_epoch)
    head.load_state_dict(best["state"])
    for p in head.parameters():
        p.requires_grad_(False)
    return {"epochs": epochs, "val_loss": best["loss"], "val_accuracy": best["acc"]}


def privacy_bias_accuracy(z_fit: torch.Tensor, b_fit: torch.Tensor, z_eval: torch.Tensor, b_eval: torch.Tensor,
                          *, num_values: int, steps: int = 300, lr: float = 0.05) -> float:
    """Accuracy on (z_eval, b_eval) of a *fresh* standardized privacy head fitted to convergence on
    (z_fit, b_fit) (`core.models.linear.fit_standardized_linear`; the fit set's statistics standardise both sets).

    Inputs: (N, D) float, (N,) int64.
    """
    head = fit_standardized_linear(z_fit, b_fit, num_values=num_values, steps=steps, lr=lr)
    with torch.no_grad():
        return float((head(z_eval.detach().float()).argmax(1) == b_eval).float().mean())


def bias_variance_share(z: torch.Tensor, bias: torch.Tensor, *, num_values: int) -> torch.Tensor:
    """η² per feature: the share of each feature's variance explained by the bias value (between-group
    over total variance), (D,) float in [0, 1]; 0 for a constant feature. ``z`` (N, D), ``bias`` (N,)."""
    z = z.detach().float()
    total = z.var(0, unbiased=False)                           # (D,)
    mean = z.mean(0)
    between = torch.zeros_like(total)
    for v in range(int(num_values)):
        rows = bias == v
        if bool(rows.any()):
            between += rows.float().mean() * (z[rows].mean(0) - mean) ** 2
    return torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total)).clamp(0, 1)


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


def _mask_head_columns(model: nn.Module, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attach the structured mask to ``model.head``: column j of its (K, D) weight is kept iff
    ``keep[j]`` (so ``C(z ⊙ m) = (W diag(m)) z + b``); returns ``{"head": (K, D) bool mask}`` on CPU."""
    mask = keep.cpu().bool()[None, :].expand_as(model.head.weight).clone()
    apply_masks(model, {"head": mask.to(model.head.weight.device)})
    return {"head": mask}


def _set_head(model: nn.Module, linear: nn.Linear) -> None:
    """Copy ``linear``'s weight and bias into ``model.head`` (under a fixed mask, into the original)."""
    from torch.nn.utils import parametrize

    head = model.head
    with torch.no_grad():
        target = head.parametrizations.weight.original if parametrize.is_parametrized(head, "weight") else head.weight
        target.copy_(linear.weight.to(target.device))
        head.bias.copy_(linear.bias.to(head.bias.device))


class FeatureGate(nn.Module):
    """Structured FFW gate on the bottleneck: (B, D) -> (B, D), ``z_j · min(1, 2σ(m_j/T))`` in
    training mode (straight-through past the clamp), ``z_j · 1[m_j ≥ 0]`` in eval mode."""

    def __init__(self, dim: int, config: GateConfig) -> None:
        super().__init__()
        self.gate_module = WeightGate(torch.Size([int(dim)]), config)

    @property
    def scores(self) -> nn.Parameter:
        return self.gate_module.scores

    def set_temperature(self, temperature: float) -> None:
        self.gate_module.temperature = float(temperature)

    def mask(self) -> torch.Tensor:
        """(D,) bool: kept bottleneck neurons."""
        return self.gate_module.hard_mask().bool()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gate_module(z)


# ---------------------------------------------------------------------------------------------
# the pruning loop (tensor level)
# ---------------------------------------------------------------------------------------------
@dataclass
class FFWOutcome:
    """What `ffw_prune` returns.

    model: the pruned copy of the input model (fixed masks attached with `apply_masks`; weights
        unchanged); masks: layer name -> bool mask (weight shape); feature_mask: (D,) bool for the
        structured variant (None otherwise); sparsity: fraction of gated units pruned;
    history: one dict per epoch; selected_epoch; selection_fallback; vanilla: held-out metrics of the
        vanilla model; selected: held-out metrics of the selected gates; privacy: P training summaries.
    """

    model: nn.Module
    masks: dict[str, torch.Tensor]
    feature_mask: torch.Tensor | None
    sparsity: float
    history: list[dict]
    selected_epoch: int
    selection_fallback: bool
    vanilla: dict
    selected: dict
    privacy: dict = field(default_factory=dict)


def select_epoch(rows: list[dict], floor: float) -> tuple[int, bool]:
    """Index of the epoch whose gates FFW keeps, and whether the fallback rule was used.

    ``rows``: per-epoch dicts with ``hard_task_accuracy``, ``hard_bias_accuracy`` and
    ``hard_predicted_classes`` (held-out part). Eligible: not collapsed (> 1 predicted class) and task
    accuracy ≥ ``floor``; among them the lowest bias accuracy wins (ties: higher task accuracy).
    Fallback: the best task − bias among the non-collapsed epochs (all epochs if every one collapsed).
    """
    if not rows:
        raise SpurAuditError("FFW ran no epoch to select from")
    alive = [i for i, r in enumerate(rows) if r["hard_predicted_classes"] > 1]
    eligible = [i for i in alive if rows[i]["hard_task_accuracy"] >= floor]
    if eligible:
        return min(eligible, key=lambda i: (rows[i]["hard_bias_accuracy"], -rows[i]["hard_task_accuracy"])), False
    pool = alive or list(range(len(rows)))
    return max(pool, key=lambda i: rows[i]["hard_task_accuracy"] - rows[i]["hard_bias_accuracy"]), True


def split_holdout(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices into (fit, holdout), stratified by ``labels`` (each class with ≥ 2
    rows contributes at least one row to each side). Returns sorted int64 index arrays."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fit, hold = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        hold.append(idx[:k])
        fit.append(idx[k:])
    return np.sort(np.concatenate(fit)).astype(np.int64), np.sort(np.concatenate(hold)).astype(np.int64)


def _set_gate_mode(gated: GatedModel | None, fgate: FeatureGate | None, model: nn.Module, *, soft: bool) -> None:
    """Model (BatchNorm etc.) always in eval mode; gates soft (training mode, T) or hard (eval)."""
    model.eval()
    if gated is not None:
        for _, g in gated.gates():
            g.train(soft)
    if fgate is not None:
        fgate.train(soft)


def _bottleneck(model: nn.Module, fgate: FeatureGate | None, x: torch.Tensor) -> torch.Tensor:
    z = model.features(x)                      # (B, D)
    return fgate(z) if fgate is not None else z


def _forward_all(model: nn.Module, fgate: FeatureGate | None, x: torch.Tensor, dev: torch.device,
                 batch_size: int = 512, *, z_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), gated bottleneck z (N, D)) without gradients."""
    zs, ls = [], []
    with torch.no_grad():
        for start in range(0, len(x) if z_cache is None else len(z_cache), batch_size):
            if z_cache is not None:
                z = z_cache[start:start + batch_size]
                z = fgate(z) if fgate is not None else z
            else:
                z = _bottleneck(model, fgate, x[start:start + batch_size].to(dev))
            zs.append(z)
            ls.append(model.forward_head(z))
    return torch.cat(ls), torch.cat(zs)


def ffw_prune(model: nn.Module, *, x_fit: torch.Tensor, y_fit: torch.Tensor, b_fit: Mapping[str, torch.Tensor],
              x_hold: torch.Tensor, y_hold: torch.Tensor, b_hold: Mapping[str, torch.Tensor],
              num_bias_values: Mapping[str, int], config: FFWConfig | None = None, seed: int = 0,
              device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> FFWOutcome:
    """Run FFW on an `AuditModel`-like model (``features(x)`` (B, D), ``forward_head(z)``, ``head``).

    Args:
        model: the vanilla model (not modified; a deep copy is pruned).
        x_fit, y_fit: (N, C, H, W) float images in [0, 1] and (N,) int64 labels of the gate-training
            part of the unbiased split; ``b_fit``: attribute name -> (N,) int64 bias labels (≥ 0).
        x_hold, y_hold, b_hold: the held-out part (P plateaus, temperature schedule, selection).
        num_bias_values: attribute name -> number of bias values K_b.
    Returns: `FFWOutcome` (the pruned model carries fixed masks; no weight was changed).
    """
    config = (config or FFWConfig()).validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    if not b_fit or set(b_fit) != set(b_hold) or set(b_fit) - set(num_bias_values):
        raise SpurAuditError("ffw needs the same bias attributes (with their value counts) on both parts of the split")
    for name, b in list(b_fit.items()) + list(b_hold.items()):
        if b.numel() and int(b.min()) < 0:
            raise SpurAuditError(f"bias attribute {name!r} has unknown (-1) labels; drop those rows before FFW")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model).to(dev)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    gcfg = GateConfig(kind="ffw", init=config.init, temperature=config.temperature, structured=False)
    gated: GatedModel | None = None
    fgate: FeatureGate | None = None
    y_fit_d, y_hold_d = y_fit.to(dev), y_hold.to(dev)
    bf = {a: b.to(dev) for a, b in b_fit.items()}
    bh = {a: b.to(dev) for a, b in b_hold.items()}
    attrs = sorted(bf)
    dim = int(getattr(net, "feature_dim", 0) or net.head.in_features)

    # Structured gates sit after a frozen encoder: cache the bottleneck once.
    z_fit_cache = z_hold_cache = None
    if config.structured:
        fgate = FeatureGate(dim, gcfg).to(dev)
        z_fit_cache = _forward_all(net, None, x_fit, dev)[1]
        z_hold_cache = _forward_all(net, None, x_hold, dev)[1]
        params = [fgate.scores]
    else:
        gated = GatedModel(net, gcfg, exclude=[net.head])
        params = gated.gate_parameters()

    def features_of(which: str, *, soft: bool) -> tuple[torch.Tensor, torch.Tensor]:
        _set_gate_mode(gated, fgate, net, soft=soft)
        if which == "fit":
            return _forward_all(net, fgate, x_fit, dev, z_cache=z_fit_cache)
        return _forward_all(net, fgate, x_hold, dev, z_cache=z_hold_cache)

    def sparsity() -> float:
        return float((~fgate.mask()).float().mean()) if fgate is not None else gated.sparsity()

    def hold_metrics(*, soft: bool, heads: dict[str, PrivacyHead], fresh: bool) -> dict:
        logits_h, z_h = features_of("hold", soft=soft)
        out = {"task_accuracy": float((logits_h.argmax(1) == y_hold_d).float().mean())}
        _, z_f = features_of("fit", soft=soft) if fresh else (None, None)
        mis, accs, fresh_accs = [], [], []
        with torch.no_grad():
            for a in attrs:
                plog = heads[a](z_h)
                mis.append(float(empirical_mutual_information(bh[a], plog.softmax(1), num_values=num_bias_values[a])))
                accs.append(float((plog.argmax(1) == bh[a]).float().mean()))
        if fresh:
            for a in attrs:
                fresh_accs.append(privacy_bias_accuracy(z_f, bf[a], z_h, bh[a], num_values=num_bias_values[a]))
        out["mi"] = float(np.sum(mis))
        out["privacy_head_accuracy"] = float(np.mean(accs))
        if fresh:
            out["bias_accuracy"] = float(np.mean(fresh_accs))
            out["bias_accuracy_by_attribute"] = dict(zip(attrs, fresh_accs))
        out["_pred"] = logits_h.argmax(1)
        return out

    # --- privacy heads on the vanilla bottleneck, trained to a plateau ----------------------------
    heads = {a: PrivacyHead(dim, num_bias_values[a]).to(dev) for a in attrs}
    privacy_log: dict[str, Any] = {"initial": {}}
    _, z_f0 = features_of("fit", soft=True)
    _, z_h0 = features_of("hold", soft=True)
    for a in attrs:
        privacy_log["initial"][a] = train_privacy_head(
            heads[a], z_f0, bf[a], z_h0, bh[a], lr=config.privacy_lr, momentum=config.privacy_momentum,
            max_epochs=config.privacy_max_epochs, patience=config.privacy_patience,
            batch_size=config.batch_size, generator=gen)
    vanilla = hold_metrics(soft=False, heads=heads, fresh=True)
    vanilla.pop("_pred")
    progress(0.05, f"vanilla held-out task {vanilla['task_accuracy']:.3f}, bias {vanilla['bias_accuracy']:.3f}")

    if config.structured_rule == "bias-rank":
        keep, head, rows, pick, fallback = rank_prune(
            z_fit_cache, y_fit_d, bf, z_hold_cache, y_hold_d, bh, num_bias_values=num_bias_values,
            num_classes=int(net.head.out_features), head=net.head, bias_budget=config.bias_budget,
            vanilla_bias_accuracy=vanilla["bias_accuracy_by_attribute"], refit_head=config.refit_head)
        if head is not None:
            _set_head(net, head)
        masks = _mask_head_columns(net, keep)
        net.eval()
        row = rows[pick]
        progress(1.0, f"bias-rank done: {row['kept_neurons']} of {dim} neurons kept")
        return FFWOutcome(model=net, masks=masks,
                          feature_mask=keep, sparsity=float((~keep).float().mean()), history=rows,
                          selected_epoch=int(row["epoch"]), selection_fallback=fallback, vanilla=vanilla,
                          selected=dict(row), privacy=privacy_log)

    opt = torch.optim.Adam(params, lr=config.lr)
    temperature = float(config.temperature)
    best_mi, stale = float("inf"), 0
    history: list[dict] = []
    snapshots: list[tuple[dict, torch.Tensor | dict]] = []
    n_fit = len(y_fit)
    sampler = IndexSampler(n_fit, min(config.batch_size, n_fit), seed=seed)
    x_fit_dev = x_fit.to(dev) if not config.structured else None
    for epoch in range(config.max_epochs):
        # 1) refresh P on the current soft features (P's own loss only)
        _, zf = features_of("fit", soft=True)
        _, zh = features_of("hold", soft=True)
        for a in attrs:
            train_privacy_head(heads[a], zf, bf[a], zh, bh[a], lr=config.privacy_lr,
                               momentum=config.privacy_momentum, max_epochs=config.privacy_refresh_epochs,
                               patience=config.privacy_patience, batch_size=config.batch_size, generator=gen)
        # 2) one epoch of gate optimisation; P frozen (requires_grad False), only the gates step
        _set_gate_mode(gated, fgate, net, soft=True)
        task_sum = mi_sum = 0.0
        for step in range(config.steps_per_epoch):
            idx = sampler.next()
            idx_d = idx.to(dev)
            if config.structured:
                z = fgate(z_fit_cache[idx_d])
            else:
                z = net.features(x_fit_dev[idx_d])                        # (B, D)
            logits = net.forward_head(z)
            task = F.cross_entropy(logits, y_fit_d[idx_d])
            mi = sum(empirical_mutual_information(bf[a][idx_d], heads[a](z).softmax(1),
                                                  num_values=num_bias_values[a]) for a in attrs)
            loss = task + config.gamma * mi
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            task_sum += float(task.detach())
            mi_sum += float(mi.detach())
        steps = config.steps_per_epoch
        # 3) held-out evaluation of the soft (T) and hard (T -> 0) models
        soft = hold_metrics(soft=True, heads=heads, fresh=False)
        hard = hold_metrics(soft=False, heads=heads, fresh=True)
        hard_pred = hard.pop("_pred")
        hard_classes = int(torch.unique(hard_pred).numel())
        agreement = float((soft.pop("_pred") == hard_pred).float().mean())
        row = {"epoch": epoch + 1, "temperature": temperature, "sparsity": sparsity(),
               "train_task_loss": task_sum / max(steps, 1), "train_mi": mi_sum / max(steps, 1),
               "soft_task_accuracy": soft["task_accuracy"], "soft_mi": soft["mi"],
               "hard_task_accuracy": hard["task_accuracy"], "hard_mi": hard["mi"],
               "hard_privacy_head_accuracy": hard["privacy_head_accuracy"],
               "hard_bias_accuracy": hard["bias_accuracy"], "agreement": agreement,
               "hard_predicted_classes": hard_classes}
        history.append(row)
        state = (fgate.scores.detach().clone() if fgate is not None
                 else {n: g.scores.detach().clone() for n, g in gated.gates()})
        snapshots.append((row, state))
        progress(0.05 + 0.9 * (epoch + 1) / config.max_epochs,
                 f"epoch {epoch + 1} T={temperature:.3g} sparsity {row['sparsity']:.2f} "
                 f"task {hard['task_accuracy']:.3f} bias {hard['bias_accuracy']:.3f}")
        # 4) temperature schedule on the held-out soft MI; stop when soft ≈ hard
        if (epoch + 1 >= config.min_epochs and agreement >= config.stop_agreement
                and abs(soft["mi"] - hard["mi"]) <= config.stop_mi_tolerance):
            break
        if soft["mi"] < best_mi - config.min_delta:
            best_mi, stale = soft["mi"], 0
        else:
            stale += 1
            if stale >= config.patience:
                if temperature * config.temperature_factor < config.min_temperature:
                    break
                temperature *= config.temperature_factor
                if gated is not None:
                    gated.set_temperature(temperature)
                else:
                    fgate.set_temperature(temperature)
                best_mi, stale = float("inf"), 0

    # --- selection: lowest held-out bias accuracy of the hard model, task accuracy guarded --------
    floor = vanilla["task_accuracy"] - config.task_tolerance
    pick, fallback = select_epoch([r for r, _ in snapshots], floor)
    row, state = snapshots[pick]
    with torch.no_grad():
        if fgate is not None:
            fgate.scores.copy_(state)
        else:
            for n, g in gated.gates():
                g.scores.copy_(state[n])
    feature_mask = None
    if fgate is not None:
        feature_mask = fgate.mask().cpu()
        masks = _mask_head_columns(net, feature_mask)
        final_sparsity = float((~feature_mask).float().mean())
    else:
        final_sparsity = gated.sparsity()
        masks = {n: m.cpu() for n, m in gated.mask().items()}
        net = gated.release(trainable=False)
    net.eval()
    if config.refit_head:   # last-layer retraining on the kept features of the gate-training part
        if feature_mask is not None:      # structured: the cached vanilla bottleneck, masked
            z_kept = z_fit_cache * feature_mask.to(z_fit_cache.device)
        else:
            z_kept = _forward_all(net, None, x_fit, dev)[1]
        _set_head(net, fit_standardized_linear(z_kept, y_fit_d, num_values=int(net.head.out_features)))
    progress(1.0, f"ffw done: epoch {row['epoch']} selected, sparsity {final_sparsity:.2f}")
    return FFWOutcome(model=net, masks=masks, feature_mask=feature_mask, sparsity=final_sparsity,
                      history=history, selected_epoch=int(row["epoch"]), selection_fallback=fallback,
                      vanilla=vanilla, selected=dict(row), privacy=privacy_log)


# ---------------------------------------------------------------------------------------------
# method entry point (common run signature)
# ---------------------------------------------------------------------------------------------
def _split_tensors(data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = getattr(data, f"x_{split}", None)
    y = getattr(data, f"y_{split}", None)
    if x is None or y is None:
        raise SpurAuditError(f"the data has no {split} split (x_{split}/y_{split}); FFW needs train/val/test tensors")
    return x, y


def bias_labels(data: Any, split: str, attributes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Bias attributes of one split: ``{"bias": data.bias_<split>}`` plus every entry of the optional
    ``data.extra_bias`` mapping (attribute name -> {split -> (N,) int64 tensor}), e.g. multi-color-mnist's
    ``{"bias_right": {...}}``. Attributes whose labels are missing or all unknown (< 0) are left out;
    ``attributes`` selects a subset (SpurAuditError naming the available ones when absent)."""
    out: dict[str, torch.Tensor] = {}
    main = getattr(data, f"bias_{split}", None)
    if main is not None and torch.as_tensor(main).numel() and bool((torch.as_tensor(main) >= 0).any()):
        out["bias"] = torch.as_tensor(main).long()
    for name, per_split in (getattr(data, "extra_bias", None) or {}).items():
        values = per_split.get(split) if isinstance(per_split, Mapping) else None
        if values is not None and bool((torch.as_tensor(values) >= 0).any()):
            out[str(name)] = torch.as_tensor(values).long()
    if attributes is not None:
        missing = [a for a in attributes if a not in out]
        if missing:
            raise SpurAuditError(f"bias attribute(s) {missing} have no labels in the {split} split; "
                                 f"available: {sorted(out) or 'none'}")
        out = {a: out[a] for a in attributes}
    return out


def _mined_bias(data: Any, *, base_model: nn.Module, config: FFWConfig, seed: int, device: Any,
                progress: ProgressFn) -> dict[str, dict[str, torch.Tensor]]:
    """Pseudo-bias labels (opt-in): a bias-capturing model is trained on the train split with
    `core.mitigate.mining.mine_conflicting` (GCE by default; ``config.mining`` = MiningConfig options)
    and its *predicted class* on val/test is used as the bias attribute — a model that learned only
    the shortcut predicts the class its cue points to, so its prediction names the cue's value."""
    from core.mitigate.metrics import model_outputs
    from core.mitigate.mining import MiningConfig, mine_conflicting

    res = mine_conflicting(data, config=MiningConfig(**dict(config.mining or {})), base_model=base_model, seed=seed,
                           device=device, progress=progress)
    out: dict[str, torch.Tensor] = {}
    for split in ("val", "test"):
        x = getattr(data, f"x_{split}", None)
        if x is not None:
            logits, _ = model_outputs(res.model, x, device=device)
            out[split] = torch.as_tensor(logits.argmax(1)).long()
    return {"bias": out}


@register_method("ffw")
def run_ffw(data: Any, *, base_model: nn.Module, config: FFWConfig | Mapping | None = None, seed: int = 0,
            device: "str | torch.device" = "auto", progress: ProgressFn | None = None):
    """FFW in the common run signature: prune ``base_model`` on the val split; report on val and test.

    ``data``: a `core.mitigate.common.MitigationData` (x_/y_/bias_/aligned_ train/val/test tensors,
    ``num_classes``; optional ``extra_bias``: attribute -> {split -> (N,) int64} for several biases).
    The val split is divided into gate-training and held-out parts (``config.holdout_fraction``);
    the test split is used only for the reported metrics.

    Returns a ``MitigationResult`` with method "ffw", the pruned model, metrics ``{"val", "test",
    "vanilla_val", "vanilla_test"}`` (each: `evaluate_predictions` keys plus ``bias_accuracy``
    (fresh standardized privacy head fitted on val features, scored on test), ``bias_decodability``
    (cross-validated standardized probe on that split's bottleneck), ``sparsity``), history per epoch,
    and extra (masks, feature_mask, selected_epoch, selection_fallback, privacy logs).
    """
    import time

    from core.metrics import bias_decodability, evaluate_predictions
    from core.mitigate.metrics import peak_rss_mb

    started = time.perf_counter()

    if not isinstance(config, FFWConfig):
        config = FFWConfig.from_dict(config)
    config.validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    x_val, y_val = _split_tensors(data, "val")
    x_test, y_test = _split_tensors(data, "test")
    b_val = bias_labels(data, "val", config.bias_attributes)
    b_test = bias_labels(data, "test", config.bias_attributes)
    mined = False
    if not b_val:
        if not config.use_mined_bias:
            raise SpurAuditError(
                "FFW needs bias labels on a small unbiased split (the dataset's val split): this dataset has "
                "none. Add a bias column to the manifest (e.g. bias / bias_<name>), or opt in to mined "
                "pseudo-bias labels with --set use_mined_bias=true (core.mitigate.mining), or choose a "
                "method that needs no bias labels (head-tuning, dcwp, jtt)")
        extra = _mined_bias(data, base_model=base_model, config=config, seed=seed, device=dev,
                            progress=sub_progress(progress, 0.0, 0.1))
        b_val = {"bias": extra["bias"]["val"]}
        b_test = {"bias": extra["bias"]["test"]} if "test" in extra["bias"] else {}
        mined = True
    attrs = sorted(b_val)
    # rows of val with every attribute known
    known = torch.ones(len(y_val), dtype=torch.bool)
    for a in attrs:
        known &= b_val[a] >= 0
    rows = torch.nonzero(known).flatten().numpy()
    if len(rows) < 20:
        raise SpurAuditError(f"FFW needs at least 20 bias-labelled val images, the val split has {len(rows)}")
    fit_i, hold_i = split_holdout(y_val.numpy()[rows], config.holdout_fraction, seed=seed)
    fit_i, hold_i = torch.as_tensor(rows[fit_i]), torch.as_tensor(rows[hold_i])
    num_values = {}
    for a in attrs:
        vals = [b_val[a]] + ([b_test[a]] if a in b_test else [])
        tr = getattr(data, "bias_train", None) if a == "bias" else None
        if tr is not None:
            vals.append(torch.as_tensor(tr))
        num_values[a] = max(2, int(max(int(v.max()) for v in vals)) + 1)
    outcome = ffw_prune(base_model, x_fit=x_val[fit_i], y_fit=y_val[fit_i], b_fit={a: b_val[a][fit_i] for a in attrs},
                        x_hold=x_val[hold_i], y_hold=y_val[hold_i], b_hold={a: b_val[a][hold_i] for a in attrs},
                        num_bias_values=num_values, config=config, seed=seed, device=dev,
                        progress=sub_progress(progress, 0.1 if mined else 0.0, 0.9))
    wall = time.perf_counter() - started
    progress(0.9, "evaluating")

    def report(model: nn.Module, feature_mask: torch.Tensor | None, sparsity: float) -> dict:
        from core.mitigate.metrics import model_outputs

        out: dict[str, dict] = {}
        feats = {}
        for split, x, y in (("val", x_val, y_val), ("test", x_test, y_test)):
            logits, z = model_outputs(model, x, device=dev)
            if feature_mask is not None:
                z = z * feature_mask.numpy()[None, :].astype(z.dtype)   # the structured bottleneck z ⊙ m
            feats[split] = z
            b_main = getattr(data, f"bias_{split}", None)
            al = getattr(data, f"aligned_{split}", None)
            m = evaluate_predictions(logits.argmax(1), y.numpy(),
                                     bias=None if b_main is None else np.asarray(b_main),
                                     aligned=None if al is None else np.asarray(al))
            m["sparsity"] = sparsity
            out[split] = m
        for split, b in (("val", b_val), ("test", b_test)):
            decod, accs = {}, {}
            for a in attrs:
                if a not in b:
                    continue
                lab = b[a].numpy()
                ok = lab >= 0
                try:
                    decod[a] = bias_decodability(feats[split][ok], lab[ok], seed=seed)
                except SpurAuditError:
                    continue
                if split == "test":  # privacy head fitted on val features, scored on test
                    okv = b_val[a].numpy() >= 0
                    accs[a] = privacy_bias_accuracy(torch.as_tensor(feats["val"][okv]), b_val[a][okv],
                                                    torch.as_tensor(feats["test"][ok]), b[a][ok],
                                                    num_values=num_values[a])
            if decod:
                out[split]["bias_decodability"] = float(np.mean(list(decod.values())))
                out[split]["bias_decodability_by_attribute"] = decod
            if accs:
                out[split]["bias_accuracy"] = float(np.mean(list(accs.values())))
                out[split]["bias_accuracy_by_attribute"] = accs
        return out

    pruned_metrics = report(outcome.model, outcome.feature_mask, outcome.sparsity)
    vanilla_metrics = report(base_model, None, 0.0)
    metrics = {"val": pruned_metrics["val"], "test": pruned_metrics["test"],
               "vanilla_val": vanilla_metrics["val"], "vanilla_test": vanilla_metrics["test"],
               "sparsity": outcome.sparsity, "wall_time_s": wall, "peak_rss_mb": peak_rss_mb(),
               "selected_iteration": outcome.selected_epoch,
               "selection": {"split": "val (held-out part)", "selected_epoch": outcome.selected_epoch,
                             "fallback": outcome.selection_fallback, "holdout": outcome.selected,
                             "vanilla_holdout": outcome.vanilla}}
    extra = {"masks": outcome.masks, "feature_mask": outcome.feature_mask, "structured": config.structured,
             "selected_epoch": outcome.selected_epoch, "selection_fallback": outcome.selection_fallback,
             "privacy": outcome.privacy, "bias_attributes": attrs, "mined_bias": mined,
             "num_bias_values": num_values, "fit_rows": int(len(fit_i)), "holdout_rows": int(len(hold_i))}
    progress(1.0, "ffw done")
    return MitigationResult(method="ffw", model=outcome.model, params={**asdict(config), "seed": seed}, metrics=metrics,
                            history=outcome.history, extra=extra)
