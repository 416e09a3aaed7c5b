"""Low-spuriosity head tuning and the error-tuning baseline (seed 002 §3, METHODS.md §1).

Low-spuriosity head tuning fine-tunes **only the linear head** of a model on the training images of
lowest spuriosity in each class (``k_per_class`` images, or a ``fraction`` of the class), with SGD
(lr 1e-3, momentum 0.9) for at most 20 epochs, and stops at the first epoch whose validation spurious
gap (pooled: acc(k highest-spuriosity val images) − acc(k lowest), per class, disjoint slices,
`core.audit.gaps.spurious_gaps`) is below ``gap_threshold`` (default 0.05 = 5 points). Error tuning is
the same procedure on the misclassified training images instead.

Speed: the backbone is run **once** per split to cache the penultimate features (N, D); every epoch
then only multiplies cached features by the head (`tune_head`), so tuning costs O(epochs · N · D · K)
instead of epochs × a backbone pass (`benchmarks/head_tuning_speed.py` measures the ratio).

Spuriosity (higher = stronger spurious cue) comes, in order of preference, from:

1. ``config.spuriosity`` / ``config.val_spuriosity``: any (N_train,) / (N_val,) arrays (rows aligned
   with the splits), e.g. a spuriosity ranking computed by `core.audit.spuriosity` from labelled
   features, or per-image CLIP concept scores;
2. attributes ``data.spuriosity_train`` / ``data.spuriosity_val`` (same shapes);
3. ``config.spuriosity_source = "features"`` (the default when nothing is given): the model's own
   features are labelled automatically — for each class c, among its ``top_features`` most important
   features (importance = mean over class-c training images of ``activation_j · W[c, j]``,
   `core.audit.discover`'s definition), the ``spurious_per_class`` features whose activation differs most
   between bias-conflicting and bias-aligned *validation* images of class c (standardised mean
   difference; needs bias labels on val) are taken as spurious; spuriosity is then
   `core.audit.spuriosity.compute_spuriosity` on train and val. This stands in for the human /
   CLIP / SAM labelling step when a benchmark has bias labels but no audit;
4. ``"bias"``: ground truth (aligned = 1, conflicting = 0, ties broken by the feature score) — for
   tests and sanity checks only.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from core.audit.gaps import slice_k
from core.audit.spuriosity import SpuriosityResult, class_score_order, compute_spuriosity
from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.mitigate.data import MitigationResult
from core.mitigate.metrics import finish_result, model_outputs
from core.mitigate.registry import register_method
from core.models.linear import fit_linear
from core.models.optim import make_optimizer
from core.progress import ProgressFn, null_progress, sub_progress

__all__ = [
    "HeadTuningConfig",
    "HeadTuningOutcome",
    "ranking_from_scores",
    "val_spurious_gap",
    "GapSlices",
    "select_lowest",
    "tune_head",
    "spurious_features_from_bias",
    "run_head_tuning",
    "run_error_tuning",
]

SPURIOSITY_SOURCES = ("auto", "given", "features", "bias")


@dataclass
class HeadTuningConfig:
    """Options of head tuning (defaults: the paper's).

    k_per_class: lowest-spuriosity training images per class (paper: 100); ignored when ``fraction``
        is set. fraction: share of each class instead (0 < f ≤ 1).
    lr / momentum / weight_decay / epochs / batch_size: SGD on the head only (≤ 20 epochs).
    gap_threshold: stop at the first epoch whose val spurious gap (pooled, a fraction) is below it
        (None = never stop early: run all epochs).
    gap_k: val slice size per class for the gap (None = min(100, n_c / 4)).
    spuriosity / val_spuriosity: (N_train,) / (N_val,) spuriosity arrays (higher = more spurious).
    spuriosity_source: "auto" (given arrays, else data attributes, else "features"), "given",
        "features" (automatic labelling from bias labels on val, see the module docstring) or "bias".
    top_features / spurious_per_class: for the "features" source.
    """

    k_per_class: int | None = 100
    fraction: float | None = None
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    gap_threshold: float | None = 0.05
    gap_k: int | None = None
    spuriosity: Any = None
    val_spuriosity: Any = None
    spuriosity_source: str = "auto"
    top_features: int = 15
    spurious_per_class: int = 5

    def validate(self) -> "HeadTuningConfig":
        check_choice("spuriosity_source", self.spuriosity_source, SPURIOSITY_SOURCES)
        if self.fraction is not None and not 0 < float(self.fraction) <= 1:
            raise SpurAuditError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.fraction is None and (self.k_per_class is None or int(self.k_per_class) < 1):
            raise SpurAuditError("give k_per_class >= 1 or a fraction in (0, 1]")
        if self.lr <= 0 or not 0 <= self.momentum < 1:
            raise SpurAuditError("lr must be > 0 and momentum in [0, 1) (paper: lr 1e-3, momentum 0.9)")
        if int(self.epochs) < 0 or int(self.batch_size) < 1:
            raise SpurAuditError("epochs must be >= 0 and batch_size >= 1")
        if self.gap_threshold is not None and not -1.0 <= float(self.gap_threshold) <= 1.0:
            raise SpurAuditError("gap_threshold is a fraction in [-1, 1] (e.g. 0.05 for 5 points) or None")
        if self.top_features < 1 or self.spurious_per_class < 1:
            raise SpurAuditError("top_features and spurious_per_class must be >= 1")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "HeadTuningConfig":
        """Build from a plain dict, type-checked by `core.config.config_from_mapping`."""
        return config_from_mapping(cls, values, what="head-tuning")

    def as_params(self) -> dict:
        """JSON-able params (spuriosity arrays summarised by their length)."""
        out = asdict(self)
        for key in ("spuriosity", "val_spuriosity"):
            if out[key] is not None:
                out[key] = f"<array of {len(np.asarray(out[key]))}>"
        return out


# ---------------------------------------------------------------------------------------------
# rankings and gaps from arbitrary scores
# ---------------------------------------------------------------------------------------------
def ranking_from_scores(scores: np.ndarray, labels: np.ndarray, num_classes: int):
    """A `core.audit.spuriosity.SpuriosityResult` from any (N,) spuriosity array (higher = more
    spurious) and (N,) int labels: rows grouped by class, ascending score within class (stable).
    NaN scores sort last within their class (`core.audit.spuriosity.class_score_order`)."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if scores.shape != labels.shape:
        raise SpurAuditError(f"spuriosity has {scores.shape[0]} entries but the split has {labels.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise SpurAuditError(f"labels must lie in [0, {num_classes})")
    order = class_score_order(labels, scores)
    counts = np.bincount(labels, minlength=num_classes)
    class_start = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(counts, out=class_start[1:])
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=class_start,
                            spurious={c: [] for c in range(num_classes)}, classes_without_spurious=[])


class GapSlices:
    """The disjoint low/high slices of a ranked split (per class, k = `core.audit.gaps.slice_k`), fixed
    once so the pooled gap of many predictions costs two index sums (same value as
    ``spurious_gaps(...).pooled["gap"]``)."""

    def __init__(self, ranking, *, k: int | None = None, max_k: int = 100) -> None:
        low, high = [], []
        skip = set(ranking.classes_without_spurious)
        for c in range(ranking.num_classes):
            r = ranking.order[ranking.class_start[c]:ranking.class_start[c + 1]]
            kc = slice_k(len(r), k, max_k=max_k)
            if c in skip or kc < 1:
                continue
            low.append(r[:kc])
            high.append(r[len(r) - kc:])
        self.labels = ranking.labels
        self.low = np.concatenate(low) if low else np.empty(0, dtype=np.int64)
        self.high = np.concatenate(high) if high else np.empty(0, dtype=np.int64)

    def gap(self, predictions: np.ndarray) -> float:
        """Pooled gap (fraction) of (N,) predicted classes; NaN when nothing is ranked."""
        if len(self.low) == 0:
            return float("nan")
        correct = np.asarray(predictions) == self.labels
        return float((correct[self.high].sum() - correct[self.low].sum()) / len(self.low))


def val_spurious_gap(ranking, predictions: np.ndarray, *, k: int | None = None) -> float:
    """Pooled spurious gap (fraction; acc(high) − acc(low) over disjoint per-class slices, as
    `core.audit.gaps.spurious_gaps`'s pooled gap) of ``predictions`` (N,) on a ranked split."""
    return GapSlices(ranking, k=k).gap(predictions)


def select_lowest(ranking, *, k_per_class: int | None = None, fraction: float | None = None) -> np.ndarray:
    """Row indices of the lowest-spuriosity images per class (sorted int64): ``k_per_class`` each, or
    ``ceil(fraction · n_c)``; classes smaller than k contribute all their rows."""
    out = []
    for c in range(ranking.num_classes):
        r = ranking.order[ranking.class_start[c]:ranking.class_start[c + 1]]
        n = len(r) if fraction is None else int(np.ceil(float(fraction) * len(r)))
        take = r[:min(n, int(k_per_class))] if fraction is None else r[:n]
        out.append(take)
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# tuning on cached features
# ---------------------------------------------------------------------------------------------
@dataclass
class HeadTuningOutcome:
    """head: the tuned ``nn.Linear`` (a copy); history: one dict per epoch (epoch 0 = before tuning)
    with train_loss, val_accuracy, val_gap; stopped_epoch: epoch whose head is returned;
    early_stopped: the gap fell below the threshold."""

    head: nn.Linear
    history: list[dict]
    stopped_epoch: int
    early_stopped: bool


def tune_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, *, val_features: torch.Tensor,
              val_labels: torch.Tensor, val_ranking, config: HeadTuningConfig, seed: int = 0,
              device: "str | torch.device" = "auto", progress: ProgressFn | None = None) -> HeadTuningOutcome:
    """SGD on a copy of ``head`` over cached features; stop at the first epoch whose val gap < threshold.

    Args:
        head: the model's ``nn.Linear(D, K)`` (not modified).
        features: (M, D) float cached penultimate features of the selected training images; labels (M,) int64.
        val_features: (N_val, D) float; val_labels (N_val,) int64; val_ranking: `SpuriosityResult` of val.
    The gap is checked before tuning (epoch 0) and after every epoch.
    """
    config.validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    if len(features) == 0:
        raise SpurAuditError("no training images were selected for head tuning; lower the selection "
                             "constraints (k_per_class / fraction) or check the spuriosity scores")
    if features.shape[1] != head.in_features:
        raise SpurAuditError(f"features have {features.shape[1]} dims, the head expects {head.in_features}")
    tuned = copy.deepcopy(head).to(dev).float()
    for p in tuned.parameters():
        p.requires_grad_(True)
    x, y = features.to(dev).float(), labels.to(dev).long()
    xv = val_features.to(dev).float()
    yv = val_labels.cpu().numpy()
    opt = make_optimizer("sgd", tuned.parameters(), lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    slices = GapSlices(val_ranking, k=config.gap_k)

    def check(epoch: int, loss: float | None) -> dict:
        with torch.no_grad():
            pred = tuned(xv).argmax(1).cpu().numpy()
        return {"epoch": epoch, "train_loss": loss, "val_accuracy": float((pred == yv).mean()),
                "val_gap": slices.gap(pred)}

    history = [check(0, None)]
    thr = config.gap_threshold

    def below(gap: float) -> bool:
        return thr is not None and gap < thr

    if below(history[0]["val_gap"]):
        return HeadTuningOutcome(head=tuned.eval(), history=history, stopped_epoch=0, early_stopped=True)

    def after_epoch(epoch: int, loss: float) -> bool:
        row = check(epoch, loss)
        history.append(row)
        progress(epoch / config.epochs, f"head epoch {epoch}: val gap {100 * row['val_gap']:.1f} pts")
        return below(row["val_gap"])

    stopped = fit_linear(tuned, x, y, optimizer=opt, epochs=int(config.epochs), batch_size=config.batch_size,
                         generator=gen, on_epoch=after_epoch)
    return HeadTuningOutcome(head=tuned.eval(), history=history, stopped_epoch=stopped,
                             early_stopped=below(history[-1]["val_gap"]))


# ---------------------------------------------------------------------------------------------
# spuriosity when none is given
# ---------------------------------------------------------------------------------------------
def spurious_features_from_bias(features: np.ndarray, labels: np.ndarray, aligned: np.ndarray,
                                weight: np.ndarray, *, importance_features: np.ndarray,
                                importance_labels: np.ndarray, top_features: int = 15,
                                spurious_per_class: int = 5) -> dict[int, list[int]]:
    """Automatic feature labels: class -> spurious feature indices.

    For class c: the ``top_features`` most important features (mean over class-c rows of
    ``importance_features`` of ``activation_j · W[c, j]``), ranked by how much more they fire on
    bias-aligned than on bias-conflicting rows of ``features`` (class c, standardised mean
    difference); the first ``spurious_per_class`` with a positive difference are spurious. Classes
    without both aligned and conflicting rows get no spurious feature.
    """
    feats = np.asarray(features, dtype=np.float64)
    imp_f = np.asarray(importance_features, dtype=np.float64)
    labels, aligned, imp_l = np.asarray(labels), np.asarray(aligned, dtype=bool), np.asarray(importance_labels)
    out: dict[int, list[int]] = {}
    for c in range(weight.shape[0]):
        rows = imp_l == c
        if not rows.any():
            out[c] = []
            continue
        importance = imp_f[rows].mean(0) * weight[c]                       # (D,)
        top = np.argsort(-importance)[:top_features]
        sel = labels == c
        a, b = feats[sel & aligned], feats[sel & ~aligned]
        if len(a) == 0 or len(b) == 0:
            out[c] = []
            continue
        sd = feats[sel].std(0) + 1e-8
        d = (a.mean(0) - b.mean(0)) / sd                                   # (D,) aligned minus conflicting
        ranked = [int(j) for j in top[np.argsort(-d[top])] if d[j] > 0]
        out[c] = ranked[:spurious_per_class]
    return out


def _cached_features(model: nn.Module, data: Any, split: str, dev: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), features (N, D)) of a split: ``data.features_<split>`` (+ ``data.logits_<split>``)
    when the caller already has them (e.g. the workspace feature store), else one backbone pass."""
    feats = getattr(data, f"features_{split}", None)
    if feats is not None:
        feats = np.asarray(feats, dtype=np.float32)
        with torch.no_grad():
            logits = model.forward_head(torch.as_tensor(feats).to(dev)).cpu().numpy()
        return logits, feats
    return model_outputs(model, getattr(data, f"x_{split}"), device=dev)


def _spuriosity(data: Any, config: HeadTuningConfig, *, model: nn.Module, feats: dict[str, np.ndarray],
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train scores (N_train,), val scores (N_val,), info) following the module docstring's order."""
    y_tr, y_val = data.y_train.numpy(), data.y_val.numpy()
    source = config.spuriosity_source
    given_tr = config.spuriosity if config.spuriosity is not None else getattr(data, "spuriosity_train", None)
    given_val = config.val_spuriosity if config.val_spuriosity is not None else getattr(data, "spuriosity_val", None)
    if source in ("auto", "given") and given_tr is not None:
        if given_val is None:
            raise SpurAuditError("a training spuriosity array was given without val_spuriosity; the early "
                                 "stop needs the val split's spuriosity too (same source)")
        tr, va = np.asarray(given_tr, dtype=np.float32).reshape(-1), np.asarray(given_val, dtype=np.float32).reshape(-1)
        if len(tr) != len(y_tr) or len(va) != len(y_val):
            raise SpurAuditError(f"spuriosity arrays have {len(tr)}/{len(va)} entries; the train/val splits have "
                                 f"{len(y_tr)}/{len(y_val)} images (rows must be aligned with the splits)")
        return tr, va, {"source": "given"}
    if source == "given":
        raise SpurAuditError("spuriosity_source='given' but no spuriosity arrays were passed (config.spuriosity "
                             "and config.val_spuriosity, or data.spuriosity_train / data.spuriosity_val)")
    b_val = getattr(data, "bias_val", None)
    if b_val is None or not bool((torch.as_tensor(b_val) >= 0).any()):
        raise SpurAuditError(
            "head tuning needs a spuriosity score per image: pass config spuriosity/val_spuriosity arrays "
            "(e.g. from a spuriosity ranking of labelled features, or CLIP concept scores), or give the "
            "val split bias labels so spurious features can be labelled automatically")
    al_val = data.aligned_val.numpy()
    known_val = data.bias_val.numpy() >= 0
    if source == "bias":
        def gt(split: str) -> np.ndarray:
            al = getattr(data, f"aligned_{split}").numpy().astype(np.float32)
            f = feats[split]
            tie = (f - f.mean(0)) / (f.std(0) + 1e-8)
            return al + 1e-3 * np.tanh(tie.mean(1))
        return gt("train"), gt("val"), {"source": "bias"}
    weight = model.head.weight.detach().cpu().numpy()
    spurious = spurious_features_from_bias(feats["val"][known_val], y_val[known_val], al_val[known_val], weight,
                                           importance_features=feats["train"], importance_labels=y_tr,
                                           top_features=config.top_features,
                                           spurious_per_class=config.spurious_per_class)
    if not any(spurious.values()):
        raise SpurAuditError("no spurious features could be labelled automatically (the val split needs aligned "
                             "and conflicting images per class); pass spuriosity arrays instead")
    k = data.num_classes
    tr = compute_spuriosity(feats["train"], y_tr, spurious, num_classes=k).scores
    va = compute_spuriosity(feats["val"], y_val, spurious, num_classes=k).scores
    # classes without spurious features: NaN -> 0 (neutral), so they are still tuned on/evaluated
    return np.nan_to_num(tr, nan=0.0), np.nan_to_num(va, nan=0.0), {"source": "features", "spurious_features": spurious}


