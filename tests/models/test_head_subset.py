"""An ImageNet-1k checkpoint registered on a dataset of a few ImageNet classes keeps its head, restricted to
those classes (``model register --head-classes FILE``). The checkpoint is a fabricated robustness-library one
(random ResNet-50 weights, 1,000 outputs); the check is exact: the registered model's logits are the full
model's logits at the dataset classes' rows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.data.synthetic.photo_folder import wnid, write_photo_folder
from core.errors import SpurAuditError
from core.models.head_subset import head_rows_for, read_head_classes, restrict_head
from core.models.registry import build_model
from core.models.workspace_models import register_checkpoint
from core.workspace import Workspace
from tests.models._fabricated import robust_checkpoint

# the checkpoint's 1,000 outputs: wnid-like ids in "LOC_synset_mapping.txt" form, the dataset's 4 classes
# (wnid(0..3)) placed at rows far from 0..3 so that a head left in place would be caught
ROWS = {0: 417, 1: 12, 2: 998, 3: 500}


def _mapping(path: Path) -> Path:
    ids = [f"n9{i:07d}" for i in range(1000)]
    for c, row in ROWS.items():
        ids[row] = wnid(c)
    path.write_text("".join(f"{cid} fabricated class {i}, a name\n" for i, cid in enumerate(ids)))
    return path


@pytest.fixture(scope="module")
def imagenet_subset(tmp_path_factory):
    root = tmp_path_factory.mktemp("subset")
    write_photo_folder(root / "train", n_images=8, n_classes=4, min_side=32, max_side=40, seed=0)
    ckpt = root / "imagenet_l2_3_0.pt"
    torch.save(robust_checkpoint()[0], ckpt)
    return root, ckpt, _mapping(root / "LOC_synset_mapping.txt")


def test_registered_logits_are_the_full_heads_rows_of_the_dataset_classes(imagenet_subset, tmp_path):
    root, ckpt, mapping = imagenet_subset
    ws = Workspace(tmp_path / "ws")
    from core.data import add_dataset_from  # noqa: PLC0415 - the dataset import is not under test

    add_dataset_from(ws, "imnet", "imagefolder", str(root))
    out = register_checkpoint(ws, "robust", dataset="imnet", arch="robust-resnet50", checkpoint=str(ckpt),
                              head_classes=str(mapping))
    assert out["num_classes"] == 4 and out["head_rows"] == [ROWS[c] for c in range(4)]
    full = build_model("robust-resnet50", num_classes=1000, pretrained=str(ckpt)).eval()
    from core.models.checkpoints import load_model  # noqa: PLC0415

    sub = load_model(ws.path("models/robust/model.pt")).eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(sub(x), full(x)[:, out["head_rows"]])
    assert ws.get_model("robust").config["head_rows"] == out["head_rows"]


def test_cli_register_with_head_classes(imagenet_subset, tmp_path, capsys):
    root, ckpt, mapping = imagenet_subset
    ws = str(tmp_path / "ws")
    assert main(["dataset", "add", "imnet", "--from", "imagefolder", str(root), "--workspace", ws, "--json"]) == 0
    capsys.readouterr()
    assert main(["model", "register", "robust", "--arch", "robust-resnet50", "--pretrained", str(ckpt),
                 "--dataset", "imnet", "--head-classes", str(mapping), "--workspace", ws, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["num_classes"] == 4 and out["head_rows"] == [417, 12, 998, 500]
    assert main(["model", "register", "plain", "--arch", "robust-resnet50", "--pretrained", str(ckpt),
                 "--dataset", "imnet", "--workspace", ws]) == 0
    assert "head restricted" not in capsys.readouterr().out


def test_head_classes_errors_name_the_problem(tmp_path):
    with pytest.raises(SpurAuditError, match="does not exist"):
        read_head_classes(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SpurAuditError, match="is empty"):
        read_head_classes(tmp_path / "empty.txt")
    (tmp_path / "twice.txt").write_text("n01 a\nn02 b\nn01 c\n")
    with pytest.raises(SpurAuditError, match="listed twice"):
        read_head_classes(tmp_path / "twice.txt")
    (tmp_path / "bare.txt").write_text("n01\nn02,b\nn03\tc\n")
    assert read_head_classes(tmp_path / "bare.txt") == ["n01", "n02", "n03"]
    with pytest.raises(SpurAuditError, match=r"1 dataset class\(es\) are not among .* 'cat'"):
        head_rows_for(["n02", "cat"], ["n01", "n02", "n03"])
    model = build_model("small_cnn", num_classes=3)
    with pytest.raises(SpurAuditError, match="outside the checkpoint's 3 outputs"):
        restrict_head(model, [0, 3])


def test_head_classes_need_a_dataset_and_a_checkpoint(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "m.txt").write_text("n01\n")
    with pytest.raises(SpurAuditError, match="needs a dataset"):
        register_checkpoint(ws, "m", dataset=None, arch="small_cnn", num_classes=2, head_classes=str(tmp_path / "m.txt"))
