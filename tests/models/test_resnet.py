"""torchvision ResNets (`core.models.resnet`) from local state dicts."""
from __future__ import annotations

import torch
import torchvision

from core.models import build_model

torch.set_num_threads(1)


def test_torchvision_resnet_from_local_state_dict(tmp_path):
    torch.manual_seed(2)
    net = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "r18.pth")
    model = build_model("resnet18", num_classes=1000, pretrained=tmp_path / "r18.pth").eval()
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(model.normalize(x)), atol=1e-5, rtol=1e-5)
