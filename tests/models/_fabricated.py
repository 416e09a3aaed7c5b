"""Fabricated foreign checkpoints for the checkpoint and builder tests."""
from __future__ import annotations

import torch
import torchvision


def robust_checkpoint(seed: int = 0) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """A fabricated robustness-library checkpoint around a random torchvision ResNet-50."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet50(weights=None)
    sd = net.state_dict()
    mean = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    state = {f"module.model.{k}": v for k, v in sd.items()}
    state.update({f"module.attacker.model.{k}": torch.zeros_like(v) for k, v in list(sd.items())[:10]})
    state.update({"module.normalizer.new_mean": mean, "module.normalizer.new_std": std,
                  "module.attacker.normalize.new_mean": torch.zeros(3, 1, 1),
                  "module.attacker.normalize.new_std": torch.ones(3, 1, 1)})
    return {"model": state, "epoch": 90}, sd, mean, std
