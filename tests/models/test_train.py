"""Training: ERM/GCE on a planted-cue dataset, adversarial training, sampling, early stopping, probes.

The planted cue: class k images are noise with a bright patch at position k (plus noise), so a small CNN
learns it within a few epochs; random-label data serves where learning must *not* generalise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from core.errors import SpurAuditError
from core.models import TrainConfig, build_model, evaluate_accuracy, gce_loss, l2_pgd_attack, train_model

torch.set_num_threads(1)
WIDTHS = [8, 16, 16]


def planted(n: int, *, k: int = 3, seed: int = 0, size: int = 16) -> TensorDataset:
    """(n, 3, size, size) in [0, 1]; class c has a bright 4x4 patch in corner c of the green channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.rand(n, 3, size, size, generator=g) * 0.3
    corners = [(0, 0), (0, size - 4), (size - 4, 0), (size - 4, size - 4)]
    for c in range(k):
        r, col = corners[c]
        x[y == c, 1, r:r + 4, col:col + 4] = 1.0
    return TensorDataset(x, y)


class ItemDataset(Dataset):
    """A non-tensor dataset yielding (x, y, index), to exercise the DataLoader path."""

    def __init__(self, base: TensorDataset):
        self.x, self.y = base.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i]), i


def small(k: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=k, widths=WIDTHS)


def test_erm_learns_planted_cue():
    train, val = planted(192, seed=0), planted(96, seed=1)
    res = train_model(small(), train, config=TrainConfig(epochs=4, batch_size=32, lr=3e-3), val=val, device="cpu")
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0]
    assert res.best_val_accuracy is not None and res.best_val_accuracy > 0.9
    assert evaluate_accuracy(res.model, val, device="cpu") == pytest.approx(res.best_val_accuracy)
    assert set(res.history[0]) >= {"epoch", "train_loss", "train_acc", "val_acc", "lr", "iterations"}
    assert res.wall_time > 0 and res.iterations == 4 * math.ceil(192 / 32) and not res.model.training


def test_training_is_deterministic_and_dataloader_path_matches():
    train = planted(96, seed=2)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, seed=7)
    a = train_model(small(seed=1), train, config=cfg, device="cpu").model
    b = train_model(small(seed=1), train, config=cfg, device="cpu").model
    c = train_model(small(seed=1), ItemDataset(train), config=cfg, device="cpu").model
    d = train_model(small(seed=1), Subset(train, list(range(96))), config=cfg, device="cpu").model
    for other in (b, c, d):
        for (name, p), q in zip(a.state_dict().items(), other.state_dict().values()):
            torch.testing.assert_close(p, q, msg=name)


def test_gce_training_and_sgd_cosine_schedule():
    train = planted(96, seed=3)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", schedule="cosine", loss="gce")
    res = train_model(small(), train, config=cfg, device="cpu")
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.history[-1]["lr"] < res.history[0]["lr"]  # cosine decays per step
    step = train_model(small(), train, config=TrainConfig(epochs=3, batch_size=48, schedule="step", step_epochs=1,
                                                          gamma=0.5, lr=1e-3), device="cpu")
    assert [h["lr"] for h in step.history] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_max_iters_caps_steps():
    res = train_model(small(), planted(96), config=TrainConfig(epochs=5, batch_size=32, max_iters=4), device="cpu")
    assert res.iterations == 4 and len(res.history) == 2


def test_l2_pgd_attack_stays_in_ball_and_raises_loss():
    model = train_model(small(), planted(96), config=TrainConfig(epochs=2, batch_size=32, lr=3e-3),
                        device="cpu").model
    x, y = planted(32, seed=5).tensors
    eps = 0.5
    adv = l2_pgd_attack(model, x, y, eps=eps, steps=5)
    delta = (adv - x).flatten(1).norm(dim=1)
    assert bool((delta <= eps + 1e-4).all()) and float(delta.max()) > 0.25 * eps
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_adversarial_training_runs_and_learns():
    train = planted(96, seed=6)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, adv_eps=0.25, adv_steps=2)
    res = train_model(small(), train, config=cfg, device="cpu")
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.config["adv_eps"] == 0.25


def test_sample_weights_drive_the_sampler():
    train = planted(90, seed=8)
    y = train.tensors[1]
    weights = (y == 0).float().numpy()  # only class-0 samples are ever drawn
    res = train_model(small(), train, config=TrainConfig(epochs=2, batch_size=30, lr=3e-3), sample_weights=weights,
                      device="cpu")
    with torch.no_grad():
        pred = res.model(train.tensors[0]).argmax(1)
    assert float((pred == 0).float().mean()) > 0.9
    with pytest.raises(SpurAuditError, match="sample_weights"):
        train_model(small(), train, config=TrainConfig(epochs=1), sample_weights=np.ones(5), device="cpu")


