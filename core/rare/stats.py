"""Statistics of a rare-pattern sweep, from its tidy table (pure pandas / scipy; no I/O).

The tidy table has one row per (pattern, n, optimizer, regulariser, seed) with ``score`` (spurious score
on test), ``val_score``, ``test_accuracy``, ``val_accuracy`` and, when measured, membership columns
(``mia_*``) and deletion columns (``score_after_retraining``, ``score_after_influence``, ``acc_after_*``).
Rows with n = 0 come from the clean model of that (optimizer, regulariser, seed), scored with each
pattern.

* `cell_stats`: per cell mean ± s.e.m. over seeds, Welch's t-test against n = 0 (same pattern, optimizer
  and regulariser), the pattern's ℓ2 norm beside it.
* `pattern_trends`: per pattern, Spearman ρ between n and the mean score, the first n whose mean score
  reaches ``level`` (0.1), the smallest n significantly above n = 0.
* `norm_vs_n`: across patterns, the rank correlation between the ℓ2 norm and the n needed to reach
  ``level`` (patterns that never reach it rank after every n of the grid).
* `regulariser_comparison` / `choose_regulariser`: what each regulariser does to the score's excess over
  n = 0 and what it costs in accuracy, on val (for choosing) and test (for reporting).
* `deletion_summary`: the score before and after deleting the patterned examples, against n = 0.
* `membership_summary`: the attack's AUROC on patterned members vs clean members of the same class.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr, ttest_rel

from core.rare.score import welch_p
from core.serialize import to_plain

GROUP = ["pattern", "n", "optimizer", "regulariser"]
NONE = "none"
_MEANS = ("val_score", "test_accuracy", "val_accuracy", "mia_auroc", "mia_auroc_patterned", "mia_auroc_clean",
          "mia_flagged_patterned", "mia_flagged_clean", "score_after_retraining", "score_after_influence",
          "acc_after_retraining", "acc_after_influence")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _sem(values: pd.Series) -> float | None:
    v = values.dropna().to_numpy(dtype=np.float64)
    if len(v) < 2:
        return None
    return float(v.std(ddof=1) / math.sqrt(len(v)))


def _mean(values: pd.Series) -> float | None:
    v = values.dropna()
    return float(v.mean()) if len(v) else None


def _spearman(x: Any, y: Any) -> float | None:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return _num(spearmanr(x, y).statistic)


def _rows(table: pd.DataFrame, pattern: str, n: int, optimizer: str, regulariser: str) -> pd.DataFrame:
    return table[(table.pattern == pattern) & (table.n == n) & (table.optimizer == optimizer)
                 & (table.regulariser == regulariser)]


def cell_stats(table: pd.DataFrame, *, norms: Mapping[str, float] | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (pattern, n, optimizer, regulariser): ``seeds``, ``score_mean``/``score_sem``, the
    n = 0 mean (``clean_mean``), Welch ``t``/``p_value``, ``significant`` (p < alpha and above n = 0),
    ``l2_norm`` and the means of the other measured columns."""
    norms = dict(norms or {})
    out = []
    if table is None or len(table) == 0:
        return pd.DataFrame(columns=GROUP + ["seeds", "score_mean", "score_sem"])
    for (pattern, n, opt, reg), g in table.groupby(GROUP, sort=True):
        row: dict[str, Any] = {"pattern": pattern, "n": int(n), "optimizer": opt, "regulariser": reg,
                               "seeds": int(len(g)), "l2_norm": _num(norms.get(pattern)),
                               "score_mean": _mean(g.score), "score_sem": _sem(g.score),
                               "test_accuracy_sem": _sem(g.test_accuracy) if "test_accuracy" in g else None}
        for col in _MEANS:
            if col in g and g[col].notna().any():
                row[f"{col}_mean"] = _mean(g[col])
        base = _rows(table, pattern, 0, opt, reg)
        row.update(clean_mean=_mean(base.score) if len(base) else None, clean_sem=_sem(base.score) if len(base) else None,
                   t=None, p_value=None, significant=None)
        if n > 0 and len(g) >= 2 and len(base) >= 2:
            t, p = welch_p(g.score.to_numpy(), base.score.to_numpy())
            row.update(t=_num(t) if math.isfinite(t) else None, p_value=p,   # t = ±inf (no variance): None
                       significant=bool(p < alpha and row["score_mean"] > row["clean_mean"]))
        out.append(row)
    return pd.DataFrame(out)


