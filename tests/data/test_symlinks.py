"""Issue 15, item 8: dataset paths are confined to the root after resolving symbolic links (a link to an
image or any file outside the root is a bad row), also with ``check_images=False`` (--no-check-images).
Links that stay inside the root are fine."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.loaders import load_csv, load_imagefolder
from core.data.manifest import Manifest
from core.errors import SpurAuditError


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)


@pytest.fixture()
def layout(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "secret"
    for c in ("a", "b"):
        for i in range(4):
            _png(root / c / f"{i}.png", 30 * i)
    _png(outside / "private.png", 200)
    (outside / "hostname.png").write_text("not an image at all")
    os.symlink(outside / "private.png", root / "a" / "link_out.png")
    os.symlink(root / "b" / "0.png", root / "a" / "link_in.png")          # stays inside: allowed
    return root, outside


@pytest.mark.parametrize("check_images", [True, False])
def test_imagefolder_link_outside_root_is_bad(layout, check_images):
    root, outside = layout
    with pytest.raises(SpurAuditError, match="outside the dataset root") as err:
        load_imagefolder(root, check_images=check_images)
    assert "a/link_out.png" in str(err.value)
    m = load_imagefolder(root, check_images=check_images, skip_bad=True)
    assert "a/link_out.png" not in set(m.df["path"]) and "a/link_in.png" in set(m.df["path"])
    assert [s["path"] for s in m.skipped] == ["a/link_out.png"]


@pytest.mark.parametrize("check_images", [True, False])
def test_csv_link_to_a_non_image_outside_root(layout, check_images):
    root, outside = layout
    os.symlink(outside / "hostname.png", root / "b" / "host.png")
    rows = [{"path": f"{c}/{i}.png", "label": c} for c in "ab" for i in range(4)] + [{"path": "b/host.png", "label": "b"}]
    pd.DataFrame(rows).to_csv(root / "t.csv", index=False)
    with pytest.raises(SpurAuditError, match=r"b/host.png \(path outside the dataset root"):
        load_csv(root / "t.csv", check_images=check_images)


def test_linked_folder_outside_root(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        _png(root / "a" / f"{i}.png")
        _png(tmp_path / "elsewhere" / f"{i}.png")
    os.symlink(tmp_path / "elsewhere", root / "b")                     # a whole class folder outside
    df = pd.DataFrame({"path": ["a/0.png", "a/1.png", "a/2.png", "b/0.png"], "label": [0, 0, 0, 1],
                       "split": "train"})
    m = Manifest(df, root=root, class_names=["a", "b"])
    bad = m.validate(skip_bad=True, check_images=False)
    assert [b["path"] for b in bad if b["path"]] == ["b/0.png"]
