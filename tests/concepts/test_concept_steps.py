"""Concept steps over a real (tiny) workspace: SAM-IoU labels, CLIP concept spuriosity and CLIP labels.

Both backends are random-init (no weights can be downloaded here), so these tests check the plumbing:
labels land with the right source and never change the human verdicts, scores are row-aligned with
the split and saved through the workspace. They say nothing about CLIP's or SAM's quality.
"""

import numpy as np
import pytest
import torch

from core.concepts.clip import ClipConfig
from core.concepts.pipeline import run_clip_labels, run_clip_spuriosity, run_sam_labels
from core.concepts.sam import SamConfig
from core.errors import SpurAuditError
from tests.concepts.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def ws_discovered(tmp_path_factory):
    from core.audit.pipeline import run_discovery
    from core.data import build_dataset
    from core.features.extract import extract_splits
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.workspace import Workspace

    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=60, n_val=40, n_test=20, size=32,
                  digit_size=(16, 24), rho=0.9)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 16, 16)), dataset="tex")
    extract_splits(ws, "tex", "cnn", ["train", "val"], device="cpu")
    run_discovery(ws, "tex", "cnn", device="cpu")
    return ws


def test_sam_iou_labels(ws_discovered):
    ws = ws_discovered
    ws.add_labels([dict(dataset="tex", model="cnn", class_index=0, feature=1, answer="core", annotator="ana",
                        source="human")])
    n = run_sam_labels(ws, "tex", "cnn", sam=SamConfig(model_type="vit_tiny_test"), device="cpu")
    labels = ws.labels("tex", "cnn", source="sam_iou")
    assert n == len(labels) > 0 and set(labels.annotator) == {"sam"}
    assert labels.score.between(0, 1).all()
    assert run_sam_labels(ws, "tex", "cnn", sam=SamConfig(model_type="vit_tiny_test"), device="cpu") == 0
    human = ws.labels("tex", "cnn", source="human")
    assert len(human) == 1 and human.answer.iloc[0] == "core"


def test_clip_concept_spuriosity_saved_and_aligned(ws_discovered):
    ws = ws_discovered
    cfg = ClipConfig(model_name="spuraudit-tiny-clip", pretrained=None)
    out = run_clip_spuriosity(ws, "tex", concepts=["brick wall"], core_concepts=["a digit"], clip=cfg,
                              split="val", device="cpu")
    spur = ws.open_npy(out["spuriosity"], mmap=False)
    assert spur.shape == (40,) and np.isfinite(spur).all()
    assert 0.0 <= out["auroc_aligned_vs_conflicting"] <= 1.0
    assert set(ws.concepts("tex").text) == {"brick wall", "a digit"}


def test_clip_labels(ws_discovered):
    ws = ws_discovered
    cfg = ClipConfig(model_name="spuraudit-tiny-clip", pretrained=None)
    n = run_clip_labels(ws, "tex", "cnn", concepts=["grass"], clip=cfg, top_n=2, device="cpu")
    labels = ws.labels("tex", "cnn", source="clip")
    assert n == len(labels) > 0
    assert set(labels.answer) <= {"core", "spurious_background"}


def test_concept_rankings_are_named_and_read_like_feature_rankings(ws_discovered):
    from core.audit.gaps import spurious_gaps
    from core.concepts.artifacts import list_concept_rankings, load_concept_ranking
    from core.features.store import load_features

    ws = ws_discovered
    cfg = ClipConfig(model_name="spuraudit-tiny-clip", pretrained=None)
    run_clip_spuriosity(ws, "tex", concepts=["brick wall"], clip=cfg, split="val", device="cpu")
    run_clip_spuriosity(ws, "tex", concepts=["grass"], clip=cfg, split="val", name="lawn", device="cpu")
    saved = {r.name: r for r in list_concept_rankings(ws, "tex", split="val")}
    assert set(saved) == {"brick-wall", "lawn"} and saved["lawn"].label == "by concept: grass"
    assert list_concept_rankings(ws, "tex", split="test") == []
    fs = load_features(ws, "tex", "cnn", "val")
    ranking = load_concept_ranking(ws, "tex", "lawn", "val", fs.labels, fs.num_classes)
    for c in range(fs.num_classes):                           # ascending concept spuriosity within each class
        assert np.all(np.diff(ranking.scores[ranking.ranking(c)]) >= 0)
    assert spurious_gaps(ranking, fs.preds()).per_class.shape[0] == fs.num_classes
    with pytest.raises(SpurAuditError, match="no concept ranking 'water'"):
        load_concept_ranking(ws, "tex", "water", "val", fs.labels, fs.num_classes)
