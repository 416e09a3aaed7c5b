"""FFW pruning on tensors: the config, the start both structured rules share, and the paper's
MI-trained gates (`ffw_prune`). `core.mitigate.ffw` is the method entry point (`run_ffw`); the
SpurAudit "bias-rank" rule is `core.mitigate.ffw_rank`.

The start (`start_pruning`): a frozen deep copy of the vanilla model, the gates (one per encoder weight
via `core.models.gates.GatedModel`, or one per bottleneck neuron, `FeatureGate`, after a cached
bottleneck), one privacy head per bias attribute trained to a plateau on the vanilla bottleneck, and the
vanilla's held-out metrics.

`ffw_prune` then repeats the epoch of Algorithm 1 (METHODS.md §3) — refresh P on the current soft
features (`_refresh_privacy_heads`), one epoch of gate steps on ``CE(task) + γ · Σ_a MI(b_a, P_a(z))``
with P frozen (`_gate_epoch`), held-out metrics of the soft (T) and hard (T → 0) models
(`_evaluate_epoch`), the temperature schedule and the stop rule (`TemperatureSchedule`) — and finally
keeps the gates of the epoch `select_epoch` picks (`_restore_selected`), exports the masks
(`_export_masks`) and, with ``refit_head``, re-fits the task head on the kept features (`_refit_head`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.mitigate.probes import PrivacyHead, empirical_mutual_information, privacy_bias_accuracy, train_privacy_head
from core.mitigate.training import IndexSampler
from core.models.gates import GateConfig, GatedModel, WeightGate, apply_masks
from core.models.linear import fit_standardized_linear
from core.progress import ProgressFn, null_progress

#: how a structured FFW picks the bottleneck neurons it keeps (`core.mitigate.ffw.PRUNE_RULES` runs them)
STRUCTURED_RULES = ("gates", "bias-rank")


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
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
        least biased, k chosen on the held-out part (`core.mitigate.ffw_rank.rank_prune`).
    bias_budget ("bias-rank"): the held-out bias accuracy allowed, as a fraction of the vanilla's
        margin over chance: cap = chance + bias_budget · (vanilla − chance); 0.5 halves it. To aim
        at a drop of D points, bias_budget ≈ 1 − D / (vanilla − chance) (e.g. D = 50 from 99 % with
        chance 10 %: 0.44); lower values remove more bias and keep fewer neurons (less task accuracy).
    refit_head: after pruning, re-fit the linear task head on the kept features with the gate-training
        part (last-layer retraining on the unbiased split; the paper fine-tunes nothing, default off).
    """

    # what is gated, and the gate optimiser
    structured: bool = False
    gamma: float = 10.0
    lr: float = 1e-3
    init: float = 0.0
    batch_size: int = 128
    steps_per_epoch: int = 50
    max_epochs: int = 60
    min_epochs: int = 3

    # temperature schedule and stop rule
    temperature: float = 1.0
    temperature_factor: float = 0.5
    min_temperature: float = 1e-4
    patience: int = 2
    min_delta: float = 1e-3
    stop_agreement: float = 0.995
    stop_mi_tolerance: float = 0.02

    # the privacy heads P
    privacy_lr: float = 0.1
    privacy_momentum: float = 0.9
    privacy_max_epochs: int = 100
    privacy_refresh_epochs: int = 5
    privacy_patience: int = 5

    # the unbiased split, selection, and the bias labels
    holdout_fraction: float = 0.4
    task_tolerance: float = 0.05
    bias_attributes: list[str] | None = None
    use_mined_bias: bool = False
    mining: dict = field(default_factory=dict)

    # SpurAudit variants
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
        check_choice("structured_rule", self.structured_rule, STRUCTURED_RULES)
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
# gates on the bottleneck, the task head under a neuron mask
# ---------------------------------------------------------------------------------------------
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


