"""Workspace-facing dataset functions of `core.data` (build, add, load, the tensor cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.data import add_dataset_from, build_dataset, load_manifest
from core.errors import SpurAuditError
from core.workspace import Workspace

torch.set_num_threads(1)
SMALL = dict(n_train=100, n_val=20, n_test=20)


def test_build_dataset_registers_and_caches(tmp_path):
    ws = Workspace(tmp_path / "ws")
    seen = []
    rec = build_dataset(ws, "colored-mnist", "cm", seed=0, conflict=0.05,
                        progress=lambda f, m: seen.append(f), **SMALL)
    assert rec.root == ws.path("datasets/cm") and rec.manifest_path == ws.path("datasets/cm/manifest.parquet")
    assert rec.source == "colored-mnist" and rec.bias_columns == ["bias"]
    assert rec.params["conflict_fraction"]["train"] == pytest.approx(0.05)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert not [p for p in ws.path("datasets").iterdir() if p.name.startswith(".")]  # no temp folders left
    m = load_manifest(ws, "cm")
    assert len(m) == 140 and m.attrs["kind"] == "colored-mnist"
    tr = m.split("train")
    x1, y1 = tr.load_tensors()
    cached = list(ws.path("datasets/cm/cache").glob("tensors-*.npy"))
    assert len(cached) == 1
    # a cached second call returns the same tensors without decoding the PNGs
    (ws.path("datasets/cm") / tr.df["path"].iat[0]).unlink()
    x2, y2 = load_manifest(ws, "cm").split("train").load_tensors()
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (100, 3, 28, 28)
    with pytest.raises(SpurAuditError, match="already exists"):
        build_dataset(ws, "colored-mnist", "cm", **SMALL)
    rec2 = build_dataset(ws, "biased-mnist", "cm", replace=True, rho=0.9, **SMALL)
    assert rec2.source == "biased-mnist"
    assert not ws.path("datasets/cm/cache").exists()  # replaced folder: old cache gone
    assert load_manifest(ws, "cm").attrs["kind"] == "biased-mnist"


def test_failed_build_leaves_nothing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(SpurAuditError):
        build_dataset(ws, "colored-mnist", "bad", conflict=2.0, **SMALL)
    assert not ws.has_dataset("bad")
    assert not ws.path("datasets/bad").exists()
    assert not [p for p in ws.path("datasets").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(SpurAuditError, match="valid choices"):
        build_dataset(ws, "svhn", "x")
    with pytest.raises(SpurAuditError, match=r"unknown builder 'colored-mnist' option\(s\) \['rho'\].*conflict, sigma"):
        build_dataset(ws, "colored-mnist", "x", rho=0.9)
    with pytest.raises(SpurAuditError, match=r"\['label_col'\].*target, bias_attr"):
        add_dataset_from(ws, "x", "celeba", tmp_path, label_col="y")


def _folder_with_bad(root: Path) -> None:
    for c in ("a", "b"):
        for i in range(6):
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((5, 5, 3), i, np.uint8)).save(root / c / f"{i}.png")
    (root / "b" / "2.png").write_bytes(b"junk")


def test_add_dataset_from_with_skipped(tmp_path):
    ws = Workspace(tmp_path / "ws")
    data = tmp_path / "folder"
    _folder_with_bad(data)
    with pytest.raises(SpurAuditError, match=r"b/2\.png"):
        add_dataset_from(ws, "f", "imagefolder", data)
    assert not ws.has_dataset("f")
    rec = add_dataset_from(ws, "f", "imagefolder", data, skip_bad=True, seed=3)
    assert rec.root == data.resolve() and rec.params["skipped"] == 1 and rec.class_names == ["a", "b"]
    skipped = pd.read_csv(ws.path("datasets/f/skipped.csv"))
    assert skipped["path"].tolist() == ["b/2.png"] and "unreadable" in skipped["reason"].iat[0]
    m = load_manifest(ws, "f")
    assert len(m) == 11 and m.root == data.resolve()
    assert m.to_dataset()[0][0].shape == (3, 5, 5)
