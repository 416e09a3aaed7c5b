import numpy as np
import pytest
import torch

from PIL import Image

from core.audit.crops import apply_crop, crop_box, crop_examples, crop_pair_tile, evaluate_core_crops, square_box
from core.audit.sensitivity import (CORRUPTIONS, SensitivityConfig, corrupt, feature_masks, measure_sensitivity,
                                    random_region)

from tests.audit.audit_images import red_square_images


def test_square_box_geometry():
    assert square_box(4, 2, 6, 8, 10, 10) == (2, 2, 6)          # 2 x 6 box -> 6 x 6, centred vertically
    assert square_box(0, 0, 2, 6, 10, 10) == (0, 0, 6)          # shifted down to stay inside
    assert square_box(8, 7, 10, 9, 10, 10) == (8, 7, 2)
    assert square_box(0, 0, 10, 3, 10, 20) == (0, 0, 10)        # tall box grows in width
    assert square_box(0, 0, 8, 20, 8, 20) == (0, 6, 8)          # capped at the shorter image side
    m = np.zeros((12, 12))
    m[3:5, 6:10] = 0.9
    assert crop_box(m) == (2, 6, 4)
    assert crop_box(np.zeros((12, 10))) == (1, 0, 10)           # empty mask -> largest centred square
    x = torch.rand(3, 12, 12)
    out = apply_crop(x, (2, 6, 4))
    assert out.shape == (3, 12, 12)
    full = apply_crop(x, (0, 0, 12))
    torch.testing.assert_close(full, x)


def test_core_crop_recovers_object_from_spurious_background(channel_model):
    # red object (core, feature 0) on a large green background (spurious): the whole image looks
    # green (class 1); cropping to the red feature's NAM gives class 0 back.
    imgs, _ = red_square_images(n=5, size=12, background=(0.0, 0.5, 0.0))
    labels = np.zeros(5, int)
    res = evaluate_core_crops(channel_model, imgs, labels, {0: [0]}, device="cpu")
    assert res.acc_before == 0.0 and res.acc_after == 1.0
    assert (res.boxes[:, 2] == 3).all()
    assert res.per_class.iloc[0].tolist() == [0, 5, 0.0, 1.0]
    res2 = evaluate_core_crops(channel_model, imgs, np.array([0, 0, 1, 1, 1]), {0: [0]}, device="cpu")
    assert res2.skipped_classes == [1] and len(res2.boxes) == 2
    # the saved records: only evaluated images, their split rows, boxes as fractions of the 12 px image
    ex = crop_examples(res2, np.array([40, 41, 42, 43, 44]), np.array([0, 0, 1, 1, 1]), height=12, width=12)
    assert [e["row"] for e in ex] == [40, 41] and {e["class_index"] for e in ex} == {0}
    assert all(e["pred_before"] == 1 and e["pred_after"] == 0 for e in ex)
    t, l_, side = res2.boxes[0]
    assert ex[0]["box"] == [round(t / 12, 5), round(l_ / 12, 5), round(side / 12, 5), round(side / 12, 5)]


def test_crop_pair_tile_outlines_the_box_and_shows_the_crop():
    img = np.zeros((40, 80, 3), np.uint8)
    img[10:30, 40:60] = (255, 0, 0)                         # the "core" region: a red 20 x 20 square
    tile = np.asarray(crop_pair_tile(Image.fromarray(img), (10 / 40, 40 / 80, 20 / 40, 20 / 80), size=32))
    assert tile.shape == (32, 2 * 32 + 4, 3)
    crop = tile[:, 36:]
    assert (crop[4:-4, 4:-4] == (255, 0, 0)).all()          # the crop is the red square, resized
    left = tile[:, :32]
    yellow = (left == (255, 221, 0)).all(-1)
    ys, xs = np.nonzero(yellow)
    assert ys.min() == 8 and xs.min() == 16                 # the box, scaled to the 32 x 32 left half
    assert not yellow[:, :14].any()


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_touch_only_masked_pixels(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g)
    mask = np.zeros((3, 16, 16), bool)
    mask[:, 4:12, 4:12] = True
    y = corrupt(x, mask, kind, seed=5)
    outside = torch.from_numpy(~mask)[:, None].expand_as(x)
    assert torch.equal(y[outside], x[outside])
    assert not torch.allclose(y[~outside], x[~outside])
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, corrupt(x, mask, kind, seed=5))          # seeded
    assert torch.equal(corrupt(x, np.zeros_like(mask), kind), x)


def test_gray_and_noise_values():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 1.0
    mask = np.ones((1, 4, 4), bool)
    y = corrupt(x, mask, "gray")
    torch.testing.assert_close(y[0, :, 0, 0], torch.full((3,), 0.2989), atol=1e-3, rtol=0)
    big = torch.full((1, 3, 64, 64), 0.5)
    n = corrupt(big, np.ones((1, 64, 64), bool), "noise", config=SensitivityConfig(noise_sigma=0.25))
    assert (n - big).std().item() == pytest.approx(0.25, rel=0.05)


def test_random_region_equal_area():
    m = np.zeros((4, 10, 10), bool)
    m[:, 2:5, 3:9] = True
    r = random_region(m, seed=0)
    assert (r.sum(axis=(1, 2)) == m.sum(axis=(1, 2))).all()
    assert not np.array_equal(r, m)


def test_sensitivity_masked_vs_random(channel_model):
    # green squares on black: class 1 (G > R); graying sets R = G (tie -> argmax class 0): wrong
    imgs, obj = red_square_images(n=8, size=12, side=3, color=(0.0, 1.0, 0.0))
    labels = np.ones(8, int)
    res = measure_sensitivity(channel_model, imgs, labels, obj, mask_source="object",
                              config=SensitivityConfig(corruptions=("gray", "noise")), device="cpu")
    s = res.summary().set_index("corruption")
    assert s.loc["gray", "acc_clean"] == 1.0 and s.loc["gray", "drop_masked"] == 1.0
    assert s.loc["gray", "drop_masked"] > s.loc["gray", "drop_random"]
    assert s.loc["gray", "mask_area"] == pytest.approx(9 / 144)
    fm, has = feature_masks(channel_model, imgs, labels, {1: [1]}, quantile=0.9)
    assert has.all() and (fm.sum(axis=(1, 2)) >= 9).all()
    assert fm[obj].all()                                   # the green feature's mask covers the object
