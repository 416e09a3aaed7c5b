"""Mining bias-conflicting training samples (DCWP stage 1, JTT's error set).

A *bias-capturing* model is trained on the training split and the training samples it
misclassifies are returned as the mined (proxy bias-conflicting) set:

* ``method="gce"``: generalized cross-entropy (q = 0.7, `core.models.losses.gce_loss`), which
  up-weights easy samples so the model latches onto the shortcut (LfF/DCWP).
* ``method="erm"``: plain cross-entropy stopped early (JTT's identification model).

When the training split has bias labels, the mined set is scored against the true conflicting
samples (``aligned == False`` among known bias): precision = |mined ∩ conflicting| / |mined|,
recall = |mined ∩ conflicting| / |conflicting|. Mining never looks at val or test.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.mitigate.data import MitigationData
from core.mitigate.metrics import model_outputs
from core.mitigate.training import IndexSampler, default_model, fit, fresh_copy, set_seed
from core.models.losses import gce_loss
from core.progress import ProgressFn, null_progress

MINING_METHODS = ("gce", "erm")
MINING_SCORES = ("final", "average")


@dataclass
class MiningConfig:
    """How the bias-capturing model is trained.

    method: "gce" (q-weighted CE, LfF/DCWP) or "erm" (early-stopped CE, JTT).
    q: GCE exponent in (0, 1]. iterations/batch_size/lr: Adam training of the bias model (from a
    fresh initialisation of the base model's architecture, or ``arch`` when no base model is given).
    score: "final" mines the samples the final bias model misclassifies; "average" mines the samples
    whose bias score ``1 − p_y(x)``, averaged over evaluations every ``score_every`` steps (0 = once
    per epoch) along the training trajectory, exceeds ``threshold``. The average is robust to both
    failure modes of the final model: an underfit model (everything looks conflicting) and a model
    that has memorised the few conflicting samples by the end (they stop looking conflicting).
    """

    method: str = "gce"
    q: float = 0.7
    iterations: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    arch: str = "small_cnn"
    score: str = "average"
    threshold: float = 0.5
    score_every: int = 0

    def __post_init__(self) -> None:
        check_choice("mining method", self.method, MINING_METHODS)
        check_choice("mining score", self.score, MINING_SCORES)
        if not 0.0 < float(self.threshold) < 1.0:
            raise SpurAuditError(f"mining threshold must be in (0, 1), got {self.threshold}")
        if self.score_every < 0:
            raise SpurAuditError("mining score_every must be >= 0 (0 = once per epoch)")
        if not 0.0 < float(self.q) <= 1.0:
            raise SpurAuditError(f"GCE q must be in (0, 1], got {self.q} (DCWP uses 0.7)")
        if self.iterations < 1 or self.batch_size < 1 or self.lr <= 0:
            raise SpurAuditError("mining iterations and batch_size must be >= 1 and lr > 0")


@dataclass
class MiningResult:
    """mined: bool (N_train,) — True for samples the bias model misclassifies (proxy conflicting).
    metrics: ``n_mined``, ``mined_fraction`` and, with bias labels, ``precision``, ``recall``, ``f1``,
    ``n_conflicting``; plus ``wall_time_s`` and ``method``. model: the trained bias model."""

    mined: np.ndarray
    metrics: dict
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def indices(self) -> np.ndarray:
        return np.flatnonzero(self.mined)


def mining_scores(mined: np.ndarray, aligned: np.ndarray, bias: np.ndarray | None = None) -> dict:
    """Precision/recall/F1 of a mined bool mask (N,) against the true conflicting samples.

    ``aligned``: bool (N,); ``bias``: int (N,) with −1 unknown (those rows are ignored), or None
    (all known). Returns ``n_mined``, ``mined_fraction``, ``n_conflicting``, ``precision`` (NaN when
    nothing was mined), ``recall`` (NaN without conflicting samples), ``f1``.
    """
    mined = np.asarray(mined, dtype=bool)
    aligned = np.asarray(aligned, dtype=bool)
    if mined.shape != aligned.shape:
        raise SpurAuditError(f"mined mask {mined.shape} and aligned flags {aligned.shape} differ in shape")
    known = np.ones_like(mined) if bias is None else (np.asarray(bias) >= 0)
    conflicting = known & ~aligned
    tp = int((mined & conflicting).sum())
    n_mined_known = int((mined & known).sum())
    precision = tp / n_mined_known if n_mined_known else float("nan")
    recall = tp / int(conflicting.sum()) if conflicting.any() else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if n_mined_known and conflicting.any() and (precision + recall) > 0 else float("nan"))
    return {"n_mined": int(mined.sum()), "mined_fraction": float(mined.mean()) if len(mined) else 0.0,
            "n_conflicting": int(conflicting.sum()), "precision": float(precision), "recall": float(recall),
            "f1": float(f1)}


def mine_conflicting(data: MitigationData, *, config: MiningConfig | None = None, base_model: nn.Module | None = None,
                     seed: int = 0, device: "str | torch.device" = "auto",
                     progress: ProgressFn | None = None) -> MiningResult:
    """Train a bias-capturing model on ``data``'s train split and mine the samples it misclassifies.

    The bias model is a fresh, seeded initialisation of ``base_model``'s architecture (or
    ``config.arch``). Uses training data only (no validation selection: the bias model is meant to be
    biased). Returns a `MiningResult` (mined bool (N_train,), metrics incl. precision/recall when the
    train split has bias labels).
    """
    config = config or MiningConfig()
    progress = progress or null_progress
    dev = resolve_device(device)
    started = time.perf_counter()
    set_seed(seed)
    model = fresh_copy(base_model, seed=seed + 1000) if base_model is not None else \
        default_model(data, arch=config.arch, seed=seed + 1000)
    if config.method == "gce":
        q = float(config.q)

        def loss_fn(m, xb, yb, idx):
            return gce_loss(m(xb), yb, q=q)
    else:
        loss_fn = None  # plain cross-entropy
    sampler = IndexSampler(data.n_train, config.batch_size, seed=seed + 1001)
    y_np = data.y_train.numpy()
    score_sum = np.zeros(data.n_train, dtype=np.float64)
    n_scores = 0
    every = config.score_every or max(1, -(-data.n_train // config.batch_size))   # ceil: once per epoch

    def bias_score() -> np.ndarray:
        """(N_train,) 1 − p_y(x) under the current bias model."""
        logits, _ = model_outputs(model, data.x_train, device=dev)
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return 1.0 - p[np.arange(len(y_np)), y_np]

    def on_step(step: int) -> None:
        nonlocal n_scores
        if config.score == "average" and step % every == 0:
            score_sum[:] += bias_score()
            n_scores += 1
            model.train()

    fit(model, data, iterations=config.iterations, lr=config.lr, sampler=sampler, loss_fn=loss_fn, select=False,
        device=dev, seed=seed, stage=f"mining-{config.method}", progress=progress, on_step=on_step)
    if config.score == "average":
        if n_scores == 0:   # fewer steps than one scoring period: score the final model
            score_sum[:] = bias_score()
            n_scores = 1
        mined = score_sum / n_scores > config.threshold
    else:
        logits, _ = model_outputs(model, data.x_train, device=dev)
        mined = logits.argmax(1) != y_np
    wall = time.perf_counter() - started
    tr = data.split("train")
    metrics = {"method": config.method, "score": config.score, "wall_time_s": wall}
    if tr.has_bias:
        metrics.update(mining_scores(mined, tr.aligned.numpy(), tr.bias.numpy()))
    else:
        metrics.update({"n_mined": int(mined.sum()), "mined_fraction": float(mined.mean())})
    progress(1.0, f"mined {int(mined.sum())} of {len(mined)} training samples")
    return MiningResult(mined=mined, metrics=metrics, model=model)
