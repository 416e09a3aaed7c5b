"""Salient ImageNet mask folders (`core.audit.salient_masks`, `core.audit.label_import`): matching by wnid and
image stem, what is reported instead of raised, the layout errors, the stored centre-square geometry and the
read side. A 2-class wnid ImageFolder with train/ and val/ (the same file names in both splits, so stems are
ambiguous until the split is given), seeded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.audit.label_import import LabelImportConfig, preview_label_import, run_label_import
from core.audit.salient_masks import (full_image_mask, input_masks, load_salient_masks, scan_salient_masks)
from core.data import add_dataset_from, load_manifest
from core.data.synthetic.photo_folder import write_photo_folder
from core.errors import SpurAuditError
from core.workspace import Workspace

SIDE = 16


@pytest.fixture()
def copy(tmp_path: Path) -> dict:
    root = tmp_path / "imagenet"
    write_photo_folder(root / "train", n_images=16, n_classes=2, min_side=40, max_side=60, seed=0)
    write_photo_folder(root / "val", n_images=16, n_classes=2, min_side=40, max_side=60, seed=1)
    ws = Workspace(tmp_path / "ws")
    add_dataset_from(ws, "imnet", "imagefolder", root)        # carves a test split out of train/
    ws.add_model("m", dataset="imnet", arch="robust-resnet50", checkpoint_rel="models/m/model.pt", config={},
                 metrics={})                                   # a record only: nothing here loads the model
    train = load_manifest(ws, "imnet").split("train").df
    stems = {c: sorted(Path(p).stem for p in train.path[train.label == c]) for c in (0, 1)}
    assert len(stems[0]) >= 4 and stems[1]
    return {"ws": ws, "root": root, "masks": tmp_path / "salient", "stems": stems}


def _image_size(root: Path, rel: str) -> tuple[int, int]:
    with Image.open(root / rel) as im:
        return im.size


def _left_half(w: int, h: int) -> Image.Image:
    a = np.zeros((h, w), np.uint8)
    a[:, : w // 2] = 255
    return Image.fromarray(a)


def _write_masks(c: dict) -> None:
    """class 0 (n00000000), feature 3: flat layout; class 1 feature 5: the released layout (cams/ + images/);
    plus an unmatched mask, a text file, an unknown class folder, an unreadable file, a mismatched shape."""
    m, root = c["masks"], c["root"]
    s0, s1 = c["stems"][0], c["stems"][1][0]
    f3 = m / "n00000000" / "feature_3"
    f3.mkdir(parents=True)
    for stem in s0[:2]:                                     # train images of class 0
        _left_half(*_image_size(root, f"train/n00000000/{stem}.JPEG")).save(f3 / f"{stem}.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(f3 / "nosuch.png")          # no such image
    (f3 / "notes.txt").write_text("not a mask")
    (f3 / f"{s0[2]}.png").write_bytes(b"not an image at all")                     # unreadable
    w, h = _image_size(root, f"train/n00000000/{s0[3]}.JPEG")
    Image.fromarray(np.zeros((h, w * 3), np.uint8)).save(f3 / f"{s0[3]}.jpg")     # fits neither geometry
    cams = m / "n00000001" / "feature_5" / "cams"
    cams.mkdir(parents=True)
    (m / "n00000001" / "feature_5" / "images").mkdir()
    top = np.zeros((30, 30), np.uint8)
    top[:15] = 255                                                                  # a square mask: top half
    Image.fromarray(top).save(cams / f"{s1}.jpeg")
    Image.fromarray(top).save(m / "n00000001" / "feature_5" / "images" / f"{s1}.jpeg")   # ignored
    other = m / "n99999999" / "feature_1"
    other.mkdir(parents=True)
    Image.fromarray(top).save(other / "x.png")


def test_scan_matches_by_wnid_and_stem_and_reports_the_rest(copy):
    _write_masks(copy)
    man = load_manifest(copy["ws"], "imnet")
    scan = scan_salient_masks(copy["masks"], man, splits=["train"], discovered={0: [3], 1: [7]})
    assert sorted(scan.matched.stem) == sorted(copy["stems"][0][:4] + copy["stems"][1][:1])
    assert set(scan.matched.split) == {"train"}
    assert scan.unmatched == 1 and scan.unmatched_examples == ["n00000000/feature_3/nosuch.png"]
    assert scan.ignored_files == 1                                    # notes.txt; images/ is not listed
    assert scan.unknown_classes == ["n99999999"] and scan.n_unknown_class_files == 1
    assert scan.n_files == 7 and scan.n_class_folders == 3 and scan.n_feature_folders == 3
    assert scan.pairs_not_discovered == 1 and scan.not_discovered_examples == [[1, 5]]
    rows = man.split("train").df.reset_index(drop=True)
    for r in scan.matched.itertuples():                              # row = position in the split
        assert Path(rows.path[r.row]).stem == r.stem and rows.label[r.row] == r.class_index
    # without the split the names that exist in train and val of the class are ambiguous; the fix is named
    val = man.split("val").df
    in_val = {(int(c), Path(p).stem) for c, p in zip(val.label, val.path)}
    twice = sum((int(r.class_index), r.stem) in in_val for r in scan.matched.itertuples())
    assert twice >= 1
    both = scan_salient_masks(copy["masks"], man)
    assert both.ambiguous == twice and len(both.matched) == len(scan.matched) - twice
    assert any("--mask-split" in line for line in both.lines())


def test_layout_errors_name_the_problem(copy, tmp_path):
    man = load_manifest(copy["ws"], "imnet")
    with pytest.raises(SpurAuditError, match="does not exist"):
        scan_salient_masks(tmp_path / "nowhere", man)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpurAuditError, match="no class folders"):
        scan_salient_masks(empty, man)
    (empty / "n00000000").mkdir()
    (empty / "n00000000" / "some.png").write_bytes(b"")
    with pytest.raises(SpurAuditError, match="holds feature_<idx>"):
        scan_salient_masks(empty, man)
    (empty / "n00000000" / "feature_2").mkdir()
    with pytest.raises(SpurAuditError, match="one class's folder; give its parent"):
        scan_salient_masks(empty / "n00000000", man)
    foreign = tmp_path / "foreign" / "n12345678" / "feature_1"
    foreign.mkdir(parents=True)
    with pytest.raises(SpurAuditError, match="is a class of the dataset"):
        scan_salient_masks(tmp_path / "foreign", man)


def test_import_stores_centre_squares_and_counts_what_it_skips(copy):
    _write_masks(copy)
    ws = copy["ws"]
    cfg = LabelImportConfig(dataset="imnet", model="m", format="salient-imagenet", masks=str(copy["masks"]),
                            mask_split="train", mask_side=SIDE)
    preview = preview_label_import(ws, cfg)
    assert preview["ok"] and preview["masks"]["matched"] == 5
    assert load_salient_masks(ws, "imnet", "m") is None                 # a preview writes nothing
    out = run_label_import(ws, cfg)
    res = out["masks"]
    assert (res["stored"], res["unreadable"], res["mismatched"]) == (3, 1, 1)
    assert res["unreadable_examples"][0].startswith(f"n00000000/feature_3/{copy['stems'][0][2]}.png")
    art = load_salient_masks(ws, "imnet", "m")
    assert art.masks.shape[1:] == (SIDE, SIDE) and art.side == SIDE
    assert art.pairs().set_index(["class_index", "feature"]).n.to_dict() == {(0, 3): 2, (1, 5): 1}
    for r in art.pair(0, 3).itertuples():                 # the image's left half -> the square's left half
        sq = art.masks[r.mask].astype(int)
        assert sq[:, : SIDE // 2 - 1].min() > 200 and sq[:, SIDE // 2 + 1:].max() < 55
    sq = art.masks[art.pair(1, 5)["mask"].iloc[0]].astype(int)       # a square mask is the centre square
    assert sq[: SIDE // 2 - 1].min() > 200 and sq[SIDE // 2 + 1:].max() < 55
    rows, union = art.union("train", {0: [3], 1: [5]})
    assert rows.tolist() == sorted(art.index.row.tolist()) and union.shape == (3, SIDE, SIDE)
    assert art.union("val", {0: [3]})[0].size == 0
    # a second import replaces the first whole
    run_label_import(ws, LabelImportConfig(dataset="imnet", model="m", format="salient-imagenet",
                                           masks=str(copy["masks"]), mask_split="train", mask_side=8))
    assert load_salient_masks(ws, "imnet", "m").side == 8


def test_mask_geometry_onto_the_model_input_and_the_whole_image():
    sq = np.zeros((1, 32, 32), np.uint8)
    sq[0, :, :16] = 255                                             # left half of the centre square
    inp = input_masks(sq, image_size=28)                            # resize 32, crop the central 28/32
    assert inp.shape == (1, 28, 28) and inp.dtype == np.float32
    assert inp[0, :, :12].min() > 0.99 and inp[0, :, 16:].max() < 0.01
    full = full_image_mask(sq[0], 20, 40)                           # centre square = columns 10..29
    assert full.shape == (20, 40)
    assert full[:, :10].max() == 0 and full[:, 30:].max() == 0
    assert full[:, 11:19].min() > 0.99 and full[:, 21:29].max() < 0.01


def test_answers_outside_the_dataset_are_refused_and_bad_csvs_named(copy, tmp_path):
    ws = copy["ws"]
    bad = tmp_path / "answers.csv"
    bad.write_text("WorkerId,Input.class_index,Input.feature_index,Answer.main,Answer.separate,Answer.background\n"
                   "W0,0,3,true,false,false\nW0,999,3,false,false,true\n")
    cfg = LabelImportConfig(dataset="imnet", model="m", file=str(bad), format="salient-imagenet")
    assert not preview_label_import(ws, cfg)["ok"]
    with pytest.raises(SpurAuditError, match="outside the dataset's 2 classes"):
        run_label_import(ws, cfg)
    assert len(ws.labels("imnet", "m")) == 0
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(SpurAuditError, match="not a Salient ImageNet answers CSV"):
        run_label_import(ws, LabelImportConfig(dataset="imnet", model="m", file=str(wrong), format="salient-imagenet"))
    with pytest.raises(SpurAuditError, match="does not exist"):
        run_label_import(ws, LabelImportConfig(dataset="imnet", model="m", file=str(tmp_path / "no.csv")))
    with pytest.raises(SpurAuditError, match="salient-imagenet format"):
        LabelImportConfig(dataset="imnet", model="m", masks="x", format="csv").validate()


def test_cli_names_layout_errors_and_previews_without_writing(copy, tmp_path, capsys):
    import json

    from core.cli import main

    _write_masks(copy)
    ws = str(copy["ws"].root)
    base = ["label", "import", "--dataset", "imnet", "--model", "m", "--workspace", ws]
    empty = tmp_path / "empty_masks"
    empty.mkdir()
    assert main([*base, "--format", "salient-imagenet", "--masks", str(empty)]) == 2
    assert "no class folders" in capsys.readouterr().err
    assert main([*base, "--masks", str(copy["masks"])]) == 2                 # csv format with masks
    assert "salient-imagenet format" in capsys.readouterr().err
    assert main([*base, "--format", "salient-imagenet", "--masks", str(copy["masks"]), "--mask-split", "train",
                 "--preview", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["masks"]["matched"] == 5 and out["masks"]["unmatched"] == 1
    assert load_salient_masks(copy["ws"], "imnet", "m") is None


def test_released_answers_csv_maps_classes_by_wnid(copy, tmp_path):
    """The released file's shape: one categorical Answer.main, ImageNet class indices (not the copy's) and
    Input.wordnet_id; the raw MTurk form (boolean columns) keeps the CSV's index."""
    ws = copy["ws"]
    released = tmp_path / "discover_spurious_features.csv"
    released.write_text(
        "WorkerId,Input.wordnet_id,Input.class_index,Input.feature_index,Input.feature_rank,Answer.main,"
        "Answer.confidence,Answer.reasons\n"
        "52,n00000001,388,59,1,background,4.0,water behind it\n"
        "22,n00000001,388,59,1,separate_object,3.0,a hand\n"
        "7,n00000001,388,60,2,main_object,5.0,its head\n"
        "9,n00000001,388,60,2,not sure,1.0,\n"
        "3,n01440764,0,59,1,main_object,4.0,not a class of the copy\n")
    out = run_label_import(ws, LabelImportConfig(dataset="imnet", model="m", file=str(released),
                                                 format="salient-imagenet"))
    assert out["written"] == 4 and out["answers"]["mapped_by"] == "wordnet_id"
    assert (out["answers"]["skipped_answers"], out["answers"]["skipped_examples"]) == (1, ["n01440764"])
    labels = ws.labels("imnet", "m").sort_values("id")
    assert labels.class_index.tolist() == [1, 1, 1, 1]
    assert labels.answer.tolist() == ["spurious_background", "spurious_object", "core", "unsure"]
    assert "confidence=4.0" in labels.note.iloc[0] and "answer 'not sure'" in labels.note.iloc[3]
    raw = tmp_path / "raw.csv"
    raw.write_text("WorkerId,Input.class_index,Input.feature_index,Answer.main.on,Answer.separate.on,"
                   "Answer.background.on\nW1,1,5,false,false,true\n")
    out = run_label_import(ws, LabelImportConfig(dataset="imnet", model="m", file=str(raw), format="salient-imagenet"))
    assert out["written"] == 1 and out["answers"]["mapped_by"] == "class_index"
