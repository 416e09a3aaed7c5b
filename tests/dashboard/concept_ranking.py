"""A concept ranking ("by concept: water") with planted scores on the shared populated workspace, written
with the clip-rank job's own writer (`core.concepts.artifacts.save_concept_ranking`), no CLIP weights.

Planted: on the test split, every image the audited model classifies correctly scores higher than every
image it gets wrong (so a class with errors has a positive gap), plus seeded noise to fix the order;
class `UNSCORED_CLASS` is all NaN (no finite concept score: unranked). Removed again on exit so the
other tests see the workspace without concept rankings."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from tests.dashboard.populate import DATASET, MODEL

NAME = "water"
LABEL = "by concept: water"
SPLIT = "test"
UNSCORED_CLASS = 3


@contextmanager
def planted_concept_ranking(root: str):
    from core.concepts.artifacts import concept_ranking_dir, save_concept_ranking
    from core.features.store import load_features
    from core.workspace import Workspace

    ws = Workspace(root)
    fs = load_features(ws, DATASET, MODEL, SPLIT)
    correct = (fs.preds() == fs.labels).astype(np.float32)
    spur = correct + np.random.default_rng(0).uniform(0, 0.5, size=fs.n).astype(np.float32)
    spur[fs.labels == UNSCORED_CLASS] = np.nan
    save_concept_ranking(ws, DATASET, NAME, SPLIT, scores=spur[:, None], spuriosity=spur, concepts=[NAME],
                         clip={"model": "planted", "pretrained": "none"})
    try:
        yield {"ws": ws, "fs": fs, "spuriosity": spur}
    finally:
        ws.remove_path(concept_ranking_dir(DATASET, NAME))
