"""`python -m core model train|register|list|show` on a tiny Colored-MNIST workspace."""
from __future__ import annotations

import json

import pytest
import torch

from core.cli import main
from core.commands.model import _ints
from core.data import build_dataset
from core.errors import SpurAuditError
from core.models import build_model, load_workspace_model
from core.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    build_dataset(Workspace(root), "colored-mnist", "cm", seed=0, n_train=120, n_val=40, n_test=40)
    return root


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, out


def test_train_list_show_and_reload(ws_dir, capsys):
    code, out = _run(capsys, "model", "train", "m1", "--dataset", "cm", "--arch", "small_cnn", "--widths", "8,16,16",
                     "--epochs", "2", "--batch-size", "32", "--seed", "3", "--device", "cpu",
                     "--workspace", str(ws_dir), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["model"] == "m1" and result["arch"] == "small_cnn" and len(result["history"]) == 2
    for key in ("test_accuracy", "test_aligned_accuracy", "test_conflicting_accuracy", "val_accuracy"):
        assert 0.0 <= result["metrics"][key] <= 1.0

    ws = Workspace(ws_dir)
    rec = ws.get_model("m1")
    assert rec.dataset == "cm" and rec.checkpoint.is_file() and rec.checkpoint_rel == "models/m1/model.pt"
    assert rec.config["train"]["epochs"] == 2 and rec.config["model_config"]["widths"] == [8, 16, 16]
    model = load_workspace_model(ws, "m1")
    assert model.config["widths"] == [8, 16, 16] and model.checkpoint_extra["metrics"]["n_train"] == 120

    code, out = _run(capsys, "model", "list", "--workspace", str(ws_dir), "--json")
    assert code == 0 and [m["name"] for m in json.loads(out)["models"]] == ["m1"]
    code, out = _run(capsys, "model", "show", "m1", "--workspace", str(ws_dir), "--json")
    info = json.loads(out)
    assert code == 0 and info["checkpoint_info"]["feature_dim"] == 16 and info["checkpoint_info"]["parameters"] > 0

    # same name again without --replace is a user error (exit 2, JSON error)
    code, out = _run(capsys, "model", "train", "m1", "--dataset", "cm", "--epochs", "1",
                     "--workspace", str(ws_dir), "--json")
    assert code == 2 and "already exists" in json.loads(out)["error"]


def test_train_gce_mlp_and_register(ws_dir, capsys, tmp_path):
    code, out = _run(capsys, "model", "train", "bias", "--dataset", "cm", "--arch", "mlp", "--hidden", "16",
                     "--loss", "gce", "--epochs", "1", "--device", "cpu", "--workspace", str(ws_dir), "--json")
    assert code == 0, out
    assert json.loads(out)["arch"] == "mlp"

    code, out = _run(capsys, "model", "register", "ext", "--arch", "mlp", "--dataset", "cm",
                     "--workspace", str(ws_dir), "--json")
    assert code == 0 and json.loads(out)["num_classes"] == 10 and not json.loads(out)["has_spatial_map"]
    assert load_workspace_model(Workspace(ws_dir), "ext").feature_dim == 100

    torch.save(build_model("small_cnn", num_classes=10, widths=[4, 4, 4]).state_dict(), tmp_path / "sd.pt")
    code, out = _run(capsys, "model", "register", "ext2", "--arch", "small_cnn", "--pretrained", str(tmp_path / "sd.pt"),
                     "--dataset", "cm", "--workspace", str(ws_dir), "--json")
    # small_cnn's default widths differ from the checkpoint's: a clear error naming the mismatch
    assert code == 2 and "shape mismatches" in json.loads(out)["error"]


def test_bad_arch_is_a_user_error(ws_dir, capsys):
    code, out = _run(capsys, "model", "train", "x", "--dataset", "cm", "--arch", "nope", "--epochs", "1",
                     "--workspace", str(ws_dir), "--json")
    assert code == 2 and "valid choices" in json.loads(out)["error"]
    with pytest.raises(SpurAuditError):
        _ints("8,x", "--widths")
