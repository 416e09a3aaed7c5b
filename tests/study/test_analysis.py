"""The study's analysis on planted gaps (pure, no models): per-class gaps that are known by
construction, so their correlation between models, the pooled gaps and the fitted line are known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.audit.gaps import GapConfig
from core.audit.spuriosity import SpuriosityResult
from core.study.analysis import analyse_study, effective_robustness, mean_pairwise

K, N_PER, SLICE = 8, 40, 10     # 8 classes of 40 images; slices of 10 (min(100, 40 // 4))


def _ranking() -> SpuriosityResult:
    labels = np.repeat(np.arange(K), N_PER)
    scores = np.tile(np.arange(N_PER, dtype=np.float32), K)           # within class: row order = spuriosity
    order = np.arange(K * N_PER)
    start = np.arange(0, K * N_PER + 1, N_PER)
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=start,
                            spurious={c: [0] for c in range(K)})


def _planted(gaps_per_class: np.ndarray, base: float = 0.2) -> np.ndarray:
    """Predictions whose per-class gap is exactly ``gaps_per_class`` (multiples of 1/SLICE): in each class the
    10 lowest-spuriosity images are right with accuracy ``base`` and the 10 highest with ``base + g``."""
    labels = np.repeat(np.arange(K), N_PER)
    pred = (labels + 1) % K                                            # all wrong...
    for c, g in enumerate(gaps_per_class):
        lo_right = int(round(base * SLICE))
        hi_right = int(round((base + g) * SLICE))
        rows = np.arange(c * N_PER, (c + 1) * N_PER)
        pred[rows[:lo_right]] = c                                      # ...except these
        pred[rows[N_PER - hi_right:]] = c
    return pred


def test_planted_gaps_give_the_known_correlations_pooled_gaps_and_fit() -> None:
    g = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.2, 0.4, 0.0])
    preds = {"a": _planted(g), "a_scaled": _planted(g / 2), "reverse": _planted(0.8 - g),
             "flat": _planted(np.full(K, 0.2)) }
    # "flat" has zero variance across classes: its correlation is undefined; drop it from the matrix check
    res = analyse_study(_ranking(), {k: v for k, v in preds.items() if k != "flat"},
                        config=GapConfig(n_boot=200, seed=0))
    per = res.per_class.pivot(index="class_index", columns="model", values="gap")
    np.testing.assert_allclose(per["a"].to_numpy(), g, atol=1e-9)
    np.testing.assert_allclose(per["a_scaled"].to_numpy(), g / 2, atol=1e-9)
    corr = res.correlation
    assert corr.loc["a", "a_scaled"] == pytest.approx(1.0)
    assert corr.loc["a", "reverse"] == pytest.approx(-1.0)
    assert res.mean_pearson == pytest.approx((1.0 - 1.0 - 1.0) / 3)
    m = res.models.set_index("model")
    assert m.loc["a", "gap"] == pytest.approx(g.mean())                  # pooled gap = mean of equal-k class gaps
    assert m.loc["a", "acc_high"] - m.loc["a", "acc_low"] == pytest.approx(g.mean())
    assert m.loc["a", "ci_low"] < g.mean() < m.loc["a", "ci_high"]
    assert (res.per_class.dropna().ci_low <= res.per_class.dropna().gap + 1e-12).all()
    # the line through (acc_high, acc_low) of the models, and residuals that sum to zero
    assert np.isfinite(res.fit["slope"]) and res.models.effective_robustness.sum() == pytest.approx(0, abs=1e-9)
    assert res.n_common_classes == K


def test_noise_models_correlate_near_zero_and_shared_profile_models_strongly() -> None:
    """Two models with the same planted profile plus independent noise correlate far more than two
    models with independent profiles (the seed's finding, planted)."""
    rng = np.random.default_rng(0)
    shared = rng.choice([0.0, 0.2, 0.4, 0.6], size=K)
    noisy = lambda: np.clip(shared + rng.choice([-0.2, 0, 0.2], size=K, p=[0.15, 0.7, 0.15]), 0, 0.8)  # noqa: E731
    res_shared = analyse_study(_ranking(), {"m1": _planted(noisy()), "m2": _planted(noisy()),
                                            "m3": _planted(noisy())}, config=GapConfig(n_boot=0))
    res_indep = analyse_study(_ranking(), {f"r{i}": _planted(rng.choice([0.0, 0.2, 0.4, 0.6], size=K))
                                           for i in range(3)}, config=GapConfig(n_boot=0))
    assert res_shared.mean_pearson > 0.6
    assert res_shared.mean_pearson > res_indep.mean_pearson + 0.3


def test_effective_robustness_line_and_residuals() -> None:
    fit, resid = effective_robustness([0.9, 0.8, 0.7, 0.6], [0.7, 0.6, 0.5, 0.6])
    assert fit["slope"] == pytest.approx(0.4) and fit["intercept"] == pytest.approx(0.30)
    np.testing.assert_allclose(resid, [0.7, 0.6, 0.5, 0.6] - (0.4 * np.array([0.9, 0.8, 0.7, 0.6]) + 0.30), atol=1e-9)
    fit1, resid1 = effective_robustness([0.8], [0.6])
    assert np.isnan(fit1["slope"]) and np.isnan(resid1).all()


def test_mean_pairwise_skips_the_diagonal_and_nans() -> None:
    corr = pd.DataFrame([[1, 0.5, np.nan], [0.5, 1, 0.1], [np.nan, 0.1, 1]])
    assert mean_pairwise(corr) == pytest.approx(0.3)
    assert np.isnan(mean_pairwise(pd.DataFrame([[1.0]])))
