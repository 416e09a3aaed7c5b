"""Discovery of each class's most important neural features (Salient ImageNet; METHODS.md §1).

Importance of feature j for class c = mean over the class-c group of training rows of
``activation_j x W[c, j]`` = ``mean_c(a_j) * W[c, j]`` (higher = pushes the logit of c up more).

Grouping (``group_by``):
- ``"prediction"`` (default, as Salient ImageNet): rows the model *predicts* as c — the features the
  model actually uses when it says c;
- ``"label"``: rows whose true label is c;
- ``"correct"``: rows labelled c and predicted c.
A class whose group is empty (never predicted, say) falls back to its label group; such classes are
listed in ``DiscoveryResult.fallback_classes``.

Each top feature also gets its *single-feature gap*: rank the class's rows (by true label) by that
feature's activation alone and take acc(k highest) − acc(k lowest) with the disjoint k of `gaps`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.audit.gaps import slice_k
from core.audit.spuriosity import gather_class_columns, group_by_class, iter_row_blocks
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress, sub_progress

__all__ = ["GROUPINGS", "DiscoveryConfig", "DiscoveryResult", "class_means", "feature_importance", "top_activating",
           "discover_features", "single_feature_gaps"]

GROUPINGS = ("prediction", "label", "correct")


@dataclass
class DiscoveryConfig:
    """k: top features per class (5 in Salient ImageNet). group_by: prediction | label | correct.
    gap_k: slice size of the single-feature gaps (None = min(100, n/4))."""

    k: int = 5
    group_by: str = "prediction"
    gap_k: int | None = None
    block_rows: int = 16384

    def validate(self, dim: int) -> None:
        check_choice("group_by", self.group_by, GROUPINGS)
        if not 1 <= self.k <= dim:
            raise SpurAuditError(f"k must be in [1, {dim}] (got {self.k})")


@dataclass
class DiscoveryResult:
    """importance: (K, D) float32; top_features: (K, k) int64, most important first;
    top_importance: (K, k) float32; counts: (K,) rows in each class's group; single_gaps: DataFrame
    (class_index, rank, feature, importance, gap, acc_high, acc_low, k)."""

    importance: np.ndarray
    top_features: np.ndarray
    top_importance: np.ndarray
    counts: np.ndarray
    group_by: str
    single_gaps: pd.DataFrame | None = None
    fallback_classes: list[int] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per (class_index, rank, feature, importance[, gap ...])."""
        K, k = self.top_features.shape
        df = pd.DataFrame({"class_index": np.repeat(np.arange(K), k), "rank": np.tile(np.arange(k), K),
                           "feature": self.top_features.ravel(), "importance": self.top_importance.ravel()})
        if self.single_gaps is not None:
            df = df.merge(self.single_gaps.drop(columns=["importance"]), on=["class_index", "rank", "feature"],
                          how="left")
        return df