def pattern_trends(cells: pd.DataFrame, *, level: float = 0.1) -> pd.DataFrame:
    """Per (pattern, optimizer, regulariser): ``l2_norm``, ``spearman_n_score`` (ρ between n and the mean
    score over the grid's n), ``n_to_level`` (first n with mean score ≥ level; None = never),
    ``smallest_significant_n`` (None = never significant)."""
    out = []
    if len(cells) == 0:
        return pd.DataFrame()
    for (pattern, opt, reg), g in cells.groupby(["pattern", "optimizer", "regulariser"], sort=True):
        g = g.sort_values("n")
        reached = g[g.score_mean >= level]
        sig = g[g.significant.fillna(False).astype(bool)] if "significant" in g else g.iloc[0:0]
        out.append({"pattern": pattern, "optimizer": opt, "regulariser": reg, "l2_norm": _num(g.l2_norm.iloc[0]),
                    "counts": [int(v) for v in g.n], "score_means": [_num(v) for v in g.score_mean],
                    "spearman_n_score": _spearman(g.n, g.score_mean),
                    "n_to_level": int(reached.n.iloc[0]) if len(reached) else None,
                    "smallest_significant_n": int(sig.n.iloc[0]) if len(sig) else None,
                    "max_score": _num(g.score_mean.max())})
    return pd.DataFrame(out)


def norm_vs_n(trends: pd.DataFrame, *, level: float = 0.1) -> list[dict]:
    """Per (optimizer, regulariser): Spearman ρ between the patterns' ℓ2 norms and the n they need to
    reach ``level`` (finding 1 predicts ρ < 0). Patterns that never reach it get ``2 × max n`` (they
    rank after every n tried); ``reached`` lists those that do."""
    out = []
    if len(trends) == 0:
        return out
    for (opt, reg), g in trends.groupby(["optimizer", "regulariser"], sort=True):
        g = g[g.l2_norm.notna()]
        max_n = max((max(c) for c in g.counts if c), default=1)
        needed = [v if v is not None and not (isinstance(v, float) and math.isnan(v)) else 2 * max_n
                  for v in g.n_to_level]
        out.append({"optimizer": opt, "regulariser": reg, "level": level, "patterns": list(g.pattern),
                    "l2_norms": [_num(v) for v in g.l2_norm], "n_needed": [int(v) for v in needed],
                    "reached": [p for p, v in zip(g.pattern, g.n_to_level) if v is not None and not pd.isna(v)],
                    "spearman_norm_n": _spearman(g.l2_norm, needed)})
    return out


