"""Presets as data (core/mitigate/presets.py): the FFW variants of assets/presets/ffw.json."""
import json

import pytest

from core.errors import SpurAuditError
from core.mitigate import presets
from core.mitigate.ffw_gates import FFWConfig
from core.mitigate.presets import ffw_presets, ffw_variants, load_preset


def test_ffw_presets_are_the_named_variants():
    assert ffw_presets() == {
        "unstructured": {"structured": False},
        "structured": {"structured": True},
        "structured-refit": {"structured": True, "refit_head": True},
        "rank-refit": {"structured": True, "structured_rule": "bias-rank", "refit_head": True},
    }
    for options in ffw_presets().values():
        FFWConfig.from_dict(options)
    first = ffw_presets()
    first["structured"]["gamma"] = 1.0          # a caller's change never leaks into the next read
    assert "gamma" not in ffw_presets()["structured"]


def test_ffw_variants_are_what_forms_offer():
    assert ffw_variants() == {"gates per weight (paper)": "unstructured",
                              "gates per bottleneck neuron (paper)": "structured",
                              "bias-ranked neurons + head re-fit": "rank-refit"}


def test_load_preset_names_the_files_that_exist_and_refuses_broken_ones(tmp_path, monkeypatch):
    with pytest.raises(SpurAuditError, match="known: demo, ffw"):
        load_preset("nope")
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    (tmp_path / "ffw.json").write_text(json.dumps({"presets": {"bad": {"options": {"gama": 1}}}}))
    with pytest.raises(SpurAuditError, match="unknown ffw preset bad option"):
        ffw_presets()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SpurAuditError, match="not valid JSON"):
        load_preset("broken")