# ---------------------------------------------------------------------------------------------
# method entry points (common run signature)
# ---------------------------------------------------------------------------------------------
def _run(kind: str, data: Any, *, base_model: nn.Module, config: HeadTuningConfig | Mapping | None, seed: int,
         device: "str | torch.device", progress: ProgressFn | None) -> MitigationResult:
    if not isinstance(config, HeadTuningConfig):
        config = HeadTuningConfig.from_dict(config)
    config.validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    if base_model is None:
        raise SpurAuditError(f"{kind} tunes the head of a trained model: pass base_model (a trained AuditModel)")
    if not data.has_split("val"):
        raise SpurAuditError(f"{kind} needs a val split for its early stop (the val spurious gap)")
    started = time.perf_counter()
    model = copy.deepcopy(base_model).to(dev).eval()
    progress(0.0, "caching features")
    logits, feats = {}, {}
    for split in ("train", "val"):
        logits[split], feats[split] = _cached_features(model, data, split, dev)
    y_tr = data.y_train.numpy()
    tr_scores, val_scores, info = _spuriosity(data, config, model=model, feats=feats)
    val_ranking = ranking_from_scores(val_scores, data.y_val.numpy(), data.num_classes)
    if kind == "head-tuning":
        ranking = ranking_from_scores(tr_scores, y_tr, data.num_classes)
        idx = select_lowest(ranking, k_per_class=config.k_per_class, fraction=config.fraction)
    else:
        idx = np.flatnonzero(logits["train"].argmax(1) != y_tr).astype(np.int64)
    before_pred = logits["val"].argmax(1)
    gap_before = val_spurious_gap(val_ranking, before_pred, k=config.gap_k)
    note = None
    if len(idx) == 0 and kind == "error-tuning":
        # A model that fits every training image leaves error tuning nothing to learn from: the
        # honest result is the unchanged head (reported as such), not a failed comparison.
        note = ("error tuning found no misclassified training image (the model fits the training split "
                "perfectly): the head is unchanged; use head-tuning instead")
        progress(0.1, note)
        yv = data.y_val.numpy()
        outcome = HeadTuningOutcome(head=copy.deepcopy(model.head), history=[{
            "epoch": 0, "train_loss": None, "val_accuracy": float((before_pred == yv).mean()),
            "val_gap": gap_before}], stopped_epoch=0, early_stopped=False)
    else:
        progress(0.1, f"tuning the head on {len(idx)} images")
        outcome = tune_head(model.head, torch.as_tensor(feats["train"][idx]), torch.as_tensor(y_tr[idx]),
                            val_features=torch.as_tensor(feats["val"]), val_labels=data.y_val,
                            val_ranking=val_ranking, config=config, seed=seed, device=dev,
                            progress=sub_progress(progress, 0.1, 0.8))
    with torch.no_grad():
        model.head.weight.copy_(outcome.head.weight.detach())
        model.head.bias.copy_(outcome.head.bias.detach())
    model.eval()
    extra = {"selected_rows": idx, "spuriosity_info": info, "stopped_epoch": outcome.stopped_epoch,
             "early_stopped": outcome.early_stopped, "train_spuriosity": tr_scores, "val_spuriosity": val_scores}
    result = finish_result(method=kind, model=model, data=data, params={**config.as_params(), "seed": seed},
                           device=dev, started=started, history=outcome.history, extra=extra, sparsity=None,
                           selected_iteration=outcome.stopped_epoch, progress=sub_progress(progress, 0.8, 1.0))
    result.metrics["val_gap_before"] = gap_before
    result.metrics["val_gap_after"] = outcome.history[-1]["val_gap"]
    result.metrics["n_tuned_on"] = int(len(idx))
    result.metrics["early_stopped"] = outcome.early_stopped
    result.metrics["spuriosity_source"] = info["source"]
    if note:
        result.metrics["note"] = note
    return result


