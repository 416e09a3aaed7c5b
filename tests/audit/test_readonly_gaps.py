"""Issue 15, item 3: ``gaps`` works on a read-only workspace — the same numbers, nothing recorded."""
from __future__ import annotations

import json

import pytest
import torch

from tests.workspace._cli import cli, no_traceback, read_only, shared_tmp, tree_state


def test_gaps_on_a_read_only_workspace():
    from core.audit.pipeline import run_audit
    from core.data import build_dataset
    from core.models import build_model, save_workspace_model
    from core.workspace import Workspace

    with shared_tmp() as tmp:
        torch.manual_seed(0)
        ws = Workspace(tmp / "ws")
        build_dataset(ws, "digits-on-textures", "tex", n_train=60, n_val=40, n_test=20, size=32,
                      digit_size=(16, 24), rho=0.95)
        save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 16, 16)), dataset="tex")
        run_audit(ws, "tex", "cnn", k=3, device="cpu")
        writable = json.loads(cli("gaps", "--dataset", "tex", "--model", "cnn", "--split", "val", "--n-boot", "50",
                                  "--json", workspace=ws.root).stdout)
        runs_before = len(ws.list_runs())
        before = tree_state(ws.root)
        with read_only(ws.root) as possible:
            if not possible:
                pytest.skip("no way to run as a user who cannot write here")
            proc = cli("gaps", "--dataset", "tex", "--model", "cnn", "--split", "val", "--n-boot", "50", "--json",
                       workspace=ws.root, as_nobody=True)
        assert proc.returncode == 0 and no_traceback(proc), proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        assert out["run_id"] is None and out["pooled"]["cnn"]["gap"] == pytest.approx(writable["pooled"]["cnn"]["gap"])
        assert len(ws.list_runs()) == runs_before and tree_state(ws.root) == before