def mask_head_columns(model: nn.Module, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attach the structured mask to ``model.head``: column j of its (K, D) weight is kept iff
    ``keep[j]`` (so ``C(z ⊙ m) = (W diag(m)) z + b``); returns ``{"head": (K, D) bool mask}`` on CPU."""
    mask = keep.cpu().bool()[None, :].expand_as(model.head.weight).clone()
    apply_masks(model, {"head": mask.to(model.head.weight.device)})
    return {"head": mask}


def set_head(model: nn.Module, linear: nn.Linear) -> None:
    """Copy ``linear``'s weight and bias into ``model.head`` (under a fixed mask, into the original)."""
    head = model.head
    with torch.no_grad():
        target = head.parametrizations.weight.original if parametrize.is_parametrized(head, "weight") else head.weight
        target.copy_(linear.weight.to(target.device))
        head.bias.copy_(linear.bias.to(head.bias.device))


def forward_all(model: nn.Module, fgate: FeatureGate | None, x: torch.Tensor, dev: torch.device,
                batch_size: int = 512, *, z_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), gated bottleneck z (N, D)) of images ``x`` (N, C, H, W), or of a cached
    bottleneck ``z_cache`` (N, D), without gradients."""
    zs, ls = [], []
    with torch.no_grad():
        for start in range(0, len(x) if z_cache is None else len(z_cache), batch_size):
            if z_cache is not None:
                z = z_cache[start:start + batch_size]
                z = fgate(z) if fgate is not None else z
            else:
                z = model.features(x[start:start + batch_size].to(dev))          # (B, D)
                z = fgate(z) if fgate is not None else z
            zs.append(z)
            ls.append(model.forward_head(z))
    return torch.cat(ls), torch.cat(zs)


# ---------------------------------------------------------------------------------------------
# what `ffw_prune` returns, and the start both rules share
# ---------------------------------------------------------------------------------------------
@dataclass
class FFWOutcome:
    """What `ffw_prune` (and `core.mitigate.ffw_rank.prune_by_rank`) return.

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


