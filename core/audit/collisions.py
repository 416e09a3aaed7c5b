"""Spurious feature collisions (seed 002 §3).

A collision: feature j is spurious for class c1 and among the top core features of another class c2
(in c2's top ``top_k`` by importance and not labelled spurious for c2). Images of c1 with a strong
j then look like c2, which the paper links to misclassifications and negative spurious gaps.

Strength = importance[c2, j] / importance[c1, j] (> 1: j pushes towards c2 more than towards c1);
``relative_importance`` = importance[c2, j] / max_f importance[c2, f].
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from core.errors import SpurAuditError

__all__ = ["find_collisions", "collision_summary"]

COLUMNS = ["class_index", "feature", "other_class", "rank_in_other", "importance_in_class",
           "importance_in_other", "relative_importance", "strength"]


def find_collisions(importance: np.ndarray, spurious: Mapping[int, Sequence[int]], *, top_k: int = 5,
                    core: Mapping[int, Sequence[int]] | None = None) -> pd.DataFrame:
    """Collisions as a DataFrame (class_index, feature, other_class, rank_in_other, importance_in_class,
    importance_in_other, relative_importance, strength), strongest first.

    importance: (K, D) from `discover.feature_importance`; spurious: class -> spurious features;
    core: optional class -> core features; when given, the other class's feature must be core there
    (otherwise: in its top_k and not spurious there).
    """
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 2:
        raise SpurAuditError("importance must be a (K, D) array")
    K, D = importance.shape
    if not 1 <= top_k <= D:
        raise SpurAuditError(f"top_k must be in [1, {D}]")
    top = np.argsort(-importance, axis=1, kind="stable")[:, :top_k]               # (K, top_k)
    spur_sets = {int(c): {int(j) for j in v} for c, v in spurious.items()}
    core_sets = {int(c): {int(j) for j in v} for c, v in core.items()} if core is not None else None
    where: dict[int, list[tuple[int, int]]] = {}                                # feature -> [(class, rank)]
    for c2, r in zip(*np.nonzero(np.ones_like(top, dtype=bool))):
        where.setdefault(int(top[c2, r]), []).append((int(c2), int(r)))
    rows = []
    for c1, feats in spur_sets.items():
        for j in feats:
            if not 0 <= j < D:
                raise SpurAuditError(f"spurious feature {j} of class {c1} out of range [0, {D})")
            for c2, rank in where.get(j, []):
                if c2 == c1 or j in spur_sets.get(c2, set()):
                    continue
                if core_sets is not None and j not in core_sets.get(c2, set()):
                    continue
                i1, i2 = importance[c1, j], importance[c2, j]
                mx = importance[c2].max()
                rows.append(dict(class_index=c1, feature=j, other_class=c2, rank_in_other=rank,
                                 importance_in_class=float(i1), importance_in_other=float(i2),
                                 relative_importance=float(i2 / mx) if mx > 0 else np.nan,
                                 strength=float(i2 / i1) if i1 > 0 else np.inf))
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["strength", "class_index"], ascending=[False, True], kind="stable").reset_index(drop=True)


def collision_summary(collisions: pd.DataFrame, spurious: Mapping[int, Sequence[int]]) -> dict:
    """n_spurious pairs, n_colliding pairs and their fraction (paper: 63.8 % on ImageNet)."""
    n = sum(len(set(v)) for v in spurious.values())
    hit = len(collisions[["class_index", "feature"]].drop_duplicates()) if len(collisions) else 0
    return {"n_spurious": int(n), "n_colliding": int(hit), "fraction": (hit / n) if n else float("nan")}
