"""The ImageNet path through the CLI on a fabricated copy in Salient ImageNet's own layout — as far as it
exists: an ImageFolder with wnid class folders and train/val split folders (JPEGs at photo sizes), the
MTurk feature-labels CSV (``Input.class_index``, ``Input.feature_index``, ``Answer.main/separate/
background``), a fabricated robustness-library checkpoint (random ResNet-50 weights, the library's key
layout) -> dataset add -> model register robust-resnet50 -> extract through the photo pipeline ->
discover -> label import --format salient-imagenet -> rank -> gaps -> study. The commands are the
README's, with small paths. Not covered (not implemented): the mask folders ``<wnid>/feature_<idx>/``
and a 1000-class head on a class subset (here the head has the copy's 4 classes)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.data.synthetic.photo_folder import write_photo_folder
from tests.models._fabricated import robust_checkpoint


def _cli(capsys, *args: str) -> dict:
    code = main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    return json.loads(out[-1])


@pytest.mark.slow
def test_fabricated_salient_imagenet_copy_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "imagenet"
    write_photo_folder(root / "train", n_images=24, n_classes=4, min_side=40, max_side=90, seed=0)
    write_photo_folder(root / "val", n_images=24, n_classes=4, min_side=40, max_side=90, seed=1)
    ckpt = tmp_path / "imagenet_l2_3_0.pt"
    torch.save(robust_checkpoint()[0], ckpt)
    ws = str(tmp_path / "ws")
    _cli(capsys, "dataset", "add", "imnet", "--from", "imagefolder", str(root), "--workspace", ws)
    _cli(capsys, "model", "register", "robust", "--arch", "robust-resnet50", "--pretrained", str(ckpt),
         "--dataset", "imnet", "--workspace", ws)
    out = _cli(capsys, "extract", "--dataset", "imnet", "--model", "robust", "--split", "all", "--image-size", "32",
               "--num-workers", "1", "--batch-size", "16", "--device", "cpu", "--workspace", ws)
    assert {f["split"]: f["dim"] for f in out["feature_sets"]}["train"] == 2048
    disc = _cli(capsys, "discover", "--dataset", "imnet", "--model", "robust", "--k", "3", "--workspace", ws)
    top = disc.get("top_features") or disc.get("features")
    # the Salient ImageNet MTurk CSV: 5 workers per (class, top feature); feature 0 of each class spurious
    feats = _top_features(ws)
    answers = tmp_path / "discover_spurious_features.csv"
    with answers.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["WorkerId", "Input.class_index", "Input.feature_index", "Input.feature_rank", "Answer.main",
                    "Answer.separate", "Answer.background", "Answer.reasons"])
        for c, fs in enumerate(feats):
            for rank, f in enumerate(fs):
                for worker in range(5):
                    spurious = rank == 0 and worker < 4
                    w.writerow([f"W{worker}", c, f, rank, str(not spurious).lower(), "false",
                                str(spurious).lower(), "fabricated"])
    assert top is not None or feats
    imp = _cli(capsys, "label", "import", "--dataset", "imnet", "--model", "robust", str(answers),
               "--format", "salient-imagenet", "--workspace", ws)
    assert imp["written"] == 4 * 3 * 5
    _cli(capsys, "rank", "--dataset", "imnet", "--model", "robust", "--split", "val", "--workspace", ws)
    gaps = _cli(capsys, "gaps", "--dataset", "imnet", "--model", "robust", "--split", "val", "--n-boot", "50",
                "--workspace", ws)
    assert gaps
    study = _cli(capsys, "study", "--dataset", "imnet", "--ranking-model", "robust", "--split", "val",
                 "--models", f"again=robust-resnet50@{ckpt}", "--image-size", "32", "--num-workers", "1",
                 "--batch-size", "16", "--device", "cpu", "--n-boot", "50", "--workspace", ws)
    assert [m["model"] for m in study["models"]] == ["robust", "again"]
    assert study["models"][0]["source"] == "feature store logits"
    assert study["models"][1]["source"] == "predicted (logits only)"


def _top_features(ws: str) -> list[list[int]]:
    from core.audit.artifacts import load_discovery  # noqa: PLC0415 - reads what the CLI step saved
    from core.workspace import Workspace  # noqa: PLC0415

    return load_discovery(Workspace(ws), "imnet", "robust").top_features.tolist()
