import numpy as np
import pytest

from core.audit.gaps import GapConfig, compare_models, default_k, slice_k, spurious_gaps
from core.audit.spuriosity import compute_spuriosity, group_by_class
from core.errors import SpurAuditError


def _hand_features():
    # class 0: rows 0,1,2 ; class 1: rows 3,4
    f = np.array([[1, 10, 5],
                  [2, 20, 5],
                  [3, 60, 5],
                  [0, 0, 1],
                  [0, 0, 3]], dtype=np.float16)
    labels = np.array([0, 0, 0, 1, 1])
    return f, labels


def test_zscore_spuriosity_by_hand():
    f, labels = _hand_features()
    res = compute_spuriosity(f, labels, {0: [0, 1], 1: []}, num_classes=2)
    # feature 0 in class 0: mean 2, std sqrt(2/3) -> z = -1.2247, 0, 1.2247
    # feature 1 in class 0: mean 30, std sqrt((400+100+900)/3) = 21.602 -> z = -0.9258, -0.4629, 1.3887
    z0 = np.array([-1, 0, 1]) / np.sqrt(2 / 3)
    z1 = (np.array([10, 20, 60]) - 30) / np.sqrt(1400 / 3)
    np.testing.assert_allclose(res.scores[:3], (z0 + z1) / 2, rtol=1e-5)
    assert np.isnan(res.scores[3:]).all()
    assert res.classes_without_spurious == [1]
    assert list(res.ranking(0)) == [0, 1, 2]
    assert len(res.ranking(1)) == 0                     # reported as unranked, not silently ranked
    assert list(res.highest(0, 1)) == [2]


def test_constant_feature_contributes_zero_and_dedup():
    f, labels = _hand_features()
    res = compute_spuriosity(f, labels, {0: [2, 2], 1: [2]}, num_classes=2)
    np.testing.assert_allclose(res.scores[:3], 0.0)
    assert res.spurious[0] == [2]


def test_memmap_stream_matches_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    n, d, k = 1003, 16, 7
    f = rng.standard_normal((n, d)).astype(np.float16)
    labels = rng.integers(0, k, size=n)
    spur = {c: list(rng.choice(d, size=3, replace=False)) for c in range(k)}
    np.save(tmp_path / "f.npy", f)
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    a = compute_spuriosity(f, labels, spur, num_classes=k, block_rows=10_000)
    b = compute_spuriosity(mm, labels, spur, num_classes=k, block_rows=37)     # many blocks, file reads
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.order, b.order)
    sl = compute_spuriosity(mm[100:600], labels[100:600], spur, num_classes=k, block_rows=64)   # a view
    np.testing.assert_array_equal(sl.scores, compute_spuriosity(f[100:600], labels[100:600], spur,
                                                                 num_classes=k).scores)
    # straightforward per-class reference
    for c in range(k):
        idx = np.nonzero(labels == c)[0]
        x = f[idx][:, spur[c]].astype(np.float64)
        ref = ((x - x.mean(0)) / x.std(0)).mean(1)
        np.testing.assert_allclose(a.scores[idx], ref, rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(a.scores[a.ranking(c)]) >= 0)


def test_input_validation():
    f, labels = _hand_features()
    with pytest.raises(SpurAuditError, match="out of range"):
        compute_spuriosity(f, labels, {0: [9]}, num_classes=2)
    with pytest.raises(SpurAuditError, match="same split"):
        compute_spuriosity(f, labels[:3], {0: [0]}, num_classes=2)


def _ranking_one_class(n):
    f = np.arange(n, dtype=np.float16)[:, None]            # spuriosity increases with the row index
    return compute_spuriosity(f, np.zeros(n, int), {0: [0]}, num_classes=1)


def test_gap_with_known_predictions():
    r = _ranking_one_class(8)                                # default k = min(100, 8 // 4) = 2
    preds = np.array([1, 0, 0, 0, 0, 0, 0, 0])                # lowest-spuriosity row 0 is wrong
    g = spurious_gaps(r, preds, config=GapConfig(n_boot=200, seed=0))
    row = g.per_class.iloc[0]
    assert row.k == 2 and row.acc_high == 1.0 and row.acc_low == 0.5 and row.gap == 0.5
    assert g.pooled["gap"] == 0.5
    g2 = spurious_gaps(r, np.array([0, 0, 0, 0, 0, 0, 1, 1]), config=GapConfig(k=3, n_boot=0))
    row = g2.per_class.iloc[0]
    assert row.k == 3 and row.acc_high == pytest.approx(1 / 3) and row.acc_low == 1.0
    assert bool(row.negative)                                # negative gap flagged (no interval)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9])