@dataclass
class PruningStart:
    """The state both structured rules (and the unstructured gates) start from (`start_pruning`).

    net: the frozen deep copy of the vanilla on ``device`` (eval mode); gated (unstructured) / fgate
    (structured): the gates, all at ``config.init``; x_fit / x_hold: the parts' images (CPU);
    y_* and b_* (attribute -> labels): on the device; z_fit / z_hold: the cached vanilla bottleneck
    (N, D) (structured only); heads: one privacy head per attribute (trained in place); privacy: their
    training summaries; vanilla: held-out metrics of the vanilla (`holdout_metrics`, hard, fresh).
    """

    config: FFWConfig
    device: torch.device
    net: nn.Module
    gated: GatedModel | None
    fgate: FeatureGate | None
    x_fit: torch.Tensor
    x_hold: torch.Tensor
    y_fit: torch.Tensor
    y_hold: torch.Tensor
    b_fit: dict[str, torch.Tensor]
    b_hold: dict[str, torch.Tensor]
    num_bias_values: Mapping[str, int]
    dim: int
    generator: torch.Generator
    z_fit: torch.Tensor | None = None
    z_hold: torch.Tensor | None = None
    heads: dict[str, PrivacyHead] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    vanilla: dict = field(default_factory=dict)

    @property
    def attrs(self) -> list[str]:
        return sorted(self.b_fit)

    def gate_parameters(self) -> list[nn.Parameter]:
        return [self.fgate.scores] if self.fgate is not None else self.gated.gate_parameters()

    def set_gate_mode(self, *, soft: bool) -> None:
        """Model (BatchNorm etc.) always in eval mode; gates soft (training mode, T) or hard (eval)."""
        self.net.eval()
        if self.gated is not None:
            for _, g in self.gated.gates():
                g.train(soft)
        if self.fgate is not None:
            self.fgate.train(soft)

    def set_temperature(self, temperature: float) -> None:
        if self.gated is not None:
            self.gated.set_temperature(temperature)
        else:
            self.fgate.set_temperature(temperature)

    def features(self, part: str, *, soft: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, gated bottleneck) of the "fit" or "hold" part with soft or hard gates."""
        self.set_gate_mode(soft=soft)
        if part == "fit":
            return forward_all(self.net, self.fgate, self.x_fit, self.device, z_cache=self.z_fit)
        return forward_all(self.net, self.fgate, self.x_hold, self.device, z_cache=self.z_hold)

    def sparsity(self) -> float:
        return float((~self.fgate.mask()).float().mean()) if self.fgate is not None else self.gated.sparsity()

    def gate_state(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """A copy of the gate scores (restored by `load_gate_state`)."""
        if self.fgate is not None:
            return self.fgate.scores.detach().clone()
        return {n: g.scores.detach().clone() for n, g in self.gated.gates()}

    def load_gate_state(self, state: torch.Tensor | dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            if self.fgate is not None:
                self.fgate.scores.copy_(state)
            else:
                for n, g in self.gated.gates():
                    g.scores.copy_(state[n])

    def holdout_metrics(self, *, soft: bool, fresh: bool) -> dict:
        """Held-out metrics of the current gates: ``task_accuracy``, ``mi`` (sum over attributes) and
        ``privacy_head_accuracy`` (mean) of the privacy heads, with ``fresh`` also ``bias_accuracy``
        (+ ``_by_attribute``) of fresh standardized probes fitted on the fit part; ``_pred`` = the
        held-out predictions (N,)."""
        logits_h, z_h = self.features("hold", soft=soft)
        out = {"task_accuracy": float((logits_h.argmax(1) == self.y_hold).float().mean())}
        _, z_f = self.features("fit", soft=soft) if fresh else (None, None)
        mis, accs, fresh_accs = [], [], []
        with torch.no_grad():
            for a in self.attrs:
                plog = self.heads[a](z_h)
                mis.append(float(empirical_mutual_information(self.b_hold[a], plog.softmax(1),
                                                              num_values=self.num_bias_values[a])))
                accs.append(float((plog.argmax(1) == self.b_hold[a]).float().mean()))
        if fresh:
            for a in self.attrs:
                fresh_accs.append(privacy_bias_accuracy(z_f, self.b_fit[a], z_h, self.b_hold[a],
                                                        num_values=self.num_bias_values[a]))
        out["mi"] = float(np.sum(mis))
        out["privacy_head_accuracy"] = float(np.mean(accs))
        if fresh:
            out["bias_accuracy"] = float(np.mean(fresh_accs))
            out["bias_accuracy_by_attribute"] = dict(zip(self.attrs, fresh_accs))
        out["_pred"] = logits_h.argmax(1)
        return out

    def train_heads(self, *, max_epochs: int) -> dict[str, dict]:
        """(Re)train every privacy head on the current soft features (P's own loss only); returns the
        `train_privacy_head` summaries per attribute."""
        cfg = self.config
        _, zf = self.features("fit", soft=True)
        _, zh = self.features("hold", soft=True)
        return {a: train_privacy_head(self.heads[a], zf, self.b_fit[a], zh, self.b_hold[a], lr=cfg.privacy_lr,
                                      momentum=cfg.privacy_momentum, max_epochs=max_epochs,
                                      patience=cfg.privacy_patience, batch_size=cfg.batch_size,
                                      generator=self.generator)
                for a in self.attrs}


def _check_bias_parts(b_fit: Mapping[str, torch.Tensor], b_hold: Mapping[str, torch.Tensor],
                      num_bias_values: Mapping[str, int]) -> None:
    if not b_fit or set(b_fit) != set(b_hold) or set(b_fit) - set(num_bias_values):
        raise SpurAuditError("ffw needs the same bias attributes (with their value counts) on both parts of the split")
    for name, b in list(b_fit.items()) + list(b_hold.items()):
        if b.numel() and int(b.min()) < 0:
            raise SpurAuditError(f"bias attribute {name!r} has unknown (-1) labels; drop those rows before FFW")


def start_pruning(model: nn.Module, *, x_fit: torch.Tensor, y_fit: torch.Tensor, b_fit: Mapping[str, torch.Tensor],
                  x_hold: torch.Tensor, y_hold: torch.Tensor, b_hold: Mapping[str, torch.Tensor],
                  num_bias_values: Mapping[str, int], config: FFWConfig, seed: int, device: torch.device,
                  progress: ProgressFn) -> PruningStart:
    """Seed, copy and freeze ``model``, attach the gates, train the privacy heads on the vanilla
    bottleneck to a plateau and measure the vanilla on the held-out part (`PruningStart`)."""
    _check_bias_parts(b_fit, b_hold, num_bias_values)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model).to(device)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    gate_config = GateConfig(kind="ffw", init=config.init, temperature=config.temperature, structured=False)
    dim = int(getattr(net, "feature_dim", 0) or net.head.in_features)
    start = PruningStart(config=config, device=device, net=net, gated=None, fgate=None, x_fit=x_fit, x_hold=x_hold,
                         y_fit=y_fit.to(device), y_hold=y_hold.to(device),
                         b_fit={a: b.to(device) for a, b in b_fit.items()},
                         b_hold={a: b.to(device) for a, b in b_hold.items()},
                         num_bias_values=num_bias_values, dim=dim, generator=generator)
    if config.structured:   # structured gates sit after a frozen encoder: cache the bottleneck once
        start.fgate = FeatureGate(dim, gate_config).to(device)
        start.z_fit = forward_all(net, None, x_fit, device)[1]
        start.z_hold = forward_all(net, None, x_hold, device)[1]
    else:
        start.gated = GatedModel(net, gate_config, exclude=[net.head])
    start.heads = {a: PrivacyHead(dim, num_bias_values[a]).to(device) for a in start.attrs}
    start.privacy = {"initial": start.train_heads(max_epochs=config.privacy_max_epochs)}
    start.vanilla = start.holdout_metrics(soft=False, fresh=True)
    start.vanilla.pop("_pred")
    progress(0.05, f"vanilla held-out task {start.vanilla['task_accuracy']:.3f}, "
                   f"bias {start.vanilla['bias_accuracy']:.3f}")
    return start


# ---------------------------------------------------------------------------------------------
# the paper's gate loop
# ---------------------------------------------------------------------------------------------
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


class TemperatureSchedule:
    """The temperature T of the gates and the stop rule, updated after every epoch (`after_epoch`).

    Stop once ``min_epochs`` have run and the soft and hard models agree on ≥ ``stop_agreement`` of
    the held-out predictions with held-out MIs within ``stop_mi_tolerance``. Otherwise an epoch whose
    soft MI is not ``min_delta`` below the best so far is stale; after ``patience`` stale epochs
    T ← ``temperature_factor`` · T (the plateau restarts), or stop when T would fall below
    ``min_temperature``.
    """

    def __init__(self, config: FFWConfig) -> None:
        self.config = config
        self.temperature = float(config.temperature)
        self.best_mi, self.stale = float("inf"), 0

    def after_epoch(self, row: dict, start: PruningStart) -> bool:
        """Update T from the epoch's ``row`` (``epoch``, ``soft_mi``, ``hard_mi``, ``agreement``) and set
        it on ``start``'s gates; returns True when training stops."""
        cfg = self.config
        if (row["epoch"] >= cfg.min_epochs and row["agreement"] >= cfg.stop_agreement
                and abs(row["soft_mi"] - row["hard_mi"]) <= cfg.stop_mi_tolerance):
            return True
        if row["soft_mi"] < self.best_mi - cfg.min_delta:
            self.best_mi, self.stale = row["soft_mi"], 0
            return False
        self.stale += 1
        if self.stale >= cfg.patience:
            if self.temperature * cfg.temperature_factor < cfg.min_temperature:
                return True
            self.temperature *= cfg.temperature_factor
            start.set_temperature(self.temperature)
            self.best_mi, self.stale = float("inf"), 0
        return False


def _gate_epoch(start: PruningStart, opt: torch.optim.Optimizer, sampler: IndexSampler,
                x_fit_dev: torch.Tensor | None) -> tuple[float, float]:
    """``steps_per_epoch`` gate steps on ``CE(task) + γ · Σ_a MI`` over batches of the fit part (P frozen:
    its parameters do not require grad, only the gates step); returns the mean task and MI losses."""
    cfg, dev = start.config, start.device
    start.set_gate_mode(soft=True)
    task_sum = mi_sum = 0.0
    for _ in range(cfg.steps_per_epoch):
        idx_d = sampler.next().to(dev)
        if start.fgate is not None:
            z = start.fgate(start.z_fit[idx_d])
        else:
            z = start.net.features(x_fit_dev[idx_d])                        # (B, D)
        task = F.cross_entropy(start.net.forward_head(z), start.y_fit[idx_d])
        mi = sum(empirical_mutual_information(start.b_fit[a][idx_d], start.heads[a](z).softmax(1),
                                              num_values=start.num_bias_values[a]) for a in start.attrs)
        loss = task + cfg.gamma * mi
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        task_sum += float(task.detach())
        mi_sum += float(mi.detach())
    steps = max(cfg.steps_per_epoch, 1)
    return task_sum / steps, mi_sum / steps


def _evaluate_epoch(start: PruningStart, epoch: int, temperature: float, task_loss: float, mi_loss: float) -> dict:
    """The history row of an epoch: held-out metrics of the soft (T) and hard (T → 0) models, their
    agreement and the number of classes the hard model predicts."""
    soft = start.holdout_metrics(soft=True, fresh=False)
    hard = start.holdout_metrics(soft=False, fresh=True)
    hard_pred = hard.pop("_pred")
    agreement = float((soft.pop("_pred") == hard_pred).float().mean())
    return {"epoch": epoch, "temperature": temperature, "sparsity": start.sparsity(),
            "train_task_loss": task_loss, "train_mi": mi_loss,
            "soft_task_accuracy": soft["task_accuracy"], "soft_mi": soft["mi"],
            "hard_task_accuracy": hard["task_accuracy"], "hard_mi": hard["mi"],
            "hard_privacy_head_accuracy": hard["privacy_head_accuracy"],
            "hard_bias_accuracy": hard["bias_accuracy"], "agreement": agreement,
            "hard_predicted_classes": int(torch.unique(hard_pred).numel())}


def _restore_selected(start: PruningStart, snapshots: list[tuple[dict, Any]]) -> tuple[dict, bool]:
    """Load the gates of the epoch `select_epoch` picks (held-out task accuracy ≥ vanilla − tolerance);
    returns its row and whether the fallback rule picked it."""
    floor = start.vanilla["task_accuracy"] - start.config.task_tolerance
    pick, fallback = select_epoch([r for r, _ in snapshots], floor)
    row, state = snapshots[pick]
    start.load_gate_state(state)
    return row, fallback


def _export_masks(start: PruningStart) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor | None, float]:
    """The pruned model with the hard masks fixed: (model, layer -> bool mask, feature mask or None,
    sparsity). Structured: the neuron mask goes onto the head's columns; unstructured: the gates are
    released as fixed masks on the encoder weights."""
    if start.fgate is not None:
        feature_mask = start.fgate.mask().cpu()
        masks = mask_head_columns(start.net, feature_mask)
        net, sparsity = start.net, float((~feature_mask).float().mean())
    else:
        feature_mask = None
        sparsity = start.gated.sparsity()
        masks = {n: m.cpu() for n, m in start.gated.mask().items()}
        net = start.gated.release(trainable=False)
    net.eval()
    return net, masks, feature_mask, sparsity


