"""Spurious score of a model for a rare pattern, and the test that it differs from a clean model.

For each test image x, Δ(x) = p_target(x ⊕ pattern) − p_target(x). The spurious score is the fraction of
test images (by default those not of the target class) with Δ > threshold (0.1). A model trained with
n = 0 patterned images gives the baseline; Welch's t-test over seeds says whether n examples moved it.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
from scipy.stats import ttest_ind

from core.device import resolve_device
from core.errors import SpurAuditError
from core.rare.inject import PatchPattern, apply_pattern


@torch.inference_mode()
def pattern_deltas(model: torch.nn.Module, images: torch.Tensor, *, pattern: "str | PatchPattern", target: int,
                   noise_seed: int = 0, batch_size: int = 512, device: "str | torch.device" = "auto") -> np.ndarray:
    """Δ (N,) float32: change of the target-class probability when the pattern is added."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(dev)
        xp = apply_pattern(x, pattern, noise_seed=noise_seed)
        p = torch.softmax(model(x).float(), dim=1)[:, target]
        pp = torch.softmax(model(xp).float(), dim=1)[:, target]
        out.append((pp - p).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def spurious_score(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                   pattern: "str | PatchPattern", target: int, threshold: float = 0.1, exclude_target: bool = True,
                   noise_seed: int = 0, device: "str | torch.device" = "auto") -> float:
    """Fraction of test images whose target probability rises by more than ``threshold`` with the pattern."""
    if not 0 <= threshold < 1:
        raise SpurAuditError("threshold must be in [0, 1)")
    if exclude_target and labels is not None:
        images = images[labels != target]
    if len(images) == 0:
        raise SpurAuditError("no test images left to score (all of them are of the target class?)")
    deltas = pattern_deltas(model, images, pattern=pattern, target=target, noise_seed=noise_seed, device=device)
    return float((deltas > threshold).mean())


def welch_p(scores: Sequence[float], clean_scores: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's t-test; when both sides have zero variance (all seeds agree) the test
    is degenerate: p = 1 for equal means and 0 otherwise (t = 0 or ±inf)."""
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(clean_scores, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise SpurAuditError("the t-test needs at least two seeds on each side")
    if a.var() == 0 and b.var() == 0:
        diff = a.mean() - b.mean()
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    with warnings.catch_warnings():      # nearly identical seeds: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def compare_to_clean(scores: list[float], clean_scores: list[float]) -> dict[str, float]:
    """Welch's t-test of spurious scores over seeds (with pattern vs n = 0). Small p = the pattern was learned."""
    t, p = welch_p(scores, clean_scores)
    return {"mean": float(np.mean(scores)), "clean_mean": float(np.mean(clean_scores)), "t": t, "p_value": p}
