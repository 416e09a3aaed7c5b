"""A small workspace for the tests of workspace runs (runner, job kinds, CLI): biased-mnist 200/100/100 and a
small_cnn trained for 20 full-batch Adam steps, registered as dataset "bm" and model "cnn"."""
from __future__ import annotations

import torch

from core.data import build_dataset, load_manifest
from core.mitigate.data import MitigationData
from core.models.checkpoints import save_workspace_model
from core.models.registry import build_model
from core.workspace import Workspace


def small_workspace(root) -> Workspace:
    ws = Workspace(root)
    build_dataset(ws, "biased-mnist", "bm", rho=0.95, n_train=200, n_val=100, n_test=100)
    data = MitigationData.from_manifest(load_manifest(ws, "bm"))
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, widths=(8, 16, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_workspace_model(ws, "cnn", model.eval(), dataset="bm")
    return ws