def class_means(features: np.ndarray, groups: np.ndarray, num_classes: int, *, block_rows: int = 16384,
                progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature vector of each group -> ((K, D) float64 means, (K,) counts); rows with group -1 skipped."""
    progress = progress or null_progress
    n, d = features.shape
    sums = np.zeros((num_classes, d), dtype=np.float64)
    counts = np.bincount(groups[groups >= 0], minlength=num_classes)[:num_classes]
    for row0, block in iter_row_blocks(features, block_rows=block_rows):
        g = groups[row0:row0 + block.shape[0]]
        sel = np.nonzero(g >= 0)[0]
        if sel.size:
            order = sel[np.argsort(g[sel], kind="stable")]
            gs = g[order]
            starts = np.r_[0, np.nonzero(np.diff(gs))[0] + 1]
            part = np.add.reduceat(block[order].astype(np.float32), starts, axis=0)   # (U, D)
            sums[gs[starts]] += part
        progress((row0 + block.shape[0]) / max(n, 1), "class means")
    means = sums / np.maximum(counts, 1)[:, None]
    return means, counts


def _groups(labels: np.ndarray, predictions: np.ndarray | None, group_by: str) -> np.ndarray:
    if group_by == "label":
        return labels.copy()
    if predictions is None:
        raise SpurAuditError(f"group_by={group_by!r} needs the model's predictions (or use group_by='label')")
    if group_by == "prediction":
        return predictions.astype(np.int64).copy()
    return np.where(predictions == labels, labels, -1)


def feature_importance(features: np.ndarray, labels: np.ndarray, weight: np.ndarray, *,
                       predictions: np.ndarray | None = None, group_by: str = "prediction",
                       block_rows: int = 16384, progress: ProgressFn | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(K, D) importance = mean_group_c(a) * W[c]; also the group counts and the fallback classes.

    features: (N, D) float array/memmap; labels: (N,) int; weight: (K, D) linear head weight;
    predictions: (N,) int (argmax logits), needed for group_by prediction|correct.
    """
    check_choice("group_by", group_by, GROUPINGS)
    weight = np.asarray(weight, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise SpurAuditError(f"head weight has shape {weight.shape}; expected (K, {features.shape[1]})")
    if labels.shape[0] != features.shape[0]:
        raise SpurAuditError("labels and features have different numbers of rows; use the same split")
    K = weight.shape[0]
    if labels.size and labels.max() >= K:
        raise SpurAuditError(f"labels go up to {labels.max()} but the head has {K} classes")
    if predictions is not None:
        predictions = np.asarray(predictions).astype(np.int64)
        if predictions.shape != labels.shape:
            raise SpurAuditError("predictions and labels must have the same shape")
    groups = _groups(labels, predictions, group_by)
    means, counts = class_means(features, groups, K, block_rows=block_rows,
                                progress=sub_progress(progress, 0, 0.8))
    fallback = [c for c in range(K) if counts[c] == 0 and group_by != "label"]
    if fallback:
        lab_means, lab_counts = class_means(features, np.where(np.isin(labels, fallback), labels, -1), K,
                                            block_rows=block_rows, progress=sub_progress(progress, 0.8, 1))
        means[fallback] = lab_means[fallback]
        counts[fallback] = lab_counts[fallback]
    return (means * weight).astype(np.float32), counts, fallback


def single_feature_gaps(features: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                        top_features: np.ndarray, *, k: int | None = None, max_k: int = 100,
                        block_rows: int = 16384, progress: ProgressFn | None = None) -> pd.DataFrame:
    """acc(k highest) − acc(k lowest) of class c's rows ranked by each of its top features alone.

    top_features: (K, m) int; returns DataFrame (class_index, rank, feature, gap, acc_high, acc_low, k).
    """
    labels = np.asarray(labels).astype(np.int64)
    predictions = np.asarray(predictions).astype(np.int64)
    K, m = top_features.shape
    vals = gather_class_columns(features, labels, top_features, block_rows=block_rows, progress=progress)  # (N, m)
    order, start = group_by_class(labels, K)
    correct = predictions == labels
    rows = []
    for c in range(K):
        idx = order[start[c]:start[c + 1]]
        n = len(idx)
        kk = slice_k(n, k, max_k=max_k)
        for r in range(m):
            if kk < 1:
                rows.append(dict(class_index=c, rank=r, feature=int(top_features[c, r]), gap=np.nan,
                                 acc_high=np.nan, acc_low=np.nan, k=0))
                continue
            srt = idx[np.argsort(vals[idx, r], kind="stable")]
            lo, hi = correct[srt[:kk]].mean(), correct[srt[n - kk:]].mean()
            rows.append(dict(class_index=c, rank=r, feature=int(top_features[c, r]), gap=float(hi - lo),
                             acc_high=float(hi), acc_low=float(lo), k=kk))
    return pd.DataFrame(rows)


def discover_features(features: np.ndarray, labels: np.ndarray, weight: np.ndarray, *,
                      predictions: np.ndarray | None = None, config: DiscoveryConfig | None = None,
                      progress: ProgressFn | None = None) -> DiscoveryResult:
    """Top-k features per class by importance, with their single-feature gaps (when predictions given).

    features: (N, D) training features; labels (N,) int; weight (K, D) head weight;
    predictions: (N,) int predicted classes (argmax of the logits) or None (then group_by must be label).
    """
    config = config or DiscoveryConfig()
    config.validate(features.shape[1])
    importance, counts, fallback = feature_importance(
        features, labels, weight, predictions=predictions, group_by=config.group_by,
        block_rows=config.block_rows, progress=sub_progress(progress, 0, 0.6))
    top = np.argsort(-importance, axis=1, kind="stable")[:, :config.k].astype(np.int64)   # (K, k)
    top_imp = np.take_along_axis(importance, top, axis=1)
    single = None
    if predictions is not None:
        single = single_feature_gaps(features, labels, predictions, top, k=config.gap_k,
                                     block_rows=config.block_rows, progress=sub_progress(progress, 0.6, 1))
        single["importance"] = top_imp.ravel()
    (progress or null_progress)(1.0, "discovery done")
    return DiscoveryResult(importance=importance, top_features=top, top_importance=top_imp.astype(np.float32),
                           counts=counts, group_by=config.group_by, single_gaps=single,
                           fallback_classes=fallback)


def top_activating(features: np.ndarray, rows: np.ndarray, feature: int, *, n: int = 10,
                   lowest: bool = False) -> np.ndarray:
    """The ``n`` rows (from ``rows``, e.g. one class's) with the highest activation of ``feature``
    (highest first; ``lowest=True``: the lowest, lowest first). Reads only that column of those rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if not 0 <= int(feature) < features.shape[1]:
        raise SpurAuditError(f"feature {feature} out of range [0, {features.shape[1]})")
    if n < 1:
        raise SpurAuditError("n must be >= 1")
    if rows.size == 0:
        return rows
    srt = np.sort(rows)                                              # ascending rows read the memmap in order
    act = np.asarray(features[srt, int(feature)], dtype=np.float32)
    order = np.argsort(act if lowest else -act, kind="stable")[:n]
    return srt[order]
