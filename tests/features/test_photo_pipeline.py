"""The photo input pipeline (issue 14): JPEGs of many sizes decoded, resized and cropped in DataLoader
workers; extraction into the resumable store with it; logits-only predictions that agree with the store."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import add_dataset_from, load_manifest
from core.data.synthetic.photo_folder import write_photo_folder
from core.errors import SpurAuditError
from core.features.extract import extract_splits
from core.features.pipeline import PhotoDataset, PipelineConfig, decode_resize, default_workers, predict_classes
from core.features.store import load_features
from core.models.checkpoints import load_workspace_model, save_workspace_model
from core.models.registry import build_model
from core.workspace import Workspace


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root, n_images=48, n_classes=4, min_side=40, max_side=90, seed=0)
    return root


def test_decode_resize_gives_the_crop_of_any_size(photos) -> None:
    paths = sorted(photos.rglob("*.JPEG"))
    sizes = set()
    for p in paths[:10]:
        with Image.open(p) as im:
            sizes.add(im.size)
        a = decode_resize(p, image_size=32, resize_size=36)
        assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert len(sizes) > 3                                     # the files really differ in size
    ds = PhotoDataset(paths[:3], [0, 1, 2], image_size=32)
    x, y, i = ds[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and (y, i) == (1, 1)
    assert ds.resize_size == 37                               # 32 * 256 / 224
    with pytest.raises(SpurAuditError, match="could not read image"):
        PhotoDataset([photos / "missing.JPEG"], [0])[0]


def test_config_checks_and_default_workers() -> None:
    assert 1 <= default_workers() <= 16
    with pytest.raises(SpurAuditError, match="resize_size"):
        PipelineConfig(image_size=224, resize_size=200).validate()
    with pytest.raises(SpurAuditError, match="amp"):
        PipelineConfig(amp="fp8").validate()


def test_extraction_with_workers_equals_without_and_predictions_match(photos, tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    add_dataset_from(ws, "photos", "imagefolder", photos)
    torch.manual_seed(0)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=4, widths=(8, 16, 16)), dataset="photos")
    rec = extract_splits(ws, "photos", "cnn", ["train"], image_size=32, num_workers=2, batch_size=8, chunk_size=16,
                         device="cpu")[0]
    fs = load_features(ws, "photos", "cnn", "train")
    feats = np.asarray(fs.features).copy()
    assert rec.n == fs.n and feats.shape == (fs.n, 16)
    # the same extraction decoded in the main process gives the same rows
    ws2 = Workspace(tmp_path / "ws2")
    add_dataset_from(ws2, "photos", "imagefolder", photos)
    save_workspace_model(ws2, "cnn", load_workspace_model(ws, "cnn"), dataset="photos")
    extract_splits(ws2, "photos", "cnn", ["train"], image_size=32, num_workers=0, batch_size=8, device="cpu")
    np.testing.assert_array_equal(np.asarray(load_features(ws2, "photos", "cnn", "train").features), feats)
    # logits-only predictions through the pipeline = argmax of the stored logits
    data = PhotoDataset.from_manifest(load_manifest(ws, "photos").split("train"), image_size=32)
    preds = predict_classes(load_workspace_model(ws, "cnn"), data, config=PipelineConfig(image_size=32, batch_size=8,
                                                                                        num_workers=2), device="cpu")
    np.testing.assert_array_equal(preds, fs.preds())
