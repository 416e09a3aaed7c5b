"""Manifest: storage round trip, split views, lazy images, torch Dataset, load_tensors, validation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.data.manifest import Manifest
from core.errors import SpurAuditError

torch.set_num_threads(1)


def _make(tmp_path: Path, n: int = 12, size: int = 8, with_mask: bool = True) -> Manifest:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = i % 3
        arr = np.full((size, size, 3), 20 * i, np.uint8)
        arr[0, 0] = (label * 100, 7, 9)
        rel = f"img/{i:03d}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(arr).save(tmp_path / rel)
        row = {"sample_id": 100 + (n - i),  # ids not in file order, to test sorting
               "path": rel, "label": label, "split": ["train", "val", "test"][i % 3 if i < 9 else 0],
               "bias": int(rng.integers(0, 2)), "group": 0}
        if with_mask:
            mask = np.zeros((size, size), np.uint8)
            mask[: i % size + 1, :2] = 255
            (tmp_path / "masks").mkdir(exist_ok=True)
            Image.fromarray(mask).save(tmp_path / f"masks/{i:03d}.png")
            row["mask_path"] = f"masks/{i:03d}.png"
        rows.append(row)
    df = pd.DataFrame(rows)
    df["aligned"] = (df["bias"] == (df["label"] % 2)).astype("boolean")
    df.loc[3, "aligned"] = pd.NA
    return Manifest(df, root=tmp_path, class_names=["cat", "dog", "eel"], attrs={"kind": "test", "x": [1, 2]})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip(tmp_path, fmt):
    m = _make(tmp_path)
    path = m.save(tmp_path / f"manifest.{fmt}")
    back = Manifest.load(path)
    assert back.root == tmp_path.resolve()
    assert back.class_names == ["cat", "dog", "eel"]
    assert back.bias_columns == ["bias"]
    assert back.attrs == {"kind": "test", "x": [1, 2]}
    assert back.df["sample_id"].tolist() == m.df["sample_id"].tolist()
    assert back.df["class_name"].tolist() == [["cat", "dog", "eel"][i % 3] for i in range(12)]
    assert back.df["aligned"].isna().tolist() == m.df["aligned"].isna().tolist()
    assert back.df["aligned"].dtype == "boolean"
    assert np.array_equal(back.labels, m.labels) and back.labels.dtype == np.int64
    assert np.array_equal(back.bias, m.bias)
    assert back.load_mask(4).sum() == 5 * 2


def test_load_missing_file(tmp_path):
    with pytest.raises(SpurAuditError, match="does not exist"):
        Manifest.load(tmp_path / "nope.parquet")


def test_split_views_sorted_and_properties(tmp_path):
    m = _make(tmp_path)
    tr = m.split("train")
    assert tr.df["split"].eq("train").all()
    assert tr.sample_ids.tolist() == sorted(tr.sample_ids.tolist())
    assert len(tr) + len(m.split("val")) + len(m.split("test")) == len(m)
    al = m.aligned
    assert al.dtype == bool and al[3] == False  # noqa: E712 (unknown -> False)
    with pytest.raises(SpurAuditError, match="valid choices"):
        m.split("holdout")
    s = m.summary()
    assert s["splits"]["train"]["n"] == len(tr)
    assert "conflict_fraction" in s["splits"]["train"]


def test_images_dataset_and_tensors(tmp_path):
    m = _make(tmp_path).split("train")
    img = m.load_image(0)
    assert img.mode == "RGB" and img.size == (8, 8)
    ds = m.to_dataset()
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == len(m)
    x, y, i = ds[1]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y == int(m.labels[1]) and i == 1
    # the pixel encodes the label: red channel = 100 * label
    assert round(float(x[0, 0, 0]) * 255) == 100 * y
    flipped = m.to_dataset(transform=lambda t: t.flip(-1))
    assert torch.equal(flipped[1][0], x.flip(-1))
    xs, ys = m.load_tensors()
    assert xs.shape == (len(m), 3, 8, 8) and xs.dtype == torch.float32 and ys.dtype == torch.int64
    assert torch.equal(xs[1], x) and ys.tolist() == m.labels.tolist()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 8, 8)
    seen = []
    m.load_tensors(progress=lambda f, msg: seen.append(f))
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_load_tensors_mixed_sizes_needs_size(tmp_path):
    m = _make(tmp_path, with_mask=False)
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "img/002.png")
    with pytest.raises(SpurAuditError, match="size="):
        m.load_tensors()
    xs, _ = m.load_tensors(size=(4, 4))
    assert xs.shape == (12, 3, 4, 4)


def test_validate_reports_bad_rows_and_skip(tmp_path):
    m = _make(tmp_path, with_mask=False)
    (tmp_path / "img/001.png").unlink()                       # missing
    (tmp_path / "img/002.png").write_bytes(b"not a png")       # unreadable
    m.df.loc[4, "path"] = "../outside.png"                     # outside root
    m.df.loc[5, "label"] = 7                                   # unknown label
    with pytest.raises(SpurAuditError) as err:
        m.copy().validate()
    msg = str(err.value)
    for frag in ("img/001.png", "missing", "img/002.png", "unreadable", "../outside.png", "outside",
                 "unknown label 7", "skip_bad=True"):
        assert frag in msg, frag
    bad = m.validate(skip_bad=True)
    assert len(bad) == 4 and len(m) == 8
    assert {b["path"] for b in bad} == {"img/001.png", "img/002.png", "../outside.png", "img/005.png"}
    assert m.skipped == bad
    assert m.validate() == []  # clean now


def test_validate_lists_at_most_five(tmp_path):
    m = _make(tmp_path, with_mask=False)
    for i in range(8):
        (tmp_path / f"img/{i:03d}.png").unlink()
    with pytest.raises(SpurAuditError, match="and 3 more"):
        m.copy().validate()


def test_empty_class_error_and_drop(tmp_path):
    m = _make(tmp_path, with_mask=False)
    m.df = m.df[m.df["label"] != 1].reset_index(drop=True)
    with pytest.raises(SpurAuditError, match="empty class.*dog"):
        m.copy().validate()
    bad = m.validate(skip_bad=True)
    assert m.class_names == ["cat", "eel"] and sorted(set(m.labels.tolist())) == [0, 1]
    assert any("dog" in b["reason"] for b in bad)


def test_constructor_checks_columns(tmp_path):
    with pytest.raises(SpurAuditError, match="lacks column"):
        Manifest(pd.DataFrame({"path": ["a.png"]}), root=tmp_path)
    with pytest.raises(SpurAuditError, match="bias column"):
        Manifest(pd.DataFrame({"path": ["a.png"], "label": [0], "split": ["train"]}), root=tmp_path,
                 bias_columns=["bias_x"])
