"""Training (`core.models.train`): ERM/GCE on a planted-cue dataset, adversarial training, sampling,
early stopping, schedules, clipping and input noise (the planted cue: `tests/models/_planted.py`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from core.errors import SpurAuditError
from core.models import TrainConfig, evaluate_accuracy, train_model

from tests.models._planted import ItemDataset, planted, small

torch.set_num_threads(1)


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
