"""Metrics of predictions and features that every part of the engine reports: group accuracies and
bias decodability.

Conventions: ``labels`` and ``bias`` are int arrays of shape (N,); ``aligned`` is a bool array (N,)
(True where the sample's bias value is the one its class is correlated with). Accuracies are
fractions in [0, 1].
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import SpurAuditError


def _as_int_array(name: str, values, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    if arr.ndim != 1:
        raise SpurAuditError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise SpurAuditError(f"{name} has {len(arr)} entries but predictions have {n}")
    return arr


def evaluate_predictions(pred, labels, *, bias=None, aligned=None) -> dict[str, float]:
    """Accuracy overall and by group.

    Args:
        pred, labels: (N,) int predicted and true classes.
        bias: (N,) int bias attribute (−1 = unknown) or None.
        aligned: (N,) bool bias-aligned flags or None (then derived as ``bias == labels`` when bias
            is given, the convention of the synthetic datasets).

    Returns keys ``accuracy``, and when bias labels exist ``unbiased_accuracy`` (mean over
    (class, bias) groups present), ``worst_group_accuracy``, ``aligned_accuracy``,
    ``conflicting_accuracy`` (NaN when a side is empty), ``n_groups``.
    """
    labels = _as_int_array("labels", labels)
    pred = _as_int_array("pred", pred, len(labels))
    if len(labels) == 0:
        raise SpurAuditError("cannot evaluate on an empty split")
    correct = pred == labels
    out: dict[str, float] = {"accuracy": float(correct.mean()), "n": int(len(labels))}
    if bias is None:
        return out
    bias = _as_int_array("bias", bias, len(labels))
    known = bias >= 0
    if not known.any():
        return out
    if aligned is None:
        aligned = bias == labels
    aligned = np.asarray(aligned, dtype=bool)
    group_acc = []
    for c in np.unique(labels[known]):
        for b in np.unique(bias[known & (labels == c)]):
            members = known & (labels == c) & (bias == b)
            group_acc.append(correct[members].mean())
    out["unbiased_accuracy"] = float(np.mean(group_acc))
    out["worst_group_accuracy"] = float(np.min(group_acc))
    out["n_groups"] = len(group_acc)
    sel_a, sel_c = known & aligned, known & ~aligned
    out["aligned_accuracy"] = float(correct[sel_a].mean()) if sel_a.any() else float("nan")
    out["conflicting_accuracy"] = float(correct[sel_c].mean()) if sel_c.any() else float("nan")
    return out


def bias_decodability(features, bias, *, folds: int = 5, seed: int = 0, max_samples: int = 4000) -> float:
    """How well a standardized linear probe reads the bias from features (cross-validated accuracy).

    Features are z-scored per dimension (so a pruned model whose features shrank in scale cannot hide
    the bias behind a poorly conditioned probe) and a multinomial logistic regression is trained to
    convergence on each fold. Chance level is about 1 / (number of bias values).

    Args:
        features: (N, D) float array (e.g. penultimate activations).
        bias: (N,) int bias labels; rows with bias < 0 are ignored.
        max_samples: rows kept (a seeded stratified subsample) so the probe stays cheap.
    """
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    b = _as_int_array("bias", bias, len(x))
    if x.ndim != 2:
        raise SpurAuditError(f"features must be (N, D), got shape {x.shape}")
    keep = b >= 0
    x, b = x[keep], b[keep]
    values, counts = np.unique(b, return_counts=True)
    if len(values) < 2:
        raise SpurAuditError("bias decodability needs at least two bias values among the samples")
    if len(x) > max_samples:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(x), size=max_samples, replace=False))
        x, b = x[idx], b[idx]
        values, counts = np.unique(b, return_counts=True)
    n_splits = int(max(2, min(folds, counts.min())))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, x, b, cv=cv).mean())
