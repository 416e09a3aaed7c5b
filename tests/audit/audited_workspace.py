"""The audited workspace shared (one per test module) by the pipeline, job-adapter and CLI tests: tiny
digits-on-textures (with object masks), an untrained small CNN (seeded), the whole audit with its report;
and the same data and CNN before any audit step (`unaudited_workspace`)."""
from __future__ import annotations

from pathlib import Path

import torch

from core.data import build_dataset
from core.models.checkpoints import save_workspace_model
from core.models.registry import build_model
from core.report import run_audit
from core.workspace import Workspace


def build_audited_workspace(root: Path) -> tuple[Workspace, dict]:
    """(workspace, the summary `core.report.run_audit` returned) for dataset "tex", model "cnn", k = 3."""
    torch.manual_seed(0)
    ws = Workspace(root)
    build_dataset(ws, "digits-on-textures", "tex", n_train=100, n_val=60, n_test=40, size=32,
                  digit_size=(16, 24), rho=0.95)
    model = build_model("small_cnn", num_classes=10, widths=(8, 16, 16))
    save_workspace_model(ws, "cnn", model, dataset="tex")
    out = run_audit(ws, "tex", "cnn", k=3, device="cpu")
    return ws, out


def unaudited_workspace(root: Path) -> Workspace:
    """Dataset "tex" (digits-on-textures with object masks, 60/40/20 images) and model "cnn" (an untrained
    seeded small CNN, widths 8/8/8), no audit step run."""
    torch.manual_seed(0)
    ws = Workspace(root)
    build_dataset(ws, "digits-on-textures", "tex", n_train=60, n_val=40, n_test=20, size=32,
                  digit_size=(16, 24), rho=0.95)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 8, 8)), dataset="tex")
    return ws
