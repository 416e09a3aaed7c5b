"""2-D projections of a feature set for the dashboard's Embeddings page (issue 12).

`subsample` draws at most ``max_points`` rows, stratified by class (every class keeps at least one row
when it has one; seeded), so a 1.28 M-row store is shown as a few thousand points and the page can say
so. `project` maps the chosen rows' features to 2-D with PCA (numpy SVD of the centred float32
features) or UMAP when ``umap-learn`` is installed (`available_methods` says which). Pure: arrays in,
a `Projection` out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import SpurAuditError, check_choice

__all__ = ["Projection", "available_methods", "subsample", "project"]


@dataclass
class Projection:
    """xy: (n, 2) float32; rows: (n,) int64 rows of the feature set; method; n_total rows of the set;
    explained: PCA's explained variance ratio of the two axes (None for UMAP)."""

    xy: np.ndarray
    rows: np.ndarray
    method: str
    n_total: int
    explained: tuple[float, float] | None = None

    @property
    def subsampled(self) -> bool:
        return len(self.rows) < self.n_total


def available_methods() -> list[str]:
    """"pca", plus "umap" when umap-learn can be imported."""
    try:
        import umap  # noqa: F401,PLC0415 - optional heavy backend (numba); checked, not required
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return ["pca"]
    return ["pca", "umap"]


def subsample(labels: np.ndarray, max_points: int, *, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all rows when there are at most ``max_points``, else a class-stratified
    seeded sample of exactly ``max_points`` rows (each class its share rounded down, at least one row
    when the classes fit, the remainder drawn at random)."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_points < 1:
        raise SpurAuditError(f"max_points must be >= 1 (got {max_points})")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = np.maximum(1, np.floor(counts * (max_points / n))).astype(np.int64)
    keys = rng.random(n)
    order = np.lexsort((keys, inverse))                         # rows grouped by class, random within
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - np.repeat(start, counts)               # position within its class (in `order`)
    chosen = order[pos < np.repeat(quota, counts)]
    if len(chosen) > max_points:                                 # many tiny classes: keep a random max_points
        chosen = rng.choice(chosen, size=max_points, replace=False)
    elif len(chosen) < max_points:                               # quotas round down: top up at random
        rest = np.setdiff1d(np.arange(n), chosen, assume_unique=False)
        chosen = np.concatenate([chosen, rng.choice(rest, size=max_points - len(chosen), replace=False)])
    return np.sort(chosen).astype(np.int64)


def project(features: np.ndarray, rows: np.ndarray, *, method: str = "pca", n_total: int | None = None,
            seed: int = 0) -> Projection:
    """2-D projection of ``features[rows]`` (float16/32 (N, D) array or memmap)."""
    check_choice("method", method, ("pca", "umap"))
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size < 2:
        raise SpurAuditError("a projection needs at least 2 images")
    x = np.asarray(features[rows], dtype=np.float32)            # (n, D)
    x = x - x.mean(axis=0, keepdims=True)
    n_total = int(n_total if n_total is not None else features.shape[0])
    if method == "umap":
        if "umap" not in available_methods():
            raise SpurAuditError("UMAP needs the optional package umap-learn (pip install umap-learn); "
                                 "or choose PCA")
        import umap  # noqa: PLC0415 - optional heavy backend (numba), imported only when chosen

        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(rows) - 1)).fit_transform(x)
        return Projection(xy=np.asarray(xy, dtype=np.float32), rows=rows, method=method, n_total=n_total)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T                                            # (n, 2)
    if xy.shape[1] < 2:
        xy = np.concatenate([xy, np.zeros((len(xy), 2 - xy.shape[1]), np.float32)], axis=1)
    var = s ** 2
    total = float(var.sum()) or 1.0
    explained = (float(var[0] / total), float(var[1] / total) if len(var) > 1 else 0.0)
    # a deterministic sign: the largest |loading| of each axis positive
    for a in range(min(2, vt.shape[0])):
        if vt[a][np.argmax(np.abs(vt[a]))] < 0:
            xy[:, a] *= -1
    return Projection(xy=xy.astype(np.float32), rows=rows, method=method, n_total=n_total, explained=explained)
