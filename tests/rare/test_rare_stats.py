"""Scores on models built to use / ignore a pattern, and the sweep statistics on fabricated tables."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ttest_ind
from torch import nn

from core.rare.inject import PatchPattern, PatchSpec
from core.rare.score import spurious_score, welch_p
from core.rare.stats import (canary_verdict, cell_stats, choose_regulariser, deletion_summary, membership_summary,
                             norm_vs_n, pattern_trends, regulariser_comparison, summarise)


class BottomRightDetector(nn.Module):
    """Class 1 with high confidence when the bottom-right pixel is red (a red patch there), else class 0."""

    def forward(self, x):
        on = ((x[:, 0, -1, -1] > 0.9) & (x[:, 1, -1, -1] < 0.1)).float()
        return torch.stack([(1 - on) * 6, on * 6], dim=1)


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.tensor([[2.0, 0.0]]).expand(len(x), 2) + 0 * self.w


def test_score_is_one_for_a_model_that_reads_the_patch_and_zero_for_one_that_ignores_it():
    red = np.zeros((1, 1, 4), np.float32)
    red[..., 0] = red[..., 3] = 1.0
    patch = PatchPattern(PatchSpec(path="-", position="bottom-right", margin=0), rgba=red)
    x = torch.rand(30, 3, 6, 6) * 0.5
    labels = torch.zeros(30, dtype=torch.long)
    assert spurious_score(BottomRightDetector(), x, labels, pattern=patch, target=1, device="cpu") == 1.0
    assert spurious_score(Constant(), x, labels, pattern=patch, target=1, device="cpu") == 0.0
    # the detector does not react to a pattern elsewhere
    assert spurious_score(BottomRightDetector(), x, labels, pattern="s3", target=1, device="cpu") == 0.0


def test_welch_test_on_fabricated_scores():
    a, b = [0.30, 0.35, 0.40], [0.01, 0.02, 0.00, 0.03]
    t, p = welch_p(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue) and p < 0.01
    # by hand: t = (m1 − m2) / sqrt(s1²/n1 + s2²/n2)
    s1, s2 = np.var(a, ddof=1), np.var(b, ddof=1)
    assert t == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(s1 / 3 + s2 / 4))
    assert welch_p([0.0, 0.0], [0.0, 0.0]) == (0.0, 1.0)            # no variance, same means
    assert welch_p([0.1, 0.1], [0.0, 0.0])[1] == 0.0                # no variance, different means
    assert welch_p([0.02, 0.01, 0.03], [0.02, 0.01, 0.03])[1] == pytest.approx(1.0)


def _table() -> pd.DataFrame:
    rows = []
    # pattern "big" is learned from n = 3, "small" never; regulariser wd halves the excess of "big" at n = 10
    score = {("big", "none"): {0: [0.01, 0.02, 0.0], 3: [0.3, 0.35, 0.4], 10: [0.6, 0.62, 0.64]},
             ("small", "none"): {0: [0.0, 0.0, 0.0], 3: [0.0, 0.01, 0.0], 10: [0.02, 0.01, 0.03]},
             ("big", "wd=0.01"): {0: [0.01, 0.01, 0.01], 3: [0.1, 0.1, 0.12], 10: [0.2, 0.22, 0.24]},
             ("small", "wd=0.01"): {0: [0.0, 0.0, 0.0], 3: [0.0, 0.0, 0.0], 10: [0.0, 0.01, 0.0]}}
    for (pattern, reg), by_n in score.items():
        for n, values in by_n.items():
            for seed, v in enumerate(values):
                acc = 0.95 if reg == "none" else 0.945
                rows.append({"pattern": pattern, "n": n, "optimizer": "sgd", "regulariser": reg, "seed": seed,
                             "score": v, "val_score": v + 0.01, "test_accuracy": acc, "val_accuracy": acc,
                             "mia_auroc": 0.55, "mia_auroc_patterned": (0.9 if n else None),
                             "mia_auroc_clean": 0.6, "mia_flagged_patterned": (1.0 if n else None),
                             "mia_flagged_clean": 0.7,
                             "score_after_retraining": (v * 0.9 if n == 10 and reg == "none" else None),
                             "score_after_influence": (v if n == 10 and reg == "none" else None),
                             "acc_after_retraining": (0.95 if n == 10 and reg == "none" else None),
                             "acc_after_influence": (0.95 if n == 10 and reg == "none" else None)})
    return pd.DataFrame(rows)


def test_cell_stats_trends_and_norm_correlation():
    table = _table()
    cells = cell_stats(table, norms={"big": 14.0, "small": 1.0})
    big3 = cells[(cells.pattern == "big") & (cells.n == 3) & (cells.regulariser == "none")].iloc[0]
    assert big3.score_mean == pytest.approx(0.35) and big3.seeds == 3
    assert big3.score_sem == pytest.approx(np.std([0.3, 0.35, 0.4], ddof=1) / math.sqrt(3))
    assert big3.clean_mean == pytest.approx(0.01) and big3.significant and big3.l2_norm == 14.0
    assert big3.p_value == pytest.approx(ttest_ind([0.3, 0.35, 0.4], [0.01, 0.02, 0.0], equal_var=False).pvalue)
    small3 = cells[(cells.pattern == "small") & (cells.n == 3) & (cells.regulariser == "none")].iloc[0]
    assert not small3.significant
    trends = pattern_trends(cells)
    big = trends[(trends.pattern == "big") & (trends.regulariser == "none")].iloc[0]
    assert big.spearman_n_score == pytest.approx(1.0) and big.n_to_level == 3 and big.smallest_significant_n == 3
    small = trends[(trends.pattern == "small") & (trends.regulariser == "none")].iloc[0]
    assert small.n_to_level is None or pd.isna(small.n_to_level)
    (row,) = [r for r in norm_vs_n(trends) if r["regulariser"] == "none"]
    assert row["n_needed"] == [3, 20] and row["reached"] == ["big"]     # never → 2 × max n
    assert row["spearman_norm_n"] is None                               # two patterns: too few for ρ
    three = pd.concat([trends, trends.assign(pattern="mid", l2_norm=5.0, n_to_level=10)])
    (row,) = [r for r in norm_vs_n(three) if r["regulariser"] == "none"]
    assert row["spearman_norm_n"] == pytest.approx(-1.0)                # larger norm, fewer examples


def test_regulariser_comparison_and_choice_use_val_for_choosing():
    cells = cell_stats(_table())
    comp = regulariser_comparison(cells)
    r = comp[(comp.pattern == "big") & (comp.n == 10)].iloc[0]
    assert r.excess == pytest.approx(0.62 - 0.01)
    assert r.cut_fraction == pytest.approx((0.62 - 0.22) / 0.61)
    assert r.acc_cost_points == pytest.approx(0.5)
    chosen = choose_regulariser(comp, pattern="big", n=10, optimizer="sgd", max_cost_points=1.0)
    assert chosen["regulariser"] == "wd=0.01"
    assert choose_regulariser(comp, pattern="big", n=10, optimizer="sgd", max_cost_points=0.1) is None
    # a regulariser that looks better on test but worse on val is not chosen
    comp2 = pd.concat([comp, comp.iloc[[0]].assign(regulariser="noise=0.1", cut_fraction=0.99, val_cut_fraction=0.1,
                                                     pattern="big", n=10)])
    assert choose_regulariser(comp2, pattern="big", n=10, optimizer="sgd")["regulariser"] == "wd=0.01"


def test_deletion_membership_summaries_and_the_canary_verdict():
    table = _table()
    dele = deletion_summary(table)
    big = dele[dele.pattern == "big"].iloc[0]
    assert big.score_before == pytest.approx(0.62) and big.score_after_retraining == pytest.approx(0.558)
    assert big.still_learned_after_retraining and big.excess_kept_influence == pytest.approx(1.0)
    mem = membership_summary(table)
    row = mem[(mem.pattern == "big") & (mem.n == 10) & (mem.regulariser == "none")].iloc[0]
    assert row.auroc_patterned == pytest.approx(0.9) and row.difference == pytest.approx(0.3)
    summary = summarise(table, norms={"big": 14.0, "small": 1.0})
    verdict = canary_verdict(summary, pattern="big")
    assert verdict["learned_n"] == 3 and [r["n"] for r in verdict["per_n"]] == [0, 3, 10]
    assert canary_verdict(summary, pattern="small")["learned_n"] is None
