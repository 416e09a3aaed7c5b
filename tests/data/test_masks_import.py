"""Object masks at import (issue 11): ``--mask-col`` for CSV, ``--mask-dir`` for ImageFolder, bad
mask rows listed with their reason (and skipped on request)."""
import json

import numpy as np
import pytest
from PIL import Image

from core.cli import main as cli_main
from core.data import add_dataset_from, load_manifest
from core.errors import SpurAuditError
from core.workspace import Workspace


def _image_tree(root, n=4, classes=("a", "b")):
    rows = []
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
            rows.append((f"{c}/{i}.png", c))
    return rows


def _mask(path, box):
    m = np.zeros((8, 8), np.uint8)
    m[box] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)


def test_csv_mask_column_is_read_and_bad_masks_named(tmp_path):
    rows = _image_tree(tmp_path / "img")
    lines = ["file,y,mask"]
    for k, (rel, c) in enumerate(rows):
        mrel = f"masks/{rel}"
        if k != 3:  # row 3 names a mask that does not exist
            _mask(tmp_path / "img" / mrel, (slice(2, 6), slice(2, 6)))
        lines.append(f"{rel},{c},{mrel}")
    (tmp_path / "img" / "list.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(SpurAuditError, match="missing mask file masks/a/3.png"):
        add_dataset_from(ws, "d", "csv", tmp_path / "img" / "list.csv", path_col="file", label_col="y",
                         mask_col="mask")
    code = cli_main(["dataset", "add", "d", "--workspace", str(ws.root), "--from", "csv",
                     str(tmp_path / "img" / "list.csv"), "--path-col", "file", "--label-col", "y",
                     "--mask-col", "mask", "--skip-bad", "--json"])
    assert code == 0
    man = load_manifest(ws, "d")
    assert len(man) == 7 and "mask_path" in man.df.columns
    m = man.load_mask(0)
    assert m.shape == (8, 8) and m.sum() == 16 and m[3, 3] and not m[0, 0]
    skipped = ws.path("datasets/d/skipped.csv").read_text()
    assert "missing mask file masks/a/3.png" in skipped
    with pytest.raises(SpurAuditError, match="no column.*mask_col='nope'"):
        add_dataset_from(ws, "e", "csv", tmp_path / "img" / "list.csv", path_col="file", label_col="y",
                         mask_col="nope")


def test_imagefolder_mask_dir(tmp_path, capsys):
    rows = _image_tree(tmp_path / "img")
    for rel, _ in rows:
        _mask(tmp_path / "masks" / rel, (slice(0, 4), slice(0, 8)))
    ws = Workspace(tmp_path / "ws")
    code = cli_main(["dataset", "add", "f", "--workspace", str(ws.root), "--from", "imagefolder",
                     str(tmp_path / "img"), "--mask-dir", str(tmp_path / "masks"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 8
    man = load_manifest(ws, "f")
    assert all(man.load_mask(i).sum() == 32 for i in range(len(man)))
    assert man.summary()["splits"]["train"]["with_mask"] == int((man.df["split"] == "train").sum())
    (tmp_path / "masks" / "b" / "2.png").unlink()
    with pytest.raises(SpurAuditError, match="missing mask file"):
        add_dataset_from(ws, "g", "imagefolder", tmp_path / "img", mask_dir=tmp_path / "masks")
    # a mask folder inside the image root is not a class
    rows = _image_tree(tmp_path / "img2")
    for rel, _ in rows:
        _mask(tmp_path / "img2" / "masks" / rel, (slice(0, 4), slice(0, 8)))
    rec = add_dataset_from(ws, "h", "imagefolder", tmp_path / "img2", mask_dir=tmp_path / "img2" / "masks")
    assert rec.class_names == ["a", "b"]
    code = cli_main(["dataset", "add", "x", "--workspace", str(ws.root), "--from", "celeba", str(tmp_path),
                     "--mask-dir", str(tmp_path / "masks")])
    assert code == 2 and "--mask-dir does not apply to --from celeba" in capsys.readouterr().err


def test_waterbirds_mask_dir(tmp_path):
    root = tmp_path / "wb"
    lines = ["img_filename,y,place,split"]
    for i in range(8):
        y, place = i % 2, (i // 2) % 2
        rel = f"{i:03d}.Bird/img_{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(root / rel)
        _mask(tmp_path / "segs" / rel.replace(".jpg", ".png"), (slice(1, 5), slice(1, 5)))
        lines.append(f"{rel},{y},{place},{i % 3}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace(tmp_path / "ws")
    add_dataset_from(ws, "wb", "waterbirds", root, mask_dir=tmp_path / "segs")
    man = load_manifest(ws, "wb")
    assert len(man) == 8 and all(man.load_mask(i).sum() == 16 for i in range(8))
    assert man.df["mask_path"].iat[0].startswith("/")          # a mask folder outside the root: absolute