def test_early_stopping_restores_best_weights():
    train = planted(96, seed=9)
    g = torch.Generator().manual_seed(0)
    x_val = planted(60, seed=10).tensors[0]
    val = TensorDataset(x_val, torch.randint(0, 3, (60,), generator=g))  # labels unrelated to the cue
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, early_stopping_patience=2)
    res = train_model(small(), train, config=cfg, val=val, device="cpu")
    accs = [h["val_acc"] for h in res.history]
    assert res.stopped_early and len(res.history) < 12
    assert res.best_val_accuracy == max(accs) and accs[res.best_epoch - 1] == max(accs)
    assert evaluate_accuracy(res.model, val, device="cpu") == pytest.approx(max(accs))


def test_config_validation():
    with pytest.raises(SpurAuditError, match="valid choices: adam, sgd"):
        train_model(small(), planted(8), config=TrainConfig(optimizer="rmsprop"), device="cpu")
    with pytest.raises(SpurAuditError, match="schedule"):
        TrainConfig(schedule="linear").validate()
    with pytest.raises(SpurAuditError, match="adv_eps"):
        TrainConfig(adv_eps=-1).validate()
    with pytest.raises(SpurAuditError, match="empty"):
        train_model(small(), TensorDataset(torch.zeros(0, 3, 16, 16), torch.zeros(0, dtype=torch.long)),
                    config=TrainConfig(), device="cpu")


def test_gce_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], requires_grad=True)
    targets = torch.tensor([0, 2])
    q = 0.7
    z = logits.detach().numpy().astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p_y = p[[0, 1], [0, 2]]
    expected = q * p_y ** q * (-np.log(p_y))  # LfF/DCWP: q * p_y^q (detached) * CE
    per_sample = gce_loss(logits, targets, q=q, reduction="none")
    np.testing.assert_allclose(per_sample.detach().numpy(), expected, rtol=1e-5)
    assert float(gce_loss(logits, targets, q=q).detach()) == pytest.approx(expected.mean(), rel=1e-5)
    assert float(gce_loss(logits, targets, q=q, reduction="sum").detach()) == pytest.approx(expected.sum(), rel=1e-5)
    # its gradient equals the gradient of 1 - p_y^q (q times the GCE loss (1 - p_y^q)/q)
    (g1,) = torch.autograd.grad(gce_loss(logits, targets, q=q, reduction="sum"), logits)
    probs = torch.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    (g2,) = torch.autograd.grad((1 - probs ** q).sum(), logits)
    torch.testing.assert_close(g1, g2)
    # more confident samples get a larger weight than under CE
    ce = F.cross_entropy(logits, targets, reduction="none").detach()
    ratio = (per_sample.detach() / ce).numpy()
    assert ratio[0] > ratio[1]
    with pytest.raises(SpurAuditError):
        gce_loss(logits, targets, q=0.0)


def test_grad_clip_bounds_each_step_and_input_noise_changes_training():
    """grad_clip caps the gradient norm of every step (plain SGD: one step moves the weights by at most
    lr · clip); input noise on, the run differs from the noiseless one; off (0), it is the default run."""
    train = planted(32, seed=0)
    cfg = dict(epochs=1, batch_size=32, lr=1.0, optimizer="sgd", momentum=0.0)
    before = [p.detach().clone() for p in small().parameters()]
    clipped = train_model(small(), train, config=TrainConfig(**cfg, grad_clip=1e-3), device="cpu").model
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(clipped.parameters(), before)))
    assert float(moved) <= 1.0 * 1e-3 * (1 + 1e-4)
    free = train_model(small(), train, config=TrainConfig(**cfg), device="cpu").model
    moved_free = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(free.parameters(), before)))
    assert float(moved_free) > 10 * float(moved)

    base = dict(epochs=2, batch_size=16, lr=3e-3)
    plain = train_model(small(), train, config=TrainConfig(**base), device="cpu").model
    zero = train_model(small(), train, config=TrainConfig(**base, input_noise_std=0.0), device="cpu").model
    noisy = train_model(small(), train, config=TrainConfig(**base, input_noise_std=0.5), device="cpu").model
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), zero.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), noisy.state_dict().values()))
    for bad in (dict(grad_clip=0.0), dict(grad_clip=float("nan")), dict(input_noise_std=-0.1)):
        with pytest.raises(SpurAuditError):
            TrainConfig(**bad).validate()