def _refit_head(start: PruningStart, net: nn.Module, feature_mask: torch.Tensor | None) -> None:
    """Last-layer retraining on the kept features of the fit part (`fit_standardized_linear`)."""
    if feature_mask is not None:      # structured: the cached vanilla bottleneck, masked
        z_kept = start.z_fit * feature_mask.to(start.z_fit.device)
    else:
        z_kept = forward_all(net, None, start.x_fit, start.device)[1]
    set_head(net, fit_standardized_linear(z_kept, start.y_fit, num_values=int(net.head.out_features)))


def ffw_prune(model: nn.Module, *, x_fit: torch.Tensor, y_fit: torch.Tensor, b_fit: Mapping[str, torch.Tensor],
              x_hold: torch.Tensor, y_hold: torch.Tensor, b_hold: Mapping[str, torch.Tensor],
              num_bias_values: Mapping[str, int], config: FFWConfig | None = None, seed: int = 0,
              device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> FFWOutcome:
    """The paper's FFW (MI-trained gates) on an `AuditModel`-like model (``features(x)`` (B, D),
    ``forward_head(z)``, ``head``).

    Args:
        model: the vanilla model (not modified; a deep copy is pruned).
        x_fit, y_fit: (N, C, H, W) float images in [0, 1] and (N,) int64 labels of the gate-training
            part of the unbiased split; ``b_fit``: attribute name -> (N,) int64 bias labels (≥ 0).
        x_hold, y_hold, b_hold: the held-out part (P plateaus, temperature schedule, selection).
        num_bias_values: attribute name -> number of bias values K_b.
        config: ``structured_rule`` must be "gates" (the "bias-rank" rule is
            `core.mitigate.ffw_rank.prune_by_rank`; `core.mitigate.ffw.run_ffw` dispatches on it).
    Returns: `FFWOutcome` (the pruned model carries fixed masks; no weight was changed unless
    ``refit_head`` re-fitted the task head).
    """
    config = (config or FFWConfig()).validate()
    if config.structured_rule != "gates":
        raise SpurAuditError(f"ffw_prune trains the paper's gates; structured_rule={config.structured_rule!r} is "
                             "core.mitigate.ffw_rank.prune_by_rank (run_ffw picks the rule)")
    progress = progress or null_progress
    start = start_pruning(model, x_fit=x_fit, y_fit=y_fit, b_fit=b_fit, x_hold=x_hold, y_hold=y_hold, b_hold=b_hold,
                          num_bias_values=num_bias_values, config=config, seed=seed, device=resolve_device(device),
                          progress=progress)
    opt = torch.optim.Adam(start.gate_parameters(), lr=config.lr)
    schedule = TemperatureSchedule(config)
    history: list[dict] = []
    snapshots: list[tuple[dict, Any]] = []
    n_fit = len(y_fit)
    sampler = IndexSampler(n_fit, min(config.batch_size, n_fit), seed=seed)
    x_fit_dev = x_fit.to(start.device) if not config.structured else None
    for epoch in range(1, config.max_epochs + 1):
        start.train_heads(max_epochs=config.privacy_refresh_epochs)
        task_loss, mi_loss = _gate_epoch(start, opt, sampler, x_fit_dev)
        row = _evaluate_epoch(start, epoch, schedule.temperature, task_loss, mi_loss)
        history.append(row)
        snapshots.append((row, start.gate_state()))
        progress(0.05 + 0.9 * epoch / config.max_epochs,
                 f"epoch {epoch} T={schedule.temperature:.3g} sparsity {row['sparsity']:.2f} "
                 f"task {row['hard_task_accuracy']:.3f} bias {row['hard_bias_accuracy']:.3f}")
        if schedule.after_epoch(row, start):
            break
    row, fallback = _restore_selected(start, snapshots)
    net, masks, feature_mask, sparsity = _export_masks(start)
    if config.refit_head:
        _refit_head(start, net, feature_mask)
    progress(1.0, f"ffw done: epoch {row['epoch']} selected, sparsity {sparsity:.2f}")
    return FFWOutcome(model=net, masks=masks, feature_mask=feature_mask, sparsity=sparsity, history=history,
                      selected_epoch=int(row["epoch"]), selection_fallback=fallback, vanilla=start.vanilla,
                      selected=dict(row), privacy=start.privacy)


__all__ = ["STRUCTURED_RULES", "FFWConfig", "FeatureGate", "mask_head_columns", "set_head", "forward_all",
           "FFWOutcome", "PruningStart", "start_pruning", "select_epoch", "TemperatureSchedule", "ffw_prune"]
