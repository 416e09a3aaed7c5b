"""Presets as data (core/mitigate/presets.py): the FFW variants of assets/presets/ffw.json, and the demo's
settings of assets/presets/demo.json (read by core.demo.demo_settings through `load_preset`)."""
import json

import pytest

from core.demo import DemoConfig, demo_settings
from core.errors import SpurAuditError
from core.mitigate import presets
from core.mitigate.ffw_gates import FFWConfig
from core.mitigate.presets import ffw_presets, ffw_variants, load_preset
from core.mitigate.registry import check_config


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


def test_quick_and_full_demo_settings():
    quick, full = DemoConfig(quick=True), DemoConfig(quick=False)
    assert quick.textures_sizes == {"n_train": 300, "n_val": 150, "n_test": 150} and full.textures_sizes == {}
    assert quick.cmnist_sizes == {"n_train": 600, "n_val": 200, "n_test": 200} and full.cmnist_sizes == {}
    assert (quick.cmnist_epochs, full.cmnist_epochs) == (1, 8)
    assert (quick.textures_probe, full.textures_probe) == ({"epochs": 5}, {})
    assert quick.comparison_methods == full.comparison_methods == ["erm", "dcwp"]
    assert quick.method_configs == {"erm": {"iterations": 20, "eval_every": 10},
                                    "dcwp": {"prune_iterations": 20, "finetune_iterations": 20,
                                             "pretrain_iterations": 20, "eval_every": 10,
                                             "mining": {"iterations": 20}}}
    assert full.method_configs == {"erm": {"iterations": 300, "augment_shift": 2},
                                   "dcwp": {"prune_iterations": 300, "finetune_iterations": 200, "augment_shift": 2,
                                            "mining": {"iterations": 300, "batch_size": 64}}}
    for quick_run in (True, False):
        for method, config in demo_settings(quick_run)["method_configs"].items():
            check_config(method, config)
