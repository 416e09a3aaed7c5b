"""The demo encoder: shipped weights, registry arch, L2-PGD, ground truth by intervention."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.errors import SpurAuditError
from core.models.demo_encoder import (ASSET_DIR, SLICE_N, DemoEncoder, DemoEncoderConfig, as_audit_model,
                                      evaluate_encoder, intervention_effects, intervention_labels, joint_l2_pgd,
                                      load_demo_encoder, load_shipped_encoder, save_demo_encoder,
                                      train_demo_encoder, unbiased_eval_set)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shipped():
    if not (ASSET_DIR / "encoder.pt").exists():
        pytest.fail("assets/demo_encoder/encoder.pt is missing: the demo encoder must ship with the repo")
    return load_shipped_encoder()


def test_shipped_weights_reach_recorded_accuracy_on_val_slice(shipped):
    model, meta = shipped
    m = meta["metrics"]
    assert meta["arch"] == "demo_cnn" and "audit_quality.py --train-encoder" in meta["command"]
    assert m["digit_accuracy"] >= 0.90                      # the bar, on 500 unbiased val digits
    x, y, t, _ = unbiased_eval_set(n=SLICE_N, seed=meta["config"]["seed"])
    acc = evaluate_encoder(model, x, y, t)
    assert acc["digit_accuracy"] >= m["slice_digit_accuracy"] - 0.011   # at most one image of 100 flips
    assert acc["texture_accuracy"] >= m["slice_texture_accuracy"] - 0.011
    assert acc["digit_accuracy"] > 0.8 and acc["texture_accuracy"] > 0.8


def test_registry_builds_the_shipped_encoder_as_audit_model(shipped):
    from core.models.registry import build_model

    enc, _ = shipped
    audit = build_model("demo_cnn", num_classes=10, pretrained="shipped").eval()
    x, _, _, _ = unbiased_eval_set(n=8, seed=0)
    fmap = audit.feature_map(x)
    assert fmap.shape == (8, enc.feature_dim, 8, 8) and (fmap >= 0).all()
    with torch.no_grad():
        assert torch.allclose(audit.features(x), enc.features(x), atol=1e-5)
    digit = as_audit_model(enc, head="digit")
    with torch.no_grad():
        assert torch.allclose(digit(x), enc(x)[0], atol=1e-4)
    with pytest.raises(SpurAuditError):
        as_audit_model(enc, head="colour")


def test_l2_pgd_stays_in_ball_and_raises_loss():
    torch.manual_seed(0)
    model = DemoEncoder(DemoEncoderConfig(widths=(8, 16), pools=(2, 1)))
    x = torch.rand(6, 3, 64, 64)
    y = torch.randint(0, 10, (6,))
    adv = joint_l2_pgd(model, x, y, y, eps=0.5, steps=3)
    d = (adv - x).flatten(1).norm(dim=1)
    assert (d <= 0.5 + 1e-4).all() and (d > 0.1).all()
    assert adv.min() >= 0 and adv.max() <= 1
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        before = ce(model(x)[0], y) + ce(model(x)[1], y)
        after = ce(model(adv)[0], y) + ce(model(adv)[1], y)
    assert after > before
    assert torch.equal(joint_l2_pgd(model, x, y, y, eps=0.0, steps=3), x)


def test_train_save_load_roundtrip(tmp_path):
    cfg = DemoEncoderConfig(widths=(8, 16), pools=(2, 1), epochs=3, n_train=192, batch_size=32, lr=1e-2,
                            adv_warmup_epochs=1, pgd_steps=1)
    model, metrics = train_demo_encoder(cfg, device="cpu", eval_n=100)
    assert len(metrics["history"]) == 3 and np.isfinite(metrics["history"][-1]["loss"])
    assert metrics["history"][1]["eps"] > 0          # the second epoch was adversarial
    assert metrics["texture_accuracy"] > 0.2          # texture is learnt within three tiny epochs (chance 0.1)
    save_demo_encoder(model, tmp_path, metrics=metrics, command="test")
    loaded, meta = load_demo_encoder(tmp_path)
    x, _, _, _ = unbiased_eval_set(n=4, seed=0)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[1], model(x)[1], atol=0.05)  # fp16 weights
    assert meta["metrics"]["slice_n"] == 100
    with pytest.raises(SpurAuditError):
        load_demo_encoder(tmp_path / "nothing")
    with pytest.raises(SpurAuditError):
        DemoEncoderConfig(widths=(8,), pools=(3,)).validate()


class _PlantedFeatures(nn.Module):
    """feature 0 = share of white (digit ink) pixels; feature 1 = mean brightness of the background."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        gray = x.mean(1)                                          # (B, H, W)
        ink = (gray > 0.95).float().mean((1, 2))
        bg = gray < 0.7
        bright = (gray * bg).sum((1, 2)) / bg.sum((1, 2)).clamp_min(1)
        return torch.stack([ink, bright], dim=1)                  # (B, 2)


def test_intervention_separates_planted_core_and_background_features():
    from core.data.mnist_source import load_mnist_digits

    d = load_mnist_digits(seed=0, n_val=20)
    digits, labels = d.images["val"], d.labels["val"]
    effects = intervention_effects(_PlantedFeatures(), digits, labels, seed=0)
    assert set(effects) == set(range(10))
    rows = intervention_labels(effects, np.array([[0, 1]] * 10))
    kinds = {(r["class_index"], r["feature"]): r["answer"] for r in rows}
    assert all(kinds[(c, 0)] == "core" for c in range(10))
    assert sum(kinds[(c, 1)] == "spurious_background" for c in range(10)) >= 9


def test_shipped_encoder_holds_both_kinds_by_intervention(shipped):
    """The digit head's strongest features per class react to removing the digit (core), the texture
    head's to swapping the background (spurious): the encoder holds objects and backgrounds."""
    from core.data.mnist_source import load_mnist_digits

    enc, _ = shipped
    d = load_mnist_digits(seed=0, n_val=100)
    effects = intervention_effects(enc, d.images["val"], d.labels["val"], seed=0)
    top_digit = np.argsort(-enc.digit_head.weight.detach().numpy(), axis=1)[:, :3]      # (10, 3)
    top_texture = np.argsort(-enc.texture_head.weight.detach().numpy(), axis=1)[:, :3]
    core = np.mean([r["answer"] == "core" for r in intervention_labels(effects, top_digit)])
    spur = np.mean([r["answer"] == "spurious_background" for r in intervention_labels(effects, top_texture)])
    assert core >= 0.8 and spur >= 0.8
