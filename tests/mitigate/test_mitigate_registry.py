"""The method table and the registry (core/mitigate/registry.py): one ordered list of offered methods, run
functions registered by their modules, mapping configs coerced to the method's dataclass."""
from dataclasses import dataclass

import pytest

import core.mitigate  # noqa: F401  (imports every method module: they register themselves)
from core.errors import SpurAuditError
from core.mitigate.ffw import FFWConfig
from core.mitigate.registry import (METHOD_CHOICES, METHOD_TABLE, METHODS, check_config, coerce_config, get_method,
                                    method_help, register_method)


def test_the_table_lists_every_offered_method_once_in_display_order():
    assert METHOD_CHOICES == ("head-tuning", "error-tuning", "dcwp", "ffw", "jtt", "mrm", "erm")
    assert len(set(METHOD_CHOICES)) == len(METHOD_TABLE)
    assert all(m.description and "\n" not in m.description for m in METHOD_TABLE)
    assert list(method_help()) == list(METHOD_CHOICES)
    assert method_help()["ffw"].startswith("FFW: prune weights carrying bias information")


def test_every_offered_method_is_registered_by_importing_the_package():
    assert set(METHOD_CHOICES) <= set(METHODS)


def test_get_method_coerces_mapping_configs_and_refuses_unknown_names_and_keys():
    with pytest.raises(SpurAuditError, match="unknown mitigation method 'nope'"):
        get_method("nope")
    fn = METHODS["ffw"]
    assert isinstance(coerce_config(fn, {"gamma": "3"}, method="ffw"), FFWConfig)
    assert coerce_config(fn, {"gamma": "3"}, method="ffw").gamma == 3.0
    cfg = FFWConfig()
    assert coerce_config(fn, cfg) is cfg and coerce_config(fn, None) is None
    with pytest.raises(SpurAuditError, match="unknown ffw option"):
        check_config("ffw", {"not_an_option": 1})
    check_config("ffw", None)


def test_a_registered_function_without_a_config_dataclass_gets_its_config_as_given(monkeypatch):
    seen = {}

    @dataclass
    class Result:
        config: object

    def run_plain(data, *, base_model=None, config=None, seed=0, device="cpu", progress=None):
        seen["config"] = config
        return Result(config)

    monkeypatch.setitem(METHODS, "plain-test", run_plain)
    assert register_method("plain-test")(run_plain) is run_plain
    get_method("plain-test")(None, config={"a": 1})
    assert seen["config"] == {"a": 1}
