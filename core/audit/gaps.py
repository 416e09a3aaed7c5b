"""Spurious gaps (seed 002 §2.2, METHODS.md §1).

For class c ranked by spuriosity: gap_c = acc(k highest-spuriosity images) − acc(k lowest); a
positive gap means the model leans on the spurious cue. The two slices are disjoint by construction
(k <= floor(n_c / 2); default k_c = min(100, floor(n_c / 4))), which fixes the reference code's
defect (its "high" slice was ranks 901-1000 and the slices overlapped below 2k images per class).

Confidence intervals: percentile bootstrap, resampling each slice with replacement, seeded. For 0/1
correctness the resampled accuracy of a slice of size k with accuracy p is exactly Binomial(k, p)/k,
so the resamples are drawn directly from that distribution (same distribution as index resampling,
O(B) per class instead of O(B k)).

Pooled gap: accuracy over the union of all classes' high slices minus that over their low slices;
its interval is a two-level bootstrap (classes resampled with replacement, then each class's slices
as above), so it reflects the spread across classes as well as within slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from core.audit.coverage import unranked_reason
from core.audit.spuriosity import SpuriosityResult
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

__all__ = ["GapConfig", "GapResult", "default_k", "slice_k", "spurious_gaps", "compare_models"]


@dataclass
class GapConfig:
    """k: slice size for every class (clamped to floor(n/2)); None = min(max_k, floor(n/4)).
    n_boot: bootstrap resamples (0 = no interval). confidence: interval level. seed: RNG seed."""

    k: int | None = None
    max_k: int = 100
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        if self.k is not None and self.k < 1:
            raise SpurAuditError(f"k must be >= 1 (got {self.k}); or None for min(100, n/4)")
        if self.max_k < 1:
            raise SpurAuditError("max_k must be >= 1")
        if self.n_boot < 0:
            raise SpurAuditError("n_boot must be >= 0")
        if not 0 < self.confidence < 1:
            raise SpurAuditError("confidence must be in (0, 1), e.g. 0.95")


@dataclass
class GapResult:
    """per_class: DataFrame with columns class_index, n, k, acc_high, acc_low, gap, ci_low, ci_high,
    negative (gap < 0 with the interval's upper end below 0 when an interval exists), ranked, reason
    (why an unranked class is not ranked: a `core.audit.coverage` code, "" when ranked).
    pooled: dict with gap, acc_high, acc_low, ci_low, ci_high, n_classes, mean_class_gap."""

    per_class: pd.DataFrame
    pooled: dict
    config: GapConfig

    def to_dict(self) -> dict:
        return {"pooled": self.pooled, "per_class": self.per_class.to_dict(orient="records"),
                "config": self.config.__dict__}


def default_k(n: int, *, max_k: int = 100) -> int:
    """min(max_k, floor(n/4)); at least 1 when n >= 2, 0 otherwise."""
    if n < 2:
        return 0
    return max(1, min(max_k, n // 4))


def slice_k(n: int, k: int | None, *, max_k: int = 100) -> int:
    """Slice size actually used for a class of n ranked images: disjoint (<= n//2)."""
    if k is None:
        return default_k(n, max_k=max_k)
    return min(int(k), n // 2)


def _ci(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [a, 1 - a])
    return float(lo), float(hi)


def spurious_gaps(ranking: SpuriosityResult, predictions: np.ndarray, *, config: GapConfig | None = None,
                  progress: ProgressFn | None = None) -> GapResult:
    """Per-class and pooled spurious gaps of one model's predictions on the ranked split.

    ranking: `SpuriosityResult` of the split (rows aligned with ``predictions``).
    predictions: (N,) int predicted class of each row (any model evaluated on the same split).
    Classes without spurious features (or with fewer than 2 images) get NaN gaps, ranked=False and
    their reason (`core.audit.coverage.unranked_reason`).
    """
    config = config or GapConfig()
    config.validate()
    progress = progress or null_progress
    predictions = np.asarray(predictions)
    if predictions.shape != ranking.labels.shape:
        raise SpurAuditError(f"predictions have shape {predictions.shape}, the ranking has "
                             f"{ranking.labels.shape[0]} rows; evaluate the model on the same split")
    correct = (predictions.astype(np.int64) == ranking.labels)
    rng = np.random.default_rng(config.seed)
    rows = []
    hi_draws, lo_draws, ks = [], [], []              # per ranked class: (B,) resampled correct counts
    tot_hi = tot_lo = tot_k = 0
    no_spur = set(ranking.classes_without_spurious)
    K = ranking.num_classes
    for c in range(K):
        r = ranking.order[ranking.class_start[c]:ranking.class_start[c + 1]]
        n = len(r)
        k = slice_k(n, config.k, max_k=config.max_k)
        if c in no_spur or k < 1:
            rows.append(dict(class_index=c, n=n, k=0, acc_high=np.nan, acc_low=np.nan, gap=np.nan,
                             ci_low=np.nan, ci_high=np.nan, negative=False, ranked=False,
                             reason=unranked_reason(n, k, c not in no_spur)))
            continue
        low, high = r[:k], r[n - k:]                     # disjoint since 2k <= n
        h, lo_ = int(correct[high].sum()), int(correct[low].sum())
        gap = (h - lo_) / k
        ci_low = ci_high = np.nan
        if config.n_boot:
            bh = rng.binomial(k, h / k, size=config.n_boot)
            bl = rng.binomial(k, lo_ / k, size=config.n_boot)
            ci_low, ci_high = _ci((bh - bl) / k, config.confidence)
            hi_draws.append(bh)
            lo_draws.append(bl)
            ks.append(k)
        tot_hi += h
        tot_lo += lo_
        tot_k += k
        negative = bool(gap < 0 and (np.isnan(ci_high) or ci_high < 0))
        rows.append(dict(class_index=c, n=n, k=k, acc_high=h / k, acc_low=lo_ / k, gap=gap,
                         ci_low=ci_low, ci_high=ci_high, negative=negative, ranked=True, reason=""))
        if c % 50 == 0:
            progress((c + 1) / K, f"gaps {c + 1}/{K}")
    df = pd.DataFrame(rows)
    ranked = df[df.ranked]
    pooled = {"n_classes": int(len(ranked)), "total_k": int(tot_k)}
    if tot_k:
        pooled.update(acc_high=tot_hi / tot_k, acc_low=tot_lo / tot_k, gap=(tot_hi - tot_lo) / tot_k,
                      mean_class_gap=float(ranked.gap.mean()),
                      n_negative=int(ranked.negative.sum()),
                      n_negative_point=int((ranked.gap < 0).sum()))
        if config.n_boot:
            # two-level bootstrap: resample the classes, then (already drawn) each class's slices
            H, L = np.stack(hi_draws, axis=1), np.stack(lo_draws, axis=1)        # (B, C)
            kk = np.asarray(ks, dtype=np.float64)                                 # (C,)
            pick = rng.integers(0, H.shape[1], size=H.shape)                      # (B, C) class indices
            num = np.take_along_axis(H, pick, axis=1).sum(1) - np.take_along_axis(L, pick, axis=1).sum(1)
            pooled["ci_low"], pooled["ci_high"] = _ci(num / kk[pick].sum(1), config.confidence)
    else:
        pooled.update(acc_high=np.nan, acc_low=np.nan, gap=np.nan, mean_class_gap=np.nan,
                      n_negative=0, n_negative_point=0)
    progress(1.0, "gaps done")
    return GapResult(per_class=df, pooled=pooled, config=config)


def compare_models(ranking: SpuriosityResult, predictions: Mapping[str, np.ndarray], *,
                   config: GapConfig | None = None, method: str = "pearson",
                   progress: ProgressFn | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Gaps of several models on the same ranked split.

    Returns (table, correlation, pooled): table has one row per class and one gap column per model
    (``gap_<name>``); correlation is the model x model correlation (pearson|spearman) of per-class
    gaps over the ranked classes; pooled maps model name -> pooled gap dict.
    """
    if method not in ("pearson", "spearman"):
        raise SpurAuditError(f"unknown correlation method {method!r}; valid choices: pearson, spearman")
    if not predictions:
        raise SpurAuditError("give at least one model's predictions")
    progress = progress or null_progress
    table = None
    pooled = {}
    names = list(predictions)
    for i, name in enumerate(names):
        res = spurious_gaps(ranking, predictions[name], config=config)
        pooled[name] = res.pooled
        col = res.per_class[["class_index", "gap"]].rename(columns={"gap": f"gap_{name}"})
        table = col if table is None else table.merge(col, on="class_index")
        progress((i + 1) / len(names), f"gaps of {name}")
    gap_cols = [f"gap_{n}" for n in names]
    corr = table[gap_cols].dropna().corr(method=method)
    corr.index = names
    corr.columns = names
    return table, corr, pooled
