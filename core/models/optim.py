"""The one optimizer factory of the engine (model training, probes, mitigation loops)."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from core.errors import SpurAuditError, check_choice

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter] | Any, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"adam"`` (torch's Adam) or ``"sgd"`` (SGD with ``momentum``); other names raise
    `SpurAuditError` listing these two."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def check_optimizer_options(*, lr: float, momentum: float, weight_decay: float) -> None:
    """`SpurAuditError` unless ``lr`` is a positive finite number, ``weight_decay >= 0`` and
    ``0 <= momentum < 1`` (the numbers `make_optimizer` takes; every config that feeds it checks them)."""
    if not (lr > 0 and math.isfinite(lr)):
        raise SpurAuditError(f"lr must be a positive number, got {lr}")
    if weight_decay < 0 or not 0 <= momentum < 1:
        raise SpurAuditError(f"need weight_decay >= 0 and 0 <= momentum < 1, got {weight_decay}, {momentum}")


__all__ = ["OPTIMIZERS", "check_optimizer_options", "make_optimizer"]
