"""The study's numbers from predictions (pure: arrays in, tables out).

For each model m evaluated on the split ranked by the ranking model:
- per class: gap, its bootstrap interval, acc(high), acc(low) (`core.audit.gaps.spurious_gaps`);
- pooled: acc(high), acc(low), gap and its two-level bootstrap interval; overall accuracy on the split;
- effective robustness (Taori et al.'s convention, x = the "easy" accuracy): a line
  acc(low) = slope · acc(high) + intercept is fitted over the models (least squares); a model's
  effective robustness is its acc(low) minus the line's value at its acc(high) (> 0: more robust to the
  spurious cue than models of the same high-spuriosity accuracy). y = x is "no gap";
- the model x model Pearson (and Spearman) correlation of per-class gaps over the classes every model has
  a gap for (`core.audit.gaps.compare_models`), its mean over distinct pairs, and each model's mean
  correlation with the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from core.audit.gaps import GapConfig, compare_models, spurious_gaps
from core.audit.spuriosity import SpuriosityResult
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

__all__ = ["StudyResult", "analyse_study", "effective_robustness", "mean_pairwise"]


@dataclass
class StudyResult:
    """models: one row per model (model, accuracy, acc_high, acc_low, gap, ci_low, ci_high, n_classes,
    n_negative, effective_robustness, mean_corr). per_class: long table (model, class_index, n, k, acc_high,
    acc_low, gap, ci_low, ci_high, ranked). correlation / spearman: model x model. fit: slope, intercept,
    r (of acc_low on acc_high over models; NaN with fewer than 2 distinct models). mean_pearson: over
    distinct pairs."""

    models: pd.DataFrame
    per_class: pd.DataFrame
    correlation: pd.DataFrame
    spearman: pd.DataFrame
    fit: dict
    mean_pearson: float
    mean_spearman: float
    config: GapConfig
    n_common_classes: int = 0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"n_models": int(len(self.models)), "mean_pairwise_pearson": self.mean_pearson,
                "mean_pairwise_spearman": self.mean_spearman, "fit": self.fit,
                "n_common_classes": self.n_common_classes}


def mean_pairwise(corr: pd.DataFrame) -> float:
    """Mean of the off-diagonal entries of a symmetric correlation matrix (NaN pairs skipped; NaN if none)."""
    a = np.asarray(corr.values, dtype=np.float64)
    if a.shape[0] < 2:
        return float("nan")
    iu = np.triu_indices(a.shape[0], k=1)
    vals = a[iu]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def effective_robustness(acc_high: Sequence[float], acc_low: Sequence[float]) -> tuple[dict, np.ndarray]:
    """({slope, intercept, r}, residuals): least-squares line acc_low ~ acc_high over models and each
    model's residual acc_low − line(acc_high). With fewer than two distinct acc_high values the line is
    undefined: NaNs (and residuals NaN)."""
    x = np.asarray(acc_high, dtype=np.float64)
    y = np.asarray(acc_low, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return {"slope": float("nan"), "intercept": float("nan"), "r": float("nan")}, np.full(len(x), np.nan)
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    r = float(np.corrcoef(x[ok], y[ok])[0, 1]) if np.ptp(y[ok]) > 0 else float("nan")
    resid = y - (slope * x + intercept)
    return {"slope": float(slope), "intercept": float(intercept), "r": r}, resid


def analyse_study(ranking: SpuriosityResult, predictions: Mapping[str, np.ndarray], *,
                  config: GapConfig | None = None, progress: ProgressFn | None = None) -> StudyResult:
    """The study over ``predictions`` (model label -> (N,) int predicted class, rows aligned with ``ranking``)."""
    config = config or GapConfig()
    progress = progress or null_progress
    if not predictions:
        raise SpurAuditError("the study needs the predictions of at least one model")
    labels = ranking.labels
    names = list(predictions)
    rows, long = [], []
    for i, name in enumerate(names):
        pred = np.asarray(predictions[name])
        res = spurious_gaps(ranking, pred, config=config)
        p = res.pooled
        rows.append({"model": name, "accuracy": float((pred.astype(np.int64) == labels).mean()) if len(labels) else np.nan,
                     "acc_high": p.get("acc_high"), "acc_low": p.get("acc_low"), "gap": p.get("gap"),
                     "ci_low": p.get("ci_low", np.nan), "ci_high": p.get("ci_high", np.nan),
                     "n_classes": p.get("n_classes"), "n_negative": p.get("n_negative")})
        pc = res.per_class.copy()
        pc.insert(0, "model", name)
        long.append(pc)
        progress((i + 1) / (len(names) + 1), f"gaps of {name}")
    models = pd.DataFrame(rows)
    fit, resid = effective_robustness(models.acc_high, models.acc_low)
    models["effective_robustness"] = resid
    per_class = pd.concat(long, ignore_index=True)
    no_boot = GapConfig(k=config.k, max_k=config.max_k, n_boot=0, confidence=config.confidence, seed=config.seed)
    table, corr, _ = compare_models(ranking, predictions, config=no_boot, method="pearson")
    spear = table[[f"gap_{n}" for n in names]].dropna().corr(method="spearman")
    spear.index = names
    spear.columns = names
    n_common = int(len(table[[f"gap_{n}" for n in names]].dropna()))
    if len(names) > 1:
        a = corr.values.astype(np.float64).copy()
        np.fill_diagonal(a, np.nan)
        finite = np.isfinite(a)
        models["mean_corr"] = np.where(finite.any(1), np.where(finite, a, 0).sum(1) / np.maximum(finite.sum(1), 1),
                                       np.nan)
    else:
        models["mean_corr"] = np.nan
    progress(1.0, "study analysed")
    return StudyResult(models=models, per_class=per_class, correlation=corr, spearman=spear, fit=fit,
                       mean_pearson=mean_pairwise(corr), mean_spearman=mean_pairwise(spear), config=config,
                       n_common_classes=n_common)