def regulariser_comparison(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (pattern, n > 0, optimizer, regulariser ≠ none) with the score and accuracy of the
    regulariser and of no regulariser. ``excess`` = score(n, none) − score(0, none); ``cut_fraction`` =
    (score(n, none) − score(n, reg)) / excess (≥ 0.5 = halves the excess; None when there is no
    excess); ``acc_cost_points`` = 100·(acc(n, none) − acc(n, reg)). The ``val_*`` columns are the same
    on the val split (for choosing a regulariser without looking at test)."""
    out = []
    if len(cells) == 0 or NONE not in set(cells.regulariser):
        return pd.DataFrame()
    idx = cells.set_index(GROUP)
    for _, r in cells[(cells.regulariser != NONE) & (cells.n > 0)].iterrows():
        key_none = (r.pattern, r.n, r.optimizer, NONE)
        key_n0 = (r.pattern, 0, r.optimizer, NONE)
        key_reg0 = (r.pattern, 0, r.optimizer, r.regulariser)
        if key_none not in idx.index or key_n0 not in idx.index:
            continue
        none, n0 = idx.loc[key_none], idx.loc[key_n0]
        reg0 = idx.loc[key_reg0] if key_reg0 in idx.index else None
        row = {"pattern": r.pattern, "n": int(r.n), "optimizer": r.optimizer, "regulariser": r.regulariser}
        for prefix, score_col, acc_col in (("", "score_mean", "test_accuracy_mean"),
                                           ("val_", "val_score_mean", "val_accuracy_mean")):
            s_reg, s_none, s_n0 = _num(r.get(score_col)), _num(none.get(score_col)), _num(n0.get(score_col))
            a_reg, a_none = _num(r.get(acc_col)), _num(none.get(acc_col))
            excess = None if s_none is None or s_n0 is None else s_none - s_n0
            cut = None if s_none is None or s_reg is None else s_none - s_reg
            row.update({f"{prefix}score": s_reg, f"{prefix}score_none": s_none, f"{prefix}score_n0": s_n0,
                        f"{prefix}excess": excess,
                        f"{prefix}cut_fraction": (cut / excess) if excess is not None and cut is not None
                        and excess > 0 else None,
                        f"{prefix}accuracy": a_reg, f"{prefix}accuracy_none": a_none,
                        f"{prefix}acc_cost_points": None if a_reg is None or a_none is None else 100 * (a_none - a_reg)})
        row["score_n0_reg"] = _num(reg0.get("score_mean")) if reg0 is not None else None
        row["p_value_vs_n0"] = _num(r.get("p_value"))
        out.append(row)
    return pd.DataFrame(out)


def choose_regulariser(comparison: pd.DataFrame, *, pattern: str, n: int, optimizer: str,
                       max_cost_points: float = 1.0) -> dict | None:
    """The regulariser with the largest *val* cut of the excess among those costing at most
    ``max_cost_points`` of *val* accuracy (its test numbers are the honest report); None if none."""
    if len(comparison) == 0:
        return None
    c = comparison[(comparison.pattern == pattern) & (comparison.n == n) & (comparison.optimizer == optimizer)]
    c = c[c.val_acc_cost_points.notna() & (c.val_acc_cost_points <= max_cost_points) & c.val_cut_fraction.notna()]
    if len(c) == 0:
        return None
    return {k: to_plain(v, nan_as_none=True) for k, v in c.sort_values("val_cut_fraction", ascending=False).iloc[0].items()}


def deletion_summary(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Per (pattern, n, optimizer, regulariser) with deletion results: the score before deletion, after
    incremental retraining and after group influence, the n = 0 score, Welch p of each "after" against
    n = 0 (``still_learned_*`` = still significantly above n = 0), the share of the excess kept and the
    accuracies."""
    out = []
    if len(table) == 0 or "score_after_retraining" not in table:
        return pd.DataFrame()
    mask = table.score_after_retraining.notna()
    if "score_after_influence" in table:
        mask |= table.score_after_influence.notna()
    done = table[mask]
    for (pattern, n, opt, reg), g in done.groupby(GROUP, sort=True):
        base = _rows(table, pattern, 0, opt, reg)
        row: dict[str, Any] = {"pattern": pattern, "n": int(n), "optimizer": opt, "regulariser": reg,
                               "seeds": int(len(g)), "score_before": _mean(g.score), "score_n0": _mean(base.score),
                               "accuracy_before": _mean(g.test_accuracy)}
        for method in ("retraining", "influence"):
            col = f"score_after_{method}"
            vals = g[col].dropna() if col in g else pd.Series(dtype=float)
            row[f"score_after_{method}"] = _mean(vals)
            row[f"accuracy_after_{method}"] = _mean(g[f"acc_after_{method}"]) if f"acc_after_{method}" in g else None
            p = None
            if len(vals) >= 2 and len(base) >= 2:
                p = welch_p(vals.to_numpy(), base.score.to_numpy())[1]
            row[f"p_after_{method}_vs_n0"] = p
            row[f"still_learned_after_{method}"] = (None if p is None else
                                                    bool(p < alpha and row[f"score_after_{method}"] > row["score_n0"]))
            excess = None if row["score_before"] is None or row["score_n0"] is None else row["score_before"] - row["score_n0"]
            after = row[f"score_after_{method}"]
            row[f"excess_kept_{method}"] = ((after - row["score_n0"]) / excess
                                            if excess and excess > 0 and after is not None else None)
        out.append(row)
    return pd.DataFrame(out)


def membership_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell with n > 0: the attack's AUROC on patterned members vs clean members of the target
    class (each against all true non-members), their difference over seeds (mean, s.e.m., paired
    t-test p) and the fractions flagged as members."""
    out = []
    need = {"mia_auroc_patterned", "mia_auroc_clean"}
    if len(table) == 0 or not need <= set(table.columns):
        return pd.DataFrame()
    rows = table[(table.n > 0) & table.mia_auroc_patterned.notna() & table.mia_auroc_clean.notna()]
    for (pattern, n, opt, reg), g in rows.groupby(GROUP, sort=True):
        diff = g.mia_auroc_patterned - g.mia_auroc_clean
        p = None
        if len(g) >= 2 and diff.std(ddof=1) > 0:
            p = _num(ttest_rel(g.mia_auroc_patterned, g.mia_auroc_clean).pvalue)
        out.append({"pattern": pattern, "n": int(n), "optimizer": opt, "regulariser": reg, "seeds": int(len(g)),
                    "auroc_patterned": _mean(g.mia_auroc_patterned), "auroc_clean": _mean(g.mia_auroc_clean),
                    "auroc_all": _mean(g.mia_auroc) if "mia_auroc" in g else None,
                    "difference": _mean(diff), "difference_sem": _sem(diff), "p_value": p,
                    "flagged_patterned": _mean(g.mia_flagged_patterned) if "mia_flagged_patterned" in g else None,
                    "flagged_clean": _mean(g.mia_flagged_clean) if "mia_flagged_clean" in g else None})
    return pd.DataFrame(out)


def records(frame: pd.DataFrame) -> list[dict]:
    """A DataFrame as JSON-able records (NaN → None)."""
    if frame is None or len(frame) == 0:
        return []
    return to_plain(frame.to_dict(orient="records"), nan_as_none=True)


def summarise(table: pd.DataFrame, *, norms: Mapping[str, float] | None = None, alpha: float = 0.05,
              level: float = 0.1) -> dict:
    """Every statistic above as JSON-able records: ``cells``, ``patterns``, ``norm_vs_n``,
    ``regularisers``, ``deletion``, ``membership``, plus ``norms``, ``alpha`` and ``level``."""
    cells = cell_stats(table, norms=norms, alpha=alpha)
    trends = pattern_trends(cells, level=level)
    return {"alpha": alpha, "level": level, "norms": to_plain(dict(norms or {}), nan_as_none=True),
            "cells": records(cells), "patterns": records(trends), "norm_vs_n": to_plain(norm_vs_n(trends, level=level),
                                                                                          nan_as_none=True),
            "regularisers": records(regulariser_comparison(cells)), "deletion": records(deletion_summary(table, alpha=alpha)),
            "membership": records(membership_summary(table))}



def canary_verdict(summary: dict, *, pattern: str, optimizer: str | None = None,
                   regulariser: str = NONE) -> dict:
    """The canary audit's answer from a sweep summary: per n (mean ± s.e.m., p against n = 0,
    significant), the n = 0 baseline, and ``learned_n`` = the smallest n whose score is significantly
    above n = 0 (None when no n tried is)."""
    cells = [c for c in summary.get("cells", []) if c.get("pattern") == pattern
             and c.get("regulariser") == regulariser and (optimizer is None or c.get("optimizer") == optimizer)]
    cells.sort(key=lambda c: c["n"])
    base = next((c for c in cells if c["n"] == 0), None)
    per_n = [{"n": c["n"], "seeds": c.get("seeds"), "score_mean": c.get("score_mean"), "score_sem": c.get("score_sem"),
              "p_value": c.get("p_value"), "significant": c.get("significant"),
              "test_accuracy_mean": c.get("test_accuracy_mean")} for c in cells]
    learned = next((c["n"] for c in cells if c["n"] > 0 and c.get("significant")), None)
    return {"pattern": pattern, "alpha": summary.get("alpha"), "learned_n": learned,
            "largest_n_tried": max((c["n"] for c in cells), default=None),
            "baseline_mean": base.get("score_mean") if base else None,
            "baseline_sem": base.get("score_sem") if base else None, "per_n": per_n,
            "l2_norm": (summary.get("norms") or {}).get(pattern)}


__all__ = ["cell_stats", "pattern_trends", "norm_vs_n", "regulariser_comparison", "choose_regulariser",
           "deletion_summary", "membership_summary", "summarise", "records", "canary_verdict"]
