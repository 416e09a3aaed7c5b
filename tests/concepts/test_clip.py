"""CLIP concept scores. Random-init weights (no download here): these tests check the code path,
shapes, normalisation and the maths built on top, not CLIP's semantics."""

import numpy as np
import pytest
import torch

from core.concepts.clip import ClipConfig, ClipScorer, concept_spuriosity, suggest_feature_labels
from core.errors import SpurAuditError
from tests.concepts.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clipcfg")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    return ClipScorer(ClipConfig(model_name="spuraudit-tiny-clip", pretrained=None), device="cpu")


def test_scores_are_cosines_with_shapes(scorer):
    images = torch.rand(5, 3, 28, 28)
    s = scorer.concept_scores(images, ["water", "grass"])
    assert s.shape == (5, 2) and s.dtype == np.float32
    assert np.all(np.abs(s) <= 1.0 + 1e-5)
    emb = scorer.embed_images(images)
    assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    # deterministic
    assert np.array_equal(s, scorer.concept_scores(images, ["water", "grass"]))


def test_empty_concept_is_rejected(scorer):
    with pytest.raises(SpurAuditError, match="non-empty"):
        scorer.embed_texts(["water", " "])


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(SpurAuditError, match="unknown CLIP architecture"):
        ClipScorer(ClipConfig(model_name="ViT-Nope", pretrained=None), device="cpu")


def test_missing_weights_file_is_a_clear_error():
    with pytest.raises(SpurAuditError, match="does not exist"):
        ClipScorer(ClipConfig(model_name="ViT-B-32", pretrained="/nonexistent/clip.pt"), device="cpu")


def test_concept_spuriosity_z_scores_within_class():
    scores = np.array([[0.1, 0.0], [0.3, 0.0], [0.5, 0.2], [0.9, 0.2]])
    labels = np.array([0, 0, 1, 1])
    z = concept_spuriosity(scores, labels, spurious=[0])
    assert z.tolist() == pytest.approx([-1, 1, -1, 1])
    z2 = concept_spuriosity(scores, labels, spurious=[0], core=[1])
    assert z2.tolist() == pytest.approx([-1, 1, -1, 1])
    with pytest.raises(SpurAuditError):
        concept_spuriosity(scores, labels, spurious=[])


def test_suggestions_rows(scorer):
    rows = suggest_feature_labels(scorer, {(0, 3): torch.rand(2, 3, 32, 32), (1, 7): torch.rand(2, 3, 32, 32)},
                                  class_names=["cat", "dog"], concepts=["grass"])
    assert [(r["class_index"], r["feature"], r["source"]) for r in rows] == [(0, 3, "clip"), (1, 7, "clip")]
    assert all(r["answer"] in {"core", "spurious_background"} for r in rows)
    assert all((r["score"] > 0) == (r["answer"] == "spurious_background") for r in rows)


def test_a_weights_file_of_the_wrong_kind_is_a_clear_error(scorer, tmp_path):
    from core.concepts.sam import SamConfig, SamSegmenter

    sam_file = tmp_path / "sam_tiny.pth"                   # a real checkpoint, of another model
    torch.save(SamSegmenter(SamConfig(model_type="vit_tiny_test"), device="cpu").model.state_dict(), sam_file)
    with pytest.raises(SpurAuditError, match="sam_tiny.pth does not fit the architecture spuraudit-tiny-clip"):
        ClipScorer(ClipConfig(model_name="spuraudit-tiny-clip", pretrained=str(sam_file)), device="cpu")
    junk = tmp_path / "clip.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SpurAuditError, match="clip.pt is not a readable PyTorch / safetensors checkpoint"):
        ClipScorer(ClipConfig(model_name="spuraudit-tiny-clip", pretrained=str(junk)), device="cpu")


def test_batched_text_embeddings_match_one_concept_at_a_time(scorer):
    """Prompts are embedded in batches that cut across concepts (batch 5, 3 templates here); each
    concept is still the normalised mean over its own templates."""
    concepts = ["water", "grass", "a brick wall", "snow"]
    old = scorer.config.batch_size
    scorer.config.batch_size = 5
    try:
        together = scorer.embed_texts(concepts)
        alone = torch.cat([scorer.embed_texts([c]) for c in concepts])
    finally:
        scorer.config.batch_size = old
    assert together.shape == (4, 32) and torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(4), atol=1e-5)
