"""`core.concepts.artifacts.save_concept_ranking` (the clip-rank job's writer) without CLIP: splits and
AUROCs merge across calls, bad shapes are refused, and what it writes loads back as a ranking."""
from __future__ import annotations

import numpy as np
import pytest

from core.concepts.artifacts import list_concept_rankings, load_concept_ranking, save_concept_ranking
from core.errors import SpurAuditError
from core.workspace import Workspace


def test_save_merges_splits_and_loads_back(tmp_path):
    ws = Workspace(tmp_path / "ws")
    labels = np.array([0, 1, 0, 1, 2, 2])
    spur = np.array([0.5, -1.0, -0.5, 1.0, np.nan, np.nan], dtype=np.float32)
    save_concept_ranking(ws, "d", "water", "val", scores=spur[:, None], spuriosity=spur, concepts=["water"],
                         auroc=0.9)
    save_concept_ranking(ws, "d", "water", "test", scores=spur[:, None], spuriosity=spur, concepts=["water"])
    (r,) = list_concept_rankings(ws, "d", split="test")
    assert r.splits == ["test", "val"] and r.auroc == {"val": 0.9} and r.label == "by concept: water"
    ranking = load_concept_ranking(ws, "d", "water", "val", labels, 3)
    assert ranking.ranking(0).tolist() == [2, 0] and ranking.ranking(1).tolist() == [1, 3]
    assert ranking.classes_without_spurious == [2]
    with pytest.raises(SpurAuditError, match="one row per image"):
        save_concept_ranking(ws, "d", "water", "val", scores=np.zeros((5, 1)), spuriosity=spur, concepts=["water"])
