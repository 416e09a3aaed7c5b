"""`python -m core extract` on a real (tiny) manifest dataset and AuditModel (the "extract" job kind is
tested in tests/jobs with the other job subprocesses)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import main
from core.data import load_manifest
from core.features import load_features
from core.models import load_model
from core.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))
from _standin import make_toy_workspace  # noqa: E402


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return make_toy_workspace(tmp_path_factory.mktemp("cli") / "ws")


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`python -m core ARGS` in this process (the job test in tests/jobs covers the subprocess path)."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_cli_extract_all_splits_json(ws: Workspace, capsys: pytest.CaptureFixture) -> None:
    code, stdout = _run(capsys, "extract", "--dataset", "toy", "--model", "cnn", "--split", "all", "--batch-size", "7",
                        "--device", "cpu", "--workspace", str(ws.root), "--json")
    assert code == 0
    result = json.loads(stdout)
    assert [(f["split"], f["n"], f["dim"], f["num_classes"]) for f in result["feature_sets"]] == \
        [("train", 20, 8, 3), ("val", 10, 8, 3)]

    model = load_model(ws.get_model("cnn").checkpoint)
    split = load_manifest(ws, "toy").split("val")
    x = torch.stack([split.to_dataset()[i][0] for i in range(len(split))])
    fs = load_features(ws, "toy", "cnn", "val")
    with torch.no_grad():
        np.testing.assert_allclose(fs.features.astype(np.float32), model.features(x).numpy(), rtol=2e-3, atol=1e-3)
        np.testing.assert_allclose(fs.logits, model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert np.array_equal(fs.labels, split.labels)  # rows follow the manifest split order (ascending sample_id)
    assert len(fs.manifest) == fs.n

    code, stdout = _run(capsys, "extract", "--dataset", "toy", "--model", "nope", "--workspace", str(ws.root), "--json")
    assert code == 2 and "known models: cnn" in json.loads(stdout)["error"]
