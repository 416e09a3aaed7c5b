"""The ImageNet path through the CLI on a fabricated copy in Salient ImageNet's own layout: an ImageFolder
with wnid class folders and train/val split folders (JPEGs at photo sizes), the MTurk feature-labels CSV
(``Input.class_index``, ``Input.feature_index``, ``Answer.main/separate/background``), the soft mask folders
(``<wnid>/feature_<idx>/cams/<image>.jpeg`` beside ``images/`` as released, and the flat
``<wnid>/feature_<idx>/<image>.png``), a fabricated robustness-library checkpoint (random ResNet-50
weights, the library's key layout) -> dataset add -> model register robust-resnet50 -> extract through
the photo pipeline -> discover -> label import --format salient-imagenet (the answers in the released
file's shape, classes mapped by wnid; then the masks:
preview, the ambiguity of file names found in train/ and val/, import with --mask-split train) -> rank ->
gaps -> sensitivity --mask-from salient (Salient ImageNet's noise test on the masked core / spurious
regions) -> study. The checkpoint keeps its 1,000-class head restricted to the copy's 4 wnids
(``--head-classes``), whose ImageNet rows are the answers CSV's class indices. The commands are the README's,
with small paths. Not covered: the numbers themselves (random weights): the test checks counts and that every
step ran on the right images."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.data.synthetic.photo_folder import wnid, write_photo_folder
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
    # the checkpoint's 1,000 outputs (LOC_synset_mapping.txt): the copy's wnids at ImageNet-like rows 100 + c,
    # the class indices the answers CSV below uses; the registered head keeps those rows
    mapping = tmp_path / "LOC_synset_mapping.txt"
    ids = [f"n9{i:07d}" for i in range(1000)]
    for c in range(4):
        ids[100 + c] = wnid(c)
    mapping.write_text("".join(f"{cid} fabricated class {i}\n" for i, cid in enumerate(ids)))
    _cli(capsys, "model", "register", "robust", "--arch", "robust-resnet50", "--pretrained", str(ckpt),
         "--dataset", "imnet", "--head-classes", str(mapping), "--workspace", ws)
    out = _cli(capsys, "extract", "--dataset", "imnet", "--model", "robust", "--split", "all", "--image-size", "32",
               "--num-workers", "1", "--batch-size", "16", "--device", "cpu", "--workspace", ws)
    assert {f["split"]: f["dim"] for f in out["feature_sets"]}["train"] == 2048
    disc = _cli(capsys, "discover", "--dataset", "imnet", "--model", "robust", "--k", "3", "--workspace", ws)
    top = disc.get("top_features") or disc.get("features")
    # the answers CSV in the released shape (mturk_results/discover_spurious_features.csv): 5 workers per
    # (class, top feature), feature 0 of each class spurious; class indices are ImageNet's (here 100 + c, not the
    # copy's), so classes must come from Input.wordnet_id; one more wnid is not in the copy (skipped, counted)
    feats = _top_features(ws)
    answers = tmp_path / "discover_spurious_features.csv"
    with answers.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["WorkerId", "Input.wordnet_id", "Input.class_index", "Input.feature_index", "Input.feature_rank",
                    "Answer.main", "Answer.confidence", "Answer.reasons"])
        for c, fs in enumerate(feats + [[7, 8, 9]]):
            for rank, f in enumerate(fs):
                for worker in range(5):
                    spurious = rank == 0 and worker < 4
                    w.writerow([str(10 + worker), wnid(c), 100 + c, f, rank + 1,
                                "background" if spurious else "main_object", "4.0", "fabricated"])
    assert top is not None or feats
    imp = _cli(capsys, "label", "import", "--dataset", "imnet", "--model", "robust", str(answers),
               "--format", "salient-imagenet", "--workspace", ws)
    assert imp["written"] == 4 * 3 * 5 and imp["answers"]["mapped_by"] == "wordnet_id"
    assert imp["answers"]["skipped_answers"] == 15 and imp["answers"]["classes"] == 4
    # the mask folders: feature rank r of class c on its train images r..r+2 (so spurious rank 0 and core
    # ranks 1-2 cover different images); class 0 in the released layout (cams/ beside images/), the others flat
    masks = tmp_path / "salient_imagenet_dataset"
    expected = _write_salient_masks(masks, ws, feats)
    pre = _cli(capsys, "label", "import", "--dataset", "imnet", "--model", "robust", "--format", "salient-imagenet",
               "--masks", str(masks), "--preview", "--workspace", ws)
    assert pre["masks"]["ambiguous"] > 0 and not pre["masks"]["unmatched"]   # train/ and val/ share file names
    assert pre["masks"]["pairs_not_discovered"] == 0
    imp = _cli(capsys, "label", "import", "--dataset", "imnet", "--model", "robust", "--format", "salient-imagenet",
               "--masks", str(masks), "--mask-split", "train", "--mask-side", "16", "--workspace", ws)
    assert imp["written"] == 0 and imp["masks"]["stored"] == expected["files"]
    assert imp["masks"]["unreadable"] == 0 and imp["masks"]["mismatched"] == 0
    _cli(capsys, "rank", "--dataset", "imnet", "--model", "robust", "--split", "val", "--workspace", ws)
    sens = _cli(capsys, "sensitivity", "--dataset", "imnet", "--model", "robust", "--split", "train",
                "--mask-from", "salient", "--image-size", "32", "--device", "cpu", "--workspace", ws)
    n = {r["mask_source"]: r["n"] for r in sens["summary"] if r["corruption"] == "noise"}
    assert n == {"salient_core": expected["core_images"], "salient_spurious": expected["spurious_images"]}
    assert all(0 < r["mask_area"] < 1 for r in sens["summary"])
    gaps = _cli(capsys, "gaps", "--dataset", "imnet", "--model", "robust", "--split", "val", "--n-boot", "50",
                "--workspace", ws)
    assert gaps
    study = _cli(capsys, "study", "--dataset", "imnet", "--ranking-model", "robust", "--split", "val",
                 "--models", f"again=robust-resnet50@{ckpt}", "--image-size", "32", "--num-workers", "1",
                 "--batch-size", "16", "--device", "cpu", "--n-boot", "50", "--workspace", ws)
    assert [m["model"] for m in study["models"]] == ["robust", "again"]
    assert study["models"][0]["source"] == "feature store logits"
    assert study["models"][1]["source"] == "predicted (logits only)"


def _write_salient_masks(masks: Path, ws: str, feats: list[list[int]]) -> dict:
    """Soft masks (a Gaussian blob at the image's own size) for feature rank r of class c on the class's train
    images r..r+2; returns the number of files and of distinct images under core / spurious features."""
    import numpy as np  # noqa: PLC0415 - only this helper draws masks
    from PIL import Image  # noqa: PLC0415

    from core.data import load_manifest  # noqa: PLC0415 - reads the dataset the CLI added
    from core.workspace import Workspace  # noqa: PLC0415

    man = load_manifest(Workspace(ws), "imnet")
    train = man.split("train").df
    files, core, spurious = 0, set(), set()
    for c, fs in enumerate(feats):
        wnid = man.class_names[c]
        paths = sorted(train.path[train.label == c])
        for rank, f in enumerate(fs):
            folder = masks / wnid / f"feature_{f}"
            folder = folder / "cams" if c == 0 else folder
            folder.mkdir(parents=True, exist_ok=True)
            for rel in paths[rank:rank + 3]:
                with Image.open(man.root / rel) as im:
                    w, h = im.size
                yy, xx = np.mgrid[0:h, 0:w]
                blob = np.exp(-(((xx - w * (0.3 + 0.2 * rank)) / (0.2 * w)) ** 2 + ((yy - h / 2) / (0.2 * h)) ** 2))
                stem = Path(rel).stem
                Image.fromarray((255 * blob).astype(np.uint8)).save(folder / (f"{stem}.jpeg" if c == 0 else f"{stem}.png"))
                files += 1
                (spurious if rank == 0 else core).add((c, stem))
        if c == 0:
            (masks / wnid / f"feature_{fs[0]}" / "images").mkdir(exist_ok=True)   # the released layout's copies
    return {"files": files, "core_images": len(core), "spurious_images": len(spurious)}


def _top_features(ws: str) -> list[list[int]]:
    from core.audit.artifacts import load_discovery  # noqa: PLC0415 - reads what the CLI step saved
    from core.workspace import Workspace  # noqa: PLC0415

    return load_discovery(Workspace(ws), "imnet", "robust").top_features.tolist()
