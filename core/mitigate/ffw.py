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
empirical mutual information of `core.mitigate.probes.empirical_mutual_information`; one privacy head
per bias attribute. P is trained with CE on the bias labels (SGD lr 0.1, momentum 0.9) until a plateau
on the held-out part; the gate loss never updates P (P's parameters are frozen during the gate step) and
P is refreshed on the current features before every gate epoch (Algorithm 1: "train P; optimise the
gates; until a plateau on D_val"). The temperature T starts at 1 and is multiplied by
``temperature_factor`` (0.5) whenever the held-out MI plateaus; training stops when the soft model
(gates at T) predicts like the hard model (T → 0, the exported ``m >= 0`` mask) on the held-out part, or
after ``max_epochs``.

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
fresh-probe bias accuracy is at most ``chance + bias_budget · (vanilla − chance)``
(`core.mitigate.ffw_rank.rank_prune`). ``refit_head=True`` re-fits the linear task head on the kept features with the gate-training part
(last-layer retraining on the unbiased split). Why: the MI term is measured through a privacy head
that is frozen during each gate step, and gates learn to fool that one head — its accuracy falls to
chance while a re-trained probe still reads the bias (biased MNIST, `benchmarks/debias_ffw.py`);
dropping the neurons that carry the bias removes it for every probe, and the original head, trained
with all neurons, cannot read a handful of survivors, hence the re-fit.

Known pitfalls handled (METHODS.md §3):
* P divides its input by the batch's overall RMS before a fixed per-feature z-score
  (`core.mitigate.probes.PrivacyHead`), so shrinking the whole feature scale (pruning shrank it ~40×
  in the reference run) cannot lower the MI; the reported bias accuracy uses a *fresh* standardized
  head trained to convergence on the hard model's features, and `run_ffw` also reports `core.metrics.bias_decodability` (a cross-validated standardized probe).
* MI and bias accuracy are always computed against bias labels (the reference evaluation passed the
  task label as the private label).
* Sparsity is recorded from the first epoch (with init 0 about half the gates drop below 0 after the
  first Adam steps).

Modules: this one is the method entry (`run_ffw`: bias labels, the split of val into gate-training
and held-out parts, the rule, the report); `core.mitigate.ffw_gates` holds `FFWConfig`, the start both
rules share and the paper's gate loop (`ffw_prune`); `core.mitigate.ffw_rank` the "bias-rank" rule
(`prune_by_rank`, `rank_prune`); `core.mitigate.probes` the MI estimator, the privacy head and the
probes; the named variants are data (`core.mitigate.presets.ffw_presets`, ``assets/presets/ffw.json``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError
from core.metrics import bias_decodability, evaluate_predictions
from core.mitigate.data import MitigationData, MitigationResult
from core.mitigate.ffw_gates import FFWConfig, FFWOutcome, ffw_prune
from core.mitigate.ffw_rank import prune_by_rank
from core.mitigate.metrics import model_outputs, peak_rss_mb
from core.mitigate.mining import MiningConfig, mine_conflicting
from core.mitigate.probes import privacy_bias_accuracy
from core.mitigate.registry import register_method
from core.progress import ProgressFn, null_progress, sub_progress

__all__ = ["FFWConfig", "PRUNE_RULES", "bias_labels", "split_holdout", "run_ffw"]


PruneFn = Callable[..., FFWOutcome]
#: ``FFWConfig.structured_rule`` (one of `core.mitigate.ffw_gates.STRUCTURED_RULES`) -> the tensor-level
#: pruning that implements it (both take the same arguments and return an `FFWOutcome`)
PRUNE_RULES: dict[str, PruneFn] = {"gates": ffw_prune, "bias-rank": prune_by_rank}


# ---------------------------------------------------------------------------------------------
# the unbiased split: bias labels, gate-training and held-out parts
# ---------------------------------------------------------------------------------------------
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


def bias_labels(data: MitigationData, split: str, attributes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Bias attributes of one split: ``{"bias": data.bias_<split>}`` plus every entry of
    ``data.extra_bias`` (attribute name -> {split -> (N,) int64 tensor}), e.g. multi-color-mnist's
    ``{"bias_right": {...}}``. Attributes whose labels are missing or all unknown (< 0) are left out;
    ``attributes`` selects a subset (SpurAuditError naming the available ones when absent)."""
    out: dict[str, torch.Tensor] = {}
    main = data.split(split).bias if data.has_split(split) else None
    if main is not None and main.numel() and bool((main >= 0).any()):
        out["bias"] = main.long()
    for name, per_split in (data.extra_bias or {}).items():
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


def _mined_bias(data: MitigationData, *, base_model: nn.Module, config: FFWConfig, seed: int, device: Any,
                progress: ProgressFn) -> dict[str, torch.Tensor]:
    """Pseudo-bias labels (opt-in), split -> (N,) int64: a bias-capturing model is trained on the train
    split with `core.mitigate.mining.mine_conflicting` (GCE by default; ``config.mining`` = MiningConfig
    options) and its *predicted class* on val/test is used as the bias attribute — a model that learned
    only the shortcut predicts the class its cue points to, so its prediction names the cue's value."""
    mining = config_from_mapping(MiningConfig, config.mining, what="ffw.mining")
    res = mine_conflicting(data, config=mining, base_model=base_model, seed=seed, device=device, progress=progress)
    out: dict[str, torch.Tensor] = {}
    for split in ("val", "test"):
        if data.has_split(split):
            logits, _ = model_outputs(res.model, data.split(split).x, device=device)
            out[split] = torch.as_tensor(logits.argmax(1)).long()
    return out


@dataclass
class UnbiasedSplit:
    """The bias-labelled val split FFW prunes on, divided into a gate-training ("fit") and a held-out
    part: b_val / b_test: attribute -> (N,) int64 labels of val / test; attrs: their sorted names;
    fit_rows / hold_rows: int64 row indices of val (rows with every attribute known); num_values:
    attribute -> number of bias values K_b; mined: the labels are mined pseudo-labels."""

    b_val: dict[str, torch.Tensor]
    b_test: dict[str, torch.Tensor]
    attrs: list[str]
    fit_rows: torch.Tensor
    hold_rows: torch.Tensor
    num_values: dict[str, int]
    mined: bool


def _check_splits(data: MitigationData) -> None:
    for split in ("val", "test"):
        if not data.has_split(split):
            raise SpurAuditError(f"the data has no {split} split (x_{split}/y_{split}); FFW needs train/val/test "
                                 "tensors")


def unbiased_split(data: MitigationData, *, base_model: nn.Module, config: FFWConfig, seed: int,
                   device: torch.device, progress: ProgressFn) -> UnbiasedSplit:
    """The bias labels of val and test (mined ones when the data has none and ``use_mined_bias``) and
    the seeded, class-stratified split of the labelled val rows (`split_holdout`)."""
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
        pseudo = _mined_bias(data, base_model=base_model, config=config, seed=seed, device=device, progress=progress)
        b_val = {"bias": pseudo["val"]}
        b_test = {"bias": pseudo["test"]} if "test" in pseudo else {}
        mined = True
    attrs = sorted(b_val)
    known = torch.ones(len(data.y_val), dtype=torch.bool)     # val rows with every attribute known
    for a in attrs:
        known &= b_val[a] >= 0
    rows = torch.nonzero(known).flatten().numpy()
    if len(rows) < 20:
        raise SpurAuditError(f"FFW needs at least 20 bias-labelled val images, the val split has {len(rows)}")
    fit_i, hold_i = split_holdout(data.y_val.numpy()[rows], config.holdout_fraction, seed=seed)
    num_values = {}
    for a in attrs:
        vals = [b_val[a]] + ([b_test[a]] if a in b_test else []) + ([data.bias_train] if a == "bias" else [])
        num_values[a] = max(2, int(max(int(v.max()) for v in vals)) + 1)
    return UnbiasedSplit(b_val=b_val, b_test=b_test, attrs=attrs, fit_rows=torch.as_tensor(rows[fit_i]),
                         hold_rows=torch.as_tensor(rows[hold_i]), num_values=num_values, mined=mined)


# ---------------------------------------------------------------------------------------------
# reported metrics
# ---------------------------------------------------------------------------------------------
def _bias_leakage(feats: dict[str, np.ndarray], parts: UnbiasedSplit, split: str, *, seed: int) -> dict:
    """``bias_decodability`` (cross-validated standardized probe on ``split``'s bottleneck) and, on test,
    ``bias_accuracy`` (a fresh privacy head fitted on val features, scored on test): the mean over
    attributes plus ``*_by_attribute``."""
    b = parts.b_val if split == "val" else parts.b_test
    decod, accs = {}, {}
    for a in parts.attrs:
        if a not in b:
            continue
        lab = b[a].numpy()
        ok = lab >= 0
        try:
            decod[a] = bias_decodability(feats[split][ok], lab[ok], seed=seed)
        except SpurAuditError:
            continue
        if split == "test":
            okv = parts.b_val[a].numpy() >= 0
            accs[a] = privacy_bias_accuracy(torch.as_tensor(feats["val"][okv]), parts.b_val[a][okv],
                                            torch.as_tensor(feats["test"][ok]), b[a][ok],
                                            num_values=parts.num_values[a])
    out: dict[str, Any] = {}
    if decod:
        out["bias_decodability"] = float(np.mean(list(decod.values())))
        out["bias_decodability_by_attribute"] = decod
    if accs:
        out["bias_accuracy"] = float(np.mean(list(accs.values())))
        out["bias_accuracy_by_attribute"] = accs
    return out


def report_metrics(model: nn.Module, data: MitigationData, parts: UnbiasedSplit, *,
                   feature_mask: torch.Tensor | None, sparsity: float, seed: int, device: torch.device) -> dict:
    """``{"val": {...}, "test": {...}}``: `evaluate_predictions` keys, ``sparsity`` and the bias leakage
    (`_bias_leakage`) of ``model``, its bottleneck read through ``feature_mask`` (structured: z ⊙ m)."""
    out: dict[str, dict] = {}
    feats = {}
    for split in ("val", "test"):
        sp = data.split(split)
        logits, z = model_outputs(model, sp.x, device=device)
        if feature_mask is not None:
            z = z * feature_mask.numpy()[None, :].astype(z.dtype)   # the structured bottleneck z ⊙ m
        feats[split] = z
        out[split] = evaluate_predictions(logits.argmax(1), sp.y.numpy(), bias=np.asarray(sp.bias),
                                          aligned=np.asarray(sp.aligned))
        out[split]["sparsity"] = sparsity
    for split in ("val", "test"):
        out[split].update(_bias_leakage(feats, parts, split, seed=seed))
    return out


# ---------------------------------------------------------------------------------------------
# method entry point (common run signature)
# ---------------------------------------------------------------------------------------------
@register_method("ffw")
def run_ffw(data: MitigationData, *, base_model: nn.Module, config: FFWConfig | Mapping | None = None, seed: int = 0,
            device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> MitigationResult:
    """FFW in the common run signature: prune ``base_model`` on the val split; report on val and test.

    ``data``: a `core.mitigate.data.MitigationData` (train/val/test splits, ``num_classes``; its
    ``extra_bias`` attributes are hidden too). The val split is divided into gate-training and held-out
    parts (``config.holdout_fraction``); the test split is used only for the reported metrics. The
    pruning is ``PRUNE_RULES[config.structured_rule]`` (the paper's gates, or the "bias-rank" rule).

    Returns a ``MitigationResult`` with method "ffw", the pruned model, metrics ``{"val", "test",
    "vanilla_val", "vanilla_test"}`` (each: `evaluate_predictions` keys plus ``bias_accuracy``
    (fresh standardized privacy head fitted on val features, scored on test), ``bias_decodability``
    (cross-validated standardized probe on that split's bottleneck), ``sparsity``), history per epoch,
    and extra (masks, feature_mask, selected_epoch, selection_fallback, privacy logs).
    """
    started = time.perf_counter()
    if not isinstance(config, FFWConfig):
        config = FFWConfig.from_dict(config)
    config.validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    _check_splits(data)
    parts = unbiased_split(data, base_model=base_model, config=config, seed=seed, device=dev,
                           progress=sub_progress(progress, 0.0, 0.1))
    fit_i, hold_i = parts.fit_rows, parts.hold_rows
    outcome = PRUNE_RULES[config.structured_rule](
        base_model, x_fit=data.x_val[fit_i], y_fit=data.y_val[fit_i], b_fit={a: parts.b_val[a][fit_i] for a in parts.attrs},
        x_hold=data.x_val[hold_i], y_hold=data.y_val[hold_i], b_hold={a: parts.b_val[a][hold_i] for a in parts.attrs},
        num_bias_values=parts.num_values, config=config, seed=seed, device=dev,
        progress=sub_progress(progress, 0.1 if parts.mined else 0.0, 0.9))
    wall = time.perf_counter() - started
    progress(0.9, "evaluating")
    pruned = report_metrics(outcome.model, data, parts, feature_mask=outcome.feature_mask, sparsity=outcome.sparsity,
                            seed=seed, device=dev)
    vanilla = report_metrics(base_model, data, parts, feature_mask=None, sparsity=0.0, seed=seed, device=dev)
    metrics = {"val": pruned["val"], "test": pruned["test"], "vanilla_val": vanilla["val"], "vanilla_test": vanilla["test"],
               "sparsity": outcome.sparsity, "wall_time_s": wall, "peak_rss_mb": peak_rss_mb(),
               "selected_iteration": outcome.selected_epoch,
               "selection": {"split": "val (held-out part)", "selected_epoch": outcome.selected_epoch,
                             "fallback": outcome.selection_fallback, "holdout": outcome.selected,
                             "vanilla_holdout": outcome.vanilla}}
    extra = {"masks": outcome.masks, "feature_mask": outcome.feature_mask, "structured": config.structured,
             "selected_epoch": outcome.selected_epoch, "selection_fallback": outcome.selection_fallback,
             "privacy": outcome.privacy, "bias_attributes": parts.attrs, "mined_bias": parts.mined,
             "num_bias_values": parts.num_values, "fit_rows": int(len(fit_i)), "holdout_rows": int(len(hold_i))}
    progress(1.0, "ffw done")
    return MitigationResult(method="ffw", model=outcome.model, params={**asdict(config), "seed": seed},
                            metrics=metrics, history=outcome.history, extra=extra)
