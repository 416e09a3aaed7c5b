"""Rare spurious correlations: patterns, names, score, membership attack, unlearning."""
import numpy as np
import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.rare.inject import RareSpec, apply_pattern, inject, pattern_noise
from core.rare.membership import attack_features, membership_attack
from core.rare.score import compare_to_clean, pattern_deltas, spurious_score
from core.rare.unlearn import LissaConfig, group_influence_removal, incremental_retraining, inverse_hvp


def test_small_patterns_set_top_left_square():
    x = torch.zeros(2, 1, 28, 28)
    for name, s in [("s1", 1), ("s2", 3), ("s3", 5)]:
        y = apply_pattern(x, name)
        assert y[:, :, :s, :s].eq(1).all() and y.sum() == 2 * s * s
    assert x.sum() == 0  # input untouched


def test_random_pattern_is_fixed_noise_clipped():
    x = torch.full((1, 28, 28), 0.8)
    y = apply_pattern(x, "r3", noise_seed=3)
    assert torch.allclose(y, (x + pattern_noise((1, 28, 28), seed=3)).clamp(0, 1))
    assert torch.equal(y, apply_pattern(x, "r3", noise_seed=3))
    assert not torch.equal(y, apply_pattern(x, "r3", noise_seed=4))


def test_core_bar_location():
    y = apply_pattern(torch.zeros(1, 28, 28), "core")
    rows, cols = torch.nonzero(y[0], as_tuple=True)
    assert rows.min() == 3 and rows.max() == 24 and cols.min() == 13 and cols.max() == 15


def test_names_round_trip_and_errors():
    spec = RareSpec.parse("mnists3-3-0-0")
    assert spec == RareSpec("mnist", "s3", 3, 0, 0) and spec.name == "mnists3-3-0-0"
    assert RareSpec.parse("cifar10core-10-2-1").pattern == "core"
    with pytest.raises(SpurAuditError, match="cannot parse"):
        RareSpec.parse("mnist-3-0")


def test_inject_touches_exactly_n_target_images():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8) * 0.5
    y = torch.arange(40) % 4
    new, idx = inject(x, y, pattern="s1", n=3, target=2, seed=1)
    assert len(idx) == 3 and torch.all(y[idx] == 2)
    changed = torch.nonzero((new != x).flatten(1).any(1)).flatten()
    assert torch.equal(changed, idx)
    assert torch.equal(inject(x, y, pattern="s1", n=3, target=2, seed=1)[1], idx)
    with pytest.raises(SpurAuditError, match="only"):
        inject(x, y, pattern="s1", n=11, target=2)


class PatternDetector(nn.Module):
    """Predicts class 1 with high confidence when the top-left pixel is 1, else class 0."""

    def forward(self, x):
        on = (x[:, 0, 0, 0] > 0.99).float()
        return torch.stack([(1 - on) * 5, on * 5], dim=1)


def test_spurious_score_on_a_model_that_uses_the_pattern():
    x = torch.rand(20, 1, 8, 8) * 0.5
    labels = torch.full((20,), 2, dtype=torch.long)
    d = pattern_deltas(PatternDetector(), x, pattern="s1", target=1, device="cpu")
    assert np.all(d > 0.9)
    assert spurious_score(PatternDetector(), x, labels, pattern="s1", target=1, device="cpu") == 1.0
    assert spurious_score(PatternDetector(), x, labels, pattern="s1", target=0, device="cpu") == 0.0
    with pytest.raises(SpurAuditError, match="no test images"):
        spurious_score(PatternDetector(), x, torch.ones(20, dtype=torch.long), pattern="s1", target=1, device="cpu")
    res = compare_to_clean([0.9, 0.8, 0.85], [0.01, 0.02, 0.0])
    assert res["p_value"] < 0.01 and res["t"] > 0


def test_attack_features_sorted_with_correctness_bit():
    f = attack_features(np.array([[0.2, 0.7, 0.1]]), np.array([1]))
    assert f.tolist() == [[0.7, 0.2, 0.1, 1.0]]


def test_membership_attack_separates_confident_members():
    rng = np.random.default_rng(0)

    def outputs(n, member):
        conf = rng.uniform(0.9, 1.0, n) if member else rng.uniform(0.3, 0.7, n)
        probs = np.stack([conf, 1 - conf], 1)
        return probs, np.zeros(n, int)

    res = membership_attack(outputs(100, True), outputs(100, False), outputs(50, True), outputs(50, False),
                            member_groups={"all": np.ones(50, bool)})
    assert res.accuracy > 0.9 and res.auroc > 0.95 and res.member_accuracy["all"] > 0.9


def _linear_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0).long() + (x.flatten(1)[:, 1] > 0.5).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return model, x, y


def test_lissa_matches_exact_damped_inverse_hessian():
    model, x, y = _linear_problem()
    params = [p for p in model.parameters()]
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat):
        w, b = torch.split(flat, [shapes[0].numel(), shapes[1].numel()])
        return nn.functional.cross_entropy(x.flatten(1) @ w.view(shapes[0]).T + b, y)

    hessian = torch.autograd.functional.hessian(loss_of, flat0)
    v = torch.randn(len(flat0))
    cfg = LissaConfig(iterations=400, batch_size=64, damping=0.05, scale=2.0)
    est = inverse_hvp(model, x, y, v, config=cfg, device="cpu")
    exact = torch.linalg.solve(hessian + cfg.damping * cfg.scale * torch.eye(len(v)), v)
    assert torch.allclose(est, exact, rtol=1e-3, atol=1e-4)


def test_unlearning_methods_run_and_move_weights():
    model, x, y = _linear_problem()
    before = [p.detach().clone() for p in model.parameters()]
    removed = group_influence_removal(model, x, y, torch.tensor([0, 1, 2]),
                                      config=LissaConfig(iterations=50, batch_size=64, scale=5.0), device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(before, removed.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # original untouched
    retrained = incremental_retraining(model, x, y, torch.tensor([0]), epochs=1, device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(before, retrained.parameters()))
    with pytest.raises(SpurAuditError):
        group_influence_removal(model, x, y, torch.tensor([], dtype=torch.long), device="cpu")
