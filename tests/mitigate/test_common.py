"""Shared mitigation plumbing (core/mitigate/common.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.errors import SpurAuditError
from core.mitigate.common import (IndexSampler, MitigationData, evaluate_model, lambda_up_for_fraction,
                                  oversample_weights)
from core.models.checkpoints import export_masked_model, load_masked_model

from _cue import cue_data, cue_model


def test_weighted_sampler_realises_the_requested_oversampling():
    n, lam = 200, 8.0
    mined = torch.zeros(n, dtype=torch.bool)
    mined[:10] = True
    sampler = IndexSampler(n, 100, weights=oversample_weights(n, mined, lam), seed=0)
    counts = torch.bincount(torch.cat([sampler.next() for _ in range(600)]), minlength=n).double()
    ratio = counts[mined].mean() / counts[~mined].mean()
    assert ratio == pytest.approx(lam, rel=0.08)
    # expected share of mined draws: 10*8 / (10*8 + 190)
    assert float(counts[mined].sum() / counts.sum()) == pytest.approx(80 / 270, abs=0.01)


def test_uniform_sampler_covers_every_sample_once_per_epoch_and_is_seeded():
    s = IndexSampler(50, 10, seed=3)
    epoch = torch.cat([s.next() for _ in range(5)])
    assert sorted(epoch.tolist()) == list(range(50))
    a = torch.cat([IndexSampler(50, 7, seed=1).next() for _ in range(3)])
    b = torch.cat([IndexSampler(50, 7, seed=1).next() for _ in range(3)])
    assert torch.equal(a, b)


def test_oversample_weights_accepts_indices_and_validates():
    w = oversample_weights(5, np.array([1, 3]), 4.0)
    assert w.tolist() == [1.0, 4.0, 1.0, 4.0, 1.0]
    with pytest.raises(SpurAuditError):
        oversample_weights(5, np.array([7]), 4.0)
    with pytest.raises(SpurAuditError):
        oversample_weights(5, np.array([1]), 0.0)


def test_lambda_up_table():
    assert [lambda_up_for_fraction(f) for f in (0.005, 0.01, 0.02, 0.05)] == [80, 50, 30, 10]
    assert lambda_up_for_fraction(0.009) == 50 and lambda_up_for_fraction(0.2) == 10


def test_mitigation_data_validates_and_fills_defaults():
    x = torch.rand(4, 3, 8, 8)
    d = MitigationData(x_train=x, y_train=torch.tensor([0, 1, 0, 1]))
    assert d.num_classes == 2 and d.bias_train.tolist() == [-1] * 4 and not d.aligned_train.any()
    assert d.conflict_fraction() is None and not d.has_split("val")
    with pytest.raises(SpurAuditError, match="y_train"):
        MitigationData(x_train=x, y_train=torch.tensor([0, 1]))
    with pytest.raises(SpurAuditError, match="val"):
        d.split("val")
    d2 = MitigationData(x_train=x, y_train=torch.tensor([0, 1, 0, 1]), bias_train=torch.tensor([0, 1, 1, 1]))
    assert d2.aligned_train.tolist() == [True, True, False, True]
    assert d2.conflict_fraction() == pytest.approx(0.25)


def test_from_manifest_loads_splits(tmp_path):
    from core.data.manifest import Manifest

    rows = []
    for i in range(6):
        arr = np.zeros((8, 8, 3), dtype=np.uint8)
        arr[..., i % 3] = 40 * (i + 1)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        rows.append({"sample_id": i, "path": f"{i}.png", "label": i % 2, "split": ["train", "val", "test"][i // 2],
                     "bias": i % 3, "aligned": bool(i % 2 == i % 3)})
    m = Manifest(pd.DataFrame(rows), root=tmp_path, class_names=["a", "b"])
    d = MitigationData.from_manifest(m)
    assert d.x_train.shape == (2, 3, 8, 8) and d.x_train.dtype == torch.float32
    assert d.y_val.tolist() == [0, 1] and d.bias_test.tolist() == [1, 2]
    assert d.class_names == ["a", "b"] and d.bias_names == ["0", "1", "2"]
    assert d.aligned_train.tolist() == [True, True]
    assert float(d.x_train[1, 1].max()) == pytest.approx(80 / 255, abs=1e-6)


def test_evaluate_model_and_masked_export_roundtrip(tmp_path):
    from core.models.gates import apply_masks

    torch.set_num_threads(1)
    data = cue_data(n_train=40, n_val=40, n_test=40)
    model = cue_model().eval()
    masks = {name: torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5
             for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    apply_masks(model, masks)
    metrics = evaluate_model(model, data, "val", device="cpu")
    for key in ("accuracy", "unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy",
                "worst_group_accuracy", "bias_decodability"):
        assert key in metrics
    torch.save(export_masked_model(model), tmp_path / "m.pt")
    loaded = load_masked_model(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.allclose(loaded(data.x_val), model(data.x_val), atol=1e-5)
        assert float((loaded.head.weight * (~masks["head"])).abs().sum()) == 0.0
    assert evaluate_model(loaded, data, "val", device="cpu", decodability=False)["accuracy"] == metrics["accuracy"]


def test_random_shift_translates_each_image_and_is_seeded():
    from core.mitigate.common import random_shift

    x = torch.zeros(64, 2, 9, 9)
    x[:, :, 4, 4] = 1.0                      # one bright pixel in the centre of every image
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, generator=g)
    assert out.shape == x.shape and torch.equal(x[:, :, 4, 4], torch.ones(64, 2))   # input untouched
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert out.sum() == x.sum()                                 # nothing falls off with a centred pixel
    assert int((rows - 4).abs().max()) <= 2 and int((cols - 4).abs().max()) <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10     # offsets vary per image
    assert torch.equal(out[:, 0], out[:, 1])                    # channels move together
    again = random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert random_shift(x, 0) is x