@register_method("head-tuning")
def run_head_tuning(data: Any, *, base_model: nn.Module, config: HeadTuningConfig | Mapping | None = None,
                    seed: int = 0, device: "str | torch.device" = "auto",
                    progress: ProgressFn | None = None) -> MitigationResult:
    """Low-spuriosity head tuning of ``base_model`` (only ``head`` changes; the encoder is untouched).

    ``data``: `core.mitigate.data.MitigationData` (train/val needed; test only for reporting);
    optional attributes ``spuriosity_train``/``spuriosity_val`` ((N,) arrays) and
    ``features_train``/``features_val`` (cached (N, D) features). Returns a ``MitigationResult``
    ("head-tuning") whose metrics add ``val_gap_before``/``val_gap_after`` (pooled val spurious gaps,
    fractions), ``n_tuned_on`` and ``early_stopped``; history = one row per epoch (val only).
    """
    return _run("head-tuning", data, base_model=base_model, config=config, seed=seed, device=device, progress=progress)


@register_method("error-tuning")
def run_error_tuning(data: Any, *, base_model: nn.Module, config: HeadTuningConfig | Mapping | None = None,
                     seed: int = 0, device: "str | torch.device" = "auto",
                     progress: ProgressFn | None = None) -> MitigationResult:
    """Error tuning baseline: like `run_head_tuning` but on the misclassified training images."""
    return _run("error-tuning", data, base_model=base_model, config=config, seed=seed, device=device, progress=progress)
