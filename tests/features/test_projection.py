"""`core.features.projection`: class-stratified subsampling and the 2-D projection."""
import numpy as np
import pytest

from core.errors import SpurAuditError
from core.features.projection import available_methods, project, subsample


def test_subsample_is_stratified_seeded_and_bounded():
    labels = np.array([0] * 1000 + [1] * 10 + [2])
    rows = subsample(labels, 101, seed=0)
    assert len(rows) == 101 and (np.diff(rows) > 0).all()
    many = np.repeat(np.arange(1000), 3)
    assert len(subsample(many, 2500)) == 2500 and len(np.unique(many[subsample(many, 2500)])) == 1000
    assert set(labels[rows]) == {0, 1, 2}                        # the one-image class is kept
    assert np.array_equal(rows, subsample(labels, 101, seed=0))
    assert np.array_equal(subsample(labels, 5000), np.arange(len(labels)))
    with pytest.raises(SpurAuditError):
        subsample(labels, 0)


def test_pca_separates_a_planted_direction():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    x = rng.normal(0, 0.1, size=(200, 16)).astype(np.float16)
    x[:, 3] += np.where(labels == 1, 2.0, -2.0)                   # the classes differ along one feature
    p = project(x, np.arange(200))
    assert p.xy.shape == (200, 2) and p.method == "pca" and not p.subsampled
    assert p.explained[0] > 0.9
    a, b = p.xy[labels == 0, 0], p.xy[labels == 1, 0]
    assert a.max() < b.min() or b.max() < a.min()
    assert "pca" in available_methods()


@pytest.mark.skipif("umap" not in available_methods(), reason="umap-learn not installed")
def test_umap_when_installed():
    x = np.random.default_rng(1).normal(size=(60, 8)).astype(np.float32)
    p = project(x, np.arange(60), method="umap")
    assert p.xy.shape == (60, 2) and np.isfinite(p.xy).all()
