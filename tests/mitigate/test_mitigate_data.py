"""In-memory splits of a mitigation run (core/mitigate/data.py): validation, manifest loading, extra bias."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.data.manifest import Manifest
from core.errors import SpurAuditError
from core.mitigate.data import MitigationData, params_dict


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


def _two_bias_manifest(tmp_path) -> Manifest:
    """6 images, 2 per split; bias columns bias_left (mirrored by ``bias``) and bias_right."""
    rows = []
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 30 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"sample_id": i, "path": f"{i}.png", "label": i % 2, "split": ["train", "val", "test"][i // 2],
                     "bias_left": i % 2, "bias_right": (i + 1) % 3})
    return Manifest(pd.DataFrame(rows), root=tmp_path, class_names=["a", "b"], bias_columns=["bias_left", "bias_right"])


def test_extra_bias_is_a_declared_field_filled_from_further_bias_columns(tmp_path):
    x = torch.rand(4, 3, 8, 8)
    assert MitigationData(x_train=x, y_train=torch.tensor([0, 1, 0, 1])).extra_bias == {}
    m = _two_bias_manifest(tmp_path)
    assert MitigationData.from_manifest(m).extra_bias == {}          # opt-in: the benchmarks read one attribute
    d = MitigationData.from_manifest(m, extra_bias=True)
    assert list(d.extra_bias) == ["bias_right"]                      # bias_left is what `bias` already holds
    assert {s: v.tolist() for s, v in d.extra_bias["bias_right"].items()} == {"train": [1, 2], "val": [0, 1],
                                                                             "test": [2, 0]}
    assert d.bias_train.tolist() == [0, 1]


def test_params_dict_of_a_config_and_extras():
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        a: int = 1

    assert params_dict(Cfg(), seed=3) == {"a": 1, "seed": 3}
    assert params_dict({"b": 2}, seed=0) == {"b": 2, "seed": 0} and params_dict(None) == {}
