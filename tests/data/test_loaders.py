"""Loaders, each on a tiny folder fabricated in that exact on-disk format, including bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.loaders import (get_loader, load_celeba, load_csv, load_disent, load_imagefolder,
                               load_waterbirds, seeded_split)
from core.errors import SpurAuditError


def _png(path: Path, value: int = 0, size: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value % 256, np.uint8)).save(path)


# ---------------------------------------------------------------------------- ImageFolder
def _imagefolder(root: Path, classes=("ant", "bee", "cat"), per=10) -> None:
    for c, name in enumerate(classes):
        for i in range(per):
            _png(root / name / f"{i}.png", 10 * c + i)
    (root / "bee" / "README.txt").write_text("not an image, ignored")


def test_imagefolder_seeded_split(tmp_path):
    _imagefolder(tmp_path)
    m = load_imagefolder(tmp_path, seed=1)
    assert m.class_names == ["ant", "bee", "cat"]
    assert len(m) == 30 and m.root == tmp_path.resolve()
    assert (m.df["class_name"] == m.df["path"].str.split("/").str[0]).all()
    counts = m.df.groupby(["split", "label"]).size()
    assert all(counts[("val", c)] == 1 and counts[("test", c)] == 1 for c in range(3))
    assert "seeded" in m.attrs["split_note"]
    again = load_imagefolder(tmp_path, seed=1)
    assert again.df["split"].tolist() == m.df["split"].tolist()
    other = load_imagefolder(tmp_path, seed=2)
    assert other.df["split"].tolist() != m.df["split"].tolist()
    assert m.split("train").to_dataset()[0][0].shape == (3, 6, 6)


def test_imagefolder_split_folders(tmp_path):
    for split in ("train", "valid", "test"):
        _imagefolder(tmp_path / split, per=3)
    m = load_imagefolder(tmp_path)
    assert sorted(m.df["split"].unique()) == ["test", "train", "val"]
    assert m.class_names == ["ant", "bee", "cat"]
    assert (m.df.loc[m.df.split == "val", "path"].str.startswith("valid/")).all()


def test_imagefolder_bad_input(tmp_path):
    _imagefolder(tmp_path, per=5)
    (tmp_path / "dog").mkdir()                                   # empty class
    with pytest.raises(SpurAuditError, match="empty class.*dog"):
        load_imagefolder(tmp_path)
    (tmp_path / "cat" / "3.png").write_bytes(b"\x89PNG broken")  # unreadable
    with pytest.raises(SpurAuditError, match=r"cat/3\.png \(unreadable"):
        load_imagefolder(tmp_path)
    m = load_imagefolder(tmp_path, skip_bad=True)
    assert m.class_names == ["ant", "bee", "cat"] and len(m) == 14
    reasons = [b["reason"] for b in m.skipped]
    assert any("unreadable" in r for r in reasons) and any("dog" in r for r in reasons)
    with pytest.raises(SpurAuditError, match="does not exist"):
        load_imagefolder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(SpurAuditError, match="no class folders"):
        load_imagefolder(tmp_path / "flat")


# ---------------------------------------------------------------------------- CSV
def _csv_dataset(root: Path, n=12) -> pd.DataFrame:
    rows = []
    for i in range(n):
        _png(root / "pics" / f"{i}.png", i)
        rows.append({"file": f"pics/{i}.png", "y": ["cat", "dog"][i % 2], "bg": ["in", "out"][(i // 2) % 2]
                     if i % 5 else ["out", "in"][i % 2], "part": ["train", "val", "test", "train"][i % 4]})
    return pd.DataFrame(rows)


def test_csv_with_columns(tmp_path):
    table = _csv_dataset(tmp_path)
    table.to_csv(tmp_path / "labels.csv", index=False)
    m = load_csv(tmp_path / "labels.csv", path_col="file", label_col="y", bias_col="bg", split_col="part")
    assert m.class_names == ["cat", "dog"] and len(m) == 12
    assert m.df["split"].tolist() == table["part"].tolist()
    assert m.attrs["bias_names"] == ["in", "out"]
    assert m.bias.tolist() == [["in", "out"].index(v) for v in table["bg"]]
    # aligned = bias equals the class's majority bias value in train
    tr = m.df[m.df.split == "train"]
    for c in (0, 1):
        maj = tr[tr.label == c]["bias"].value_counts().idxmax()
        sub = m.df[m.df.label == c]
        assert (sub["aligned"] == (sub["bias"] == maj)).all()
    assert "group" in m.df.columns


def test_csv_integer_labels_seeded_split_and_absolute_paths(tmp_path):
    rows = []
    for i in range(20):
        _png(tmp_path / "x" / f"{i}.png", i)
        path = str(tmp_path / "x" / f"{i}.png") if i % 2 else f"x/{i}.png"
        rows.append({"path": path, "label": i % 4})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    m = load_csv(tmp_path / "t.csv", seed=0)
    assert m.class_names == ["0", "1", "2", "3"]
    assert not m.df["path"].str.startswith("/").any()
    assert set(m.df["split"]) == {"train", "val", "test"} and "seeded" in m.attrs["split_note"]


def test_csv_bad_input(tmp_path):
    table = _csv_dataset(tmp_path)
    table.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(SpurAuditError, match=r"no column\(s\) label_col='label'.*'file'"):
        load_csv(tmp_path / "labels.csv", path_col="file")
    with pytest.raises(SpurAuditError, match="split_col='phase'"):
        load_csv(tmp_path / "labels.csv", path_col="file", label_col="y", split_col="phase")
    bad = table.copy()
    bad.loc[1, "file"] = "pics/missing.png"
    bad.loc[2, "file"] = "/etc/hostname"
    bad.loc[3, "file"] = "../escape.png"
    bad.loc[4, "y"] = "cow"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SpurAuditError) as err:
        load_csv(tmp_path / "bad.csv", path_col="file", label_col="y", class_names=["cat", "dog"])
    msg = str(err.value)
    assert "4 bad sample(s)" in msg
    for frag in ("unknown label 'cow'", "pics/missing.png (missing image file)", "/etc/hostname (path outside",
                 "../escape.png (path outside", "--skip-bad"):
        assert frag in msg, frag
    m = load_csv(tmp_path / "bad.csv", path_col="file", label_col="y", class_names=["cat", "dog"], skip_bad=True)
    assert len(m) == 8 and len(m.skipped) == 4
    with pytest.raises(SpurAuditError, match="does not exist"):
        load_csv(tmp_path / "none.csv")


# ---------------------------------------------------------------------------- Waterbirds
def _waterbirds(root: Path) -> pd.DataFrame:
    rows = []
    for i in range(16):
        y, place = i % 2, (i // 2) % 2
        f = f"{['001.Albatross', '002.Tern'][y]}/img_{i}.jpg"
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((7, 5, 3), i, np.uint8)).save(root / f)
        rows.append({"img_id": i + 1, "img_filename": f, "y": y, "split": i % 3, "place": place,
                     "place_filename": "/x/y.jpg"})
    table = pd.DataFrame(rows)
    table.to_csv(root / "metadata.csv", index=False)
    return table


def test_waterbirds(tmp_path):
    table = _waterbirds(tmp_path)
    m = load_waterbirds(tmp_path)
    assert m.class_names == ["landbird", "waterbird"] and len(m) == 16
    assert m.df["split"].tolist() == [["train", "val", "test"][s] for s in table["split"]]
    assert m.bias.tolist() == table["place"].tolist()
    assert m.aligned.tolist() == (table["y"] == table["place"]).tolist()
    assert m.df["group"].tolist() == (2 * table["y"] + table["place"]).tolist()
    assert m.load_image(0).size == (5, 7)


def test_waterbirds_bad_input(tmp_path):
    table = _waterbirds(tmp_path)
    table.drop(columns=["place"]).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(SpurAuditError, match=r"lacks column\(s\) \['place'\]"):
        load_waterbirds(tmp_path)
    table.loc[0, "y"] = 5
    table.loc[1, "split"] = 9
    table.to_csv(tmp_path / "metadata.csv", index=False)
    (tmp_path / table.loc[2, "img_filename"]).unlink()
    with pytest.raises(SpurAuditError, match="3 bad sample"):
        load_waterbirds(tmp_path)
    m = load_waterbirds(tmp_path, skip_bad=True)
    assert len(m) == 13 and {b["reason"].split(" ")[0] for b in m.skipped} == {"unknown", "missing"}
    with pytest.raises(SpurAuditError, match="metadata.csv"):
        load_waterbirds(tmp_path / "001.Albatross")


# ---------------------------------------------------------------------------- CelebA
ATTRS = ["5_o_Clock_Shadow", "Blond_Hair", "Male", "Smiling"]


def _celeba(root: Path, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    vals = rng.choice([-1, 1], size=(n, len(ATTRS)))
    lines = [str(n), " ".join(ATTRS)]
    (root / "img_align_celeba").mkdir()
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(np.full((9, 8, 3), i, np.uint8)).save(root / "img_align_celeba" / name)
        lines.append(name + "  " + " ".join(f"{v:2d}" for v in vals[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(f"{i + 1:06d}.jpg {i % 3}" for i in range(n)) + "\n")
    return vals


def test_celeba_default_and_chosen_attributes(tmp_path):
    vals = _celeba(tmp_path)
    m = load_celeba(tmp_path)
    assert m.class_names == ["not_Blond_Hair", "Blond_Hair"]
    assert m.labels.tolist() == (vals[:, 1] == 1).astype(int).tolist()
    assert m.bias.tolist() == (vals[:, 2] == 1).astype(int).tolist()
    assert m.df["split"].tolist() == [["train", "val", "test"][i % 3] for i in range(12)]
    assert m.root == (tmp_path / "img_align_celeba").resolve()
    assert m.aligned is not None and "group" in m.df.columns
    m2 = load_celeba(tmp_path, target="Smiling", bias_attr="5_o_Clock_Shadow")
    assert m2.labels.tolist() == (vals[:, 3] == 1).astype(int).tolist()
    with pytest.raises(SpurAuditError, match="valid choices.*Blond_Hair"):
        load_celeba(tmp_path, target="Bald")


def test_celeba_bad_input(tmp_path):
    _celeba(tmp_path)
    text = (tmp_path / "list_attr_celeba.txt").read_text().splitlines()
    text[3] = text[3].rsplit(" ", 4)[0] + " 1  0  1 -1"          # Blond_Hair = 0 (not ±1)
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(text) + "\n")
    (tmp_path / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(SpurAuditError) as err:
        load_celeba(tmp_path)
    assert "000002.jpg (Blond_Hair=" in str(err.value) and "000005.jpg (missing image file)" in str(err.value)
    m = load_celeba(tmp_path, skip_bad=True)
    assert len(m) == 10 and len(m.skipped) == 2
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(SpurAuditError, match="list_eval_partition.txt"):
        load_celeba(tmp_path)


# ---------------------------------------------------------------------------- DisEnt
def _disent(root: Path, class_subfolders: bool) -> None:
    k = 0
    for folder, n in (("align", 12), ("conflict", 3), ("valid", 6), ("test", 6)):
        for i in range(n):
            label = i % 3
            bias = label if folder == "align" else ((label + 1) % 3 if folder == "conflict" or i % 2 else label)
            sub = f"{label}/" if class_subfolders and folder in ("align", "conflict") else ""
            _png(root / folder / f"{sub}{k:05d}_{label}_{bias}.png", k)
            k += 1


@pytest.mark.parametrize("class_subfolders", [False, True])
def test_disent(tmp_path, class_subfolders):
    _disent(tmp_path, class_subfolders)
    m = load_disent(tmp_path)
    assert len(m) == 27 and m.class_names == ["0", "1", "2"]
    counts = m.df["split"].value_counts().to_dict()
    assert counts == {"train": 15, "val": 6, "test": 6}
    tr = m.split("train")
    assert int((~tr.aligned).sum()) == 3                        # the conflict/ folder
    assert (m.df["aligned"] == (m.df["label"] == m.df["bias"])).all()
    assert m.attrs["folders"] == {"align": 12, "conflict": 3, "valid": 6, "test": 6}
    assert m.attrs["conflict_fraction"]["train"] == pytest.approx(0.2)


def test_disent_without_valid_and_bad_names(tmp_path):
    _disent(tmp_path, False)
    for p in (tmp_path / "valid").iterdir():
        p.unlink()
    (tmp_path / "valid").rmdir()
    m = load_disent(tmp_path, val_fraction=0.2)
    assert (m.df["split"] == "val").sum() == 3 and "seeded" in m.attrs["split_note"]
    _png(tmp_path / "align" / "weird.png")
    _png(tmp_path / "test" / "00099_x_1.png")
    with pytest.raises(SpurAuditError, match=r"align/weird\.png \(file name does not end in _\{label\}_\{bias\}"):
        load_disent(tmp_path)
    m = load_disent(tmp_path, skip_bad=True)
    assert len(m.skipped) == 2 and len(m) == 21
    with pytest.raises(SpurAuditError, match="not a DisEnt-style folder"):
        load_disent(tmp_path / "align")


# ---------------------------------------------------------------------------- helpers
def test_seeded_split_exact_and_registry():
    labels = np.repeat([0, 1], [50, 30])
    s = seeded_split(labels, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert (s == "val").sum() == 8 and (s == "test").sum() == 16
    assert ((s == "test") & (labels == 0)).sum() == 10
    with pytest.raises(SpurAuditError, match="valid choices: celeba, csv, disent, imagefolder, waterbirds"):
        get_loader("coco")
