import numpy as np
import pytest

from core.audit.collisions import collision_summary, find_collisions
from core.audit.discover import DiscoveryConfig, class_means, discover_features, feature_importance
from core.errors import SpurAuditError

# 6 rows, 3 features, 2 classes
F = np.array([[1, 0, 2],
              [3, 0, 2],
              [0, 4, 1],
              [0, 2, 1],
              [5, 1, 0],
              [1, 1, 0]], dtype=np.float16)
LABELS = np.array([0, 0, 1, 1, 1, 0])
PREDS = np.array([0, 0, 1, 1, 0, 1])
W = np.array([[1.0, -1.0, 0.5],
              [0.0, 2.0, 1.0]])


def test_importance_by_hand_all_groupings():
    imp, counts, fb = feature_importance(F, LABELS, W, predictions=PREDS, group_by="prediction")
    # predicted 0: rows 0, 1, 4 -> mean (3, 1/3, 4/3); predicted 1: rows 2, 3, 5 -> mean (1/3, 7/3, 2/3)
    np.testing.assert_allclose(imp[0], [3 * 1, -1 / 3, 0.5 * 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(imp[1], [0, 2 * 7 / 3, 2 / 3], rtol=1e-6)
    assert list(counts) == [3, 3] and fb == []
    imp_l, _, _ = feature_importance(F, LABELS, W, group_by="label")
    # label 0: rows 0, 1, 5 -> mean (5/3, 1/3, 4/3)
    np.testing.assert_allclose(imp_l[0], [5 / 3, -1 / 3, 2 / 3], rtol=1e-6)
    imp_c, counts_c, _ = feature_importance(F, LABELS, W, predictions=PREDS, group_by="correct")
    # correct 0: rows 0, 1 -> mean (2, 0, 2); correct 1: rows 2, 3 -> (0, 3, 1)
    np.testing.assert_allclose(imp_c[0], [2, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(imp_c[1], [0, 6, 1], rtol=1e-6)
    assert list(counts_c) == [2, 2]


def test_empty_prediction_group_falls_back_to_label():
    preds = np.zeros(6, int)                                 # class 1 never predicted
    imp, counts, fb = feature_importance(F, LABELS, W, predictions=preds, group_by="prediction")
    assert fb == [1]
    np.testing.assert_allclose(imp[1], [0, 2 * 7 / 3, 2 / 3], rtol=1e-6)   # label-1 rows 2, 3, 4


def test_discover_top_k_and_single_feature_gap():
    res = discover_features(F, LABELS, W, predictions=PREDS, config=DiscoveryConfig(k=2))
    assert res.top_features.tolist() == [[0, 2], [1, 2]]
    sg = res.single_gaps.set_index(["class_index", "feature"])
    # class 0 rows 0,1,5 (n=3 -> k=1); by feature 0 (1, 3, 1): lowest = row 0 (stable) correct,
    # highest = row 1 correct -> gap 0
    assert sg.loc[(0, 0), "gap"] == 0.0 and sg.loc[(0, 0), "k"] == 1
    # class 1 rows 2,3,4 by feature 1 (4, 2, 1): lowest row 4 (pred 0, wrong), highest row 2 right -> +1
    assert sg.loc[(1, 1), "gap"] == 1.0
    assert len(res.table()) == 4
    with pytest.raises(SpurAuditError, match="needs the model's predictions"):
        discover_features(F, LABELS, W, predictions=None, config=DiscoveryConfig(k=2))
    with pytest.raises(SpurAuditError, match="group_by"):
        discover_features(F, LABELS, W, predictions=PREDS, config=DiscoveryConfig(k=2, group_by="votes"))


def test_class_means_memmap(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.standard_normal((500, 8)).astype(np.float16)
    g = rng.integers(-1, 5, size=500)
    np.save(tmp_path / "f.npy", f)
    means, counts = class_means(np.load(tmp_path / "f.npy", mmap_mode="r"), g, 5, block_rows=33)
    for c in range(5):
        np.testing.assert_allclose(means[c], f[g == c].astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
        assert counts[c] == (g == c).sum()


def test_collisions():
    imp = np.array([[5.0, 1.0, 0.5, 0.0],
                    [0.1, 4.0, 3.0, 0.0],
                    [0.0, 0.2, 6.0, 1.0]])
    col = find_collisions(imp, {0: [1], 1: [], 2: []}, top_k=2)
    # feature 1 spurious for class 0, in class 1's top 2 (rank 0): strength 4 / 1
    assert col[["class_index", "feature", "other_class", "rank_in_other"]].values.tolist() == [[0, 1, 1, 0]]
    assert col.strength.iloc[0] == pytest.approx(4.0)
    col2 = find_collisions(imp, {0: [1, 2]}, top_k=2)
    assert set(map(tuple, col2[["feature", "other_class"]].values.tolist())) == {(1, 1), (2, 1), (2, 2)}
    s = collision_summary(col2, {0: [1, 2], 1: [0]})
    assert s == {"n_spurious": 3, "n_colliding": 2, "fraction": 2 / 3}
    # a feature that is spurious in the other class too is not a core collision
    assert len(find_collisions(imp, {0: [1], 1: [1]}, top_k=2)) == 0


def test_top_activating():
    from core.audit.discover import top_activating

    rows = np.array([5, 0, 1])
    assert top_activating(F, rows, 0, n=2).tolist() == [1, 0]          # activations 3, 1, 1 (stable ties)
    assert top_activating(F, rows, 0, n=2, lowest=True).tolist() == [0, 5]
    with pytest.raises(SpurAuditError):
        top_activating(F, rows, 7)
