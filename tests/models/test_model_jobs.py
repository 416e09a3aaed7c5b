"""The ``train`` job kind (`core.models.jobs`) on a tiny Colored-MNIST workspace."""
from __future__ import annotations

import pytest
import torch

from core.data import build_dataset
from core.errors import SpurAuditError
from core.jobs import load_job_kinds
from core.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    build_dataset(Workspace(root), "colored-mnist", "cm", seed=0, n_train=120, n_val=40, n_test=40)
    return root


def test_train_job_kind(ws_dir):
    kinds = load_job_kinds()
    assert "train" in kinds
    seen = []
    out = kinds["train"](Workspace(ws_dir), {"name": "job1", "dataset": "cm", "arch": "small_cnn",
                                             "model_kwargs": {"widths": [4, 8, 8]},
                                             "config": {"epochs": 1, "batch_size": 64}, "device": "cpu"},
                         lambda f, m: seen.append(f))
    assert out["model"] == "job1" and "history" not in out and seen[-1] == 1.0
    assert Workspace(ws_dir).get_model("job1").config["model_config"]["widths"] == [4, 8, 8]
    with pytest.raises(SpurAuditError, match="unknown training option"):
        kinds["train"](Workspace(ws_dir), {"name": "job2", "dataset": "cm", "config": {"epoch": 1}}, lambda f, m: None)
