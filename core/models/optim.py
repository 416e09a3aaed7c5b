"""The one optimizer factory of the engine (model training, probes, mitigation loops)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from core.errors import check_choice

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter] | Any, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"adam"`` (torch's Adam) or ``"sgd"`` (SGD with ``momentum``); other names raise
    `SpurAuditError` listing these two."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


__all__ = ["OPTIMIZERS", "make_optimizer"]
