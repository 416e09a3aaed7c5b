"""SAM object masks. A 1-block random-init SAM (no checkpoint download here) exercises the real
predictor path: shapes, determinism and checkpoint validation; IoU maths is checked exactly."""
import numpy as np
import pytest
import torch

from core.concepts.sam import SamConfig, SamSegmenter, mask_iou
from core.errors import SpurAuditError


def test_mask_iou_known_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b[:2, :] = True
    assert mask_iou(a, b) == pytest.approx(4 / 8)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(SpurAuditError):
        mask_iou(a, np.zeros((3, 3), bool))


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return SamSegmenter(SamConfig(model_type="vit_tiny_test"), device="cpu")


def test_tiny_sam_produces_deterministic_masks(segmenter):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(48, 40, 3), dtype=np.uint8)
    mask, score = segmenter.object_mask(image)
    assert mask.shape == (48, 40) and mask.dtype == bool
    again, score2 = segmenter.object_mask(image)
    assert np.array_equal(mask, again) and score == score2
    with pytest.raises(SpurAuditError, match="uint8"):
        segmenter.object_mask(image.astype(np.float32))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(SpurAuditError, match="does not exist"):
        SamSegmenter(SamConfig(model_type="vit_tiny_test", checkpoint=str(tmp_path / "nope.pth")), device="cpu")
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.bogus": torch.zeros(1)}, bad)
    with pytest.raises(SpurAuditError, match="does not match"):
        SamSegmenter(SamConfig(model_type="vit_tiny_test", checkpoint=str(bad)), device="cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SpurAuditError, match="junk.pth is not a readable PyTorch checkpoint"):
        SamSegmenter(SamConfig(model_type="vit_tiny_test", checkpoint=str(junk)), device="cpu")


def test_checkpoint_round_trip(tmp_path, segmenter):
    path = tmp_path / "tiny.pth"
    torch.save(segmenter.model.state_dict(), path)
    loaded = SamSegmenter(SamConfig(model_type="vit_tiny_test", checkpoint=str(path)), device="cpu")
    image = np.full((32, 32, 3), 128, np.uint8)
    assert np.array_equal(loaded.object_mask(image)[0], segmenter.object_mask(image)[0])


def test_unknown_type():
    with pytest.raises(SpurAuditError, match="valid choices"):
        SamConfig(model_type="vit_z")
