"""The labelling-assets job fills the workspace cache so a model over the page's live-rendering limit
(> 5 M parameters) shows its feature attacks on the Features page (issue 12)."""
from __future__ import annotations

import pytest
import torch

from tests.dashboard.app_helpers import open_app, texts


@pytest.fixture(scope="module")
def big_model_workspace(tmp_path_factory):
    from core.audit.pipeline import run_discovery
    from core.data import build_dataset
    from core.features.extract import extract_splits
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.workspace import Workspace

    torch.set_num_threads(1)
    ws = Workspace(tmp_path_factory.mktemp("big"))
    build_dataset(ws, "colored-mnist", "cm", seed=0, n_train=60, n_val=20, n_test=20)
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, widths=(16, 384, 1536))
    n = sum(p.numel() for p in model.parameters())
    assert n > 5_000_000
    save_workspace_model(ws, "big", model, dataset="cm")
    extract_splits(ws, "cm", "big", "all", device="cpu")
    run_discovery(ws, "cm", "big", split="train", device="cpu")
    return ws


def test_attacks_appear_after_the_job(big_model_workspace):
    from core.features.jobs import labelling_assets_job

    ws = big_model_workspace
    at = open_app(str(ws.root), "features")
    at.number_input(key="features_k").set_value(1).run()
    at.radio(key="features_mode").set_value("feature attacks").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "not rendered yet" in texts(at.info) and "5 M parameters" in texts(at.info)
    assert not ws.path("cache/attacks").exists()                    # nothing rendered in the page

    seen = []
    out = labelling_assets_job(ws, {"dataset": "cm", "model": "big", "classes": [0], "k": 1, "device": "cpu",
                                    "batch_size": 8}, lambda f, m="": seen.append(f))
    assert out["attacks"] == out["planned_attacks"] == 3 and out["overlays"] == 6
    assert seen and seen[-1] == 1.0

    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "not rendered yet" not in texts(at.info)
    assert len(list(ws.path("cache/attacks").rglob("*.png"))) == 3
    at.radio(key="features_mode").set_value("activation maps").run()
    assert "not rendered yet" not in texts(at.info)
    # resumable: a second run renders nothing new and reports the same files
    again = labelling_assets_job(ws, {"dataset": "cm", "model": "big", "classes": [0], "k": 1, "device": "cpu"},
                                 lambda f, m="": None)
    assert again == out