def test_slices_disjoint_at_small_n(n):
    r = _ranking_one_class(n)
    for k in (None, 1, 3, 100):
        kk = slice_k(n, k)
        assert 2 * kk <= n
        preds = np.zeros(n, int)
        g = spurious_gaps(r, preds, config=GapConfig(k=k, n_boot=0)).per_class.iloc[0]
        if n < 2:
            assert not g.ranked and np.isnan(g.gap)
        else:
            assert g.k == kk and kk >= 1
            low, high = r.ranking(0)[:kk], r.ranking(0)[n - kk:]
            assert not set(low) & set(high)
    assert default_k(400) == 100 and default_k(40) == 10 and default_k(3) == 1


def test_bootstrap_deterministic_under_seed():
    rng = np.random.default_rng(1)
    n, k = 400, 4
    f = rng.standard_normal((n, 3)).astype(np.float16)
    labels = rng.integers(0, k, size=n)
    r = compute_spuriosity(f, labels, {c: [0] for c in range(k)}, num_classes=k)
    preds = np.where(rng.random(n) < 0.7, labels, (labels + 1) % k)
    a = spurious_gaps(r, preds, config=GapConfig(seed=3))
    b = spurious_gaps(r, preds, config=GapConfig(seed=3))
    c = spurious_gaps(r, preds, config=GapConfig(seed=4))
    assert a.per_class.equals(b.per_class) and a.pooled == b.pooled
    assert not np.allclose(a.per_class.ci_low, c.per_class.ci_low)
    ok = a.per_class.dropna()
    assert ((ok.ci_low <= ok.gap + 1e-12) & (ok.gap <= ok.ci_high + 1e-12)).all()
    assert a.pooled["ci_low"] <= a.pooled["gap"] <= a.pooled["ci_high"]


def test_compare_models_correlation():
    rng = np.random.default_rng(2)
    n, k = 800, 8
    f = rng.standard_normal((n, 2)).astype(np.float16)
    labels = rng.integers(0, k, size=n)
    r = compute_spuriosity(f, labels, {c: [0] for c in range(k)}, num_classes=k)
    s = r.scores
    # model a relies on the cue with a class-specific strength; model b the same; model c the opposite
    strength = np.linspace(0.2, 3, k)[labels]
    pa = np.where(s * strength + rng.normal(0, 0.3, n) > -0.5, labels, (labels + 1) % k)
    pb = np.where(s * strength + rng.normal(0, 0.3, n) > -0.5, labels, (labels + 1) % k)
    pc = np.where(-s * strength + rng.normal(0, 0.3, n) > -0.5, labels, (labels + 1) % k)
    table, corr, pooled = compare_models(r, {"a": pa, "b": pb, "c": pc}, config=GapConfig(n_boot=0))
    assert list(table.columns) == ["class_index", "gap_a", "gap_b", "gap_c"]
    assert corr.loc["a", "b"] > 0.7 and corr.loc["a", "c"] < -0.5
    assert pooled["a"]["gap"] > 0 > pooled["c"]["gap"]


def test_group_by_class():
    order, start = group_by_class(np.array([2, 0, 2, 1, 0]), 4)
    assert list(order) == [1, 4, 3, 0, 2] and list(start) == [0, 2, 3, 5, 5]


def test_class_score_order_matches_lexsort():
    from core.audit.spuriosity import class_score_order

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, size=2000)
    scores = rng.standard_normal(2000).astype(np.float32)
    scores[::7] = scores[1::7][: len(scores[::7])]              # ties
    scores[::13] = np.nan
    scores[5] = -0.0
    ref = np.lexsort((scores + np.float32(0), labels))          # numpy sorts NaN last: the one NaN rule
    np.testing.assert_array_equal(class_score_order(labels, scores), ref)


def test_one_nan_rule_for_every_ranking():
    """NaN (unknown) spuriosity sorts after every scored row of its class, ties by row index — in the
    audit's ranking and in head tuning's rankings from arbitrary scores alike."""
    from core.audit.spuriosity import class_score_order
    from core.mitigate.head_tuning import ranking_from_scores

    labels = np.array([1, 0, 0, 0, 1, 0, 1])
    scores = np.array([np.nan, 0.5, np.nan, -2.0, 3.0, np.inf, np.nan], dtype=np.float32)
    expected = np.array([3, 1, 5, 2, 4, 0, 6])          # class 0: -2, .5, inf, nan; class 1: 3, nan, nan
    assert np.array_equal(class_score_order(labels, scores), expected)
    assert np.array_equal(class_score_order(labels, scores), np.lexsort((scores, labels)))
    assert np.array_equal(ranking_from_scores(scores, labels, 2).order, expected)
    assert np.array_equal(class_score_order(labels, np.full(7, np.nan)), np.lexsort((np.arange(7), labels)))
