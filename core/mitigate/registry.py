"""The mitigation methods: their names and descriptions (one ordered table), the registry of run
functions, and config coercion.

* `METHOD_TABLE`: every method SpurAudit offers, in the order the CLI and the dashboard list them, with
  a one-line description (`METHOD_CHOICES` = its names; `method_help()` = name -> description).
* `METHODS` / `register_method`: the registry ``name -> run function``. Method modules register
  themselves when imported (`core.mitigate` imports them all). Every run function has the signature
  ``run_xxx(data, *, base_model, config, seed=0, device="auto", progress=None)`` and returns a
  `core.mitigate.data.MitigationResult`.
* `get_method` / `coerce_config` / `check_config`: a run function that also takes its config as a
  plain mapping (CLI ``--set`` pairs, job params, dashboard forms), converted by
  `core.config.config_from_mapping` (unknown keys listed, values type-checked, ``validate()`` run).
"""
from __future__ import annotations

import functools
import typing
from dataclasses import dataclass, is_dataclass
from typing import Any, Callable, Mapping

from core.config import config_from_mapping
from core.errors import check_choice
from core.mitigate.data import MitigationResult


@dataclass(frozen=True)
class MethodInfo:
    """One offered method: its registry ``name`` and a one-line ``description`` (shown as help)."""

    name: str
    description: str


#: the methods offered to users, in display order (the registry may hold more, e.g. test stand-ins)
METHOD_TABLE: tuple[MethodInfo, ...] = (
    MethodInfo("head-tuning", "low-spuriosity head tuning: retrain only the linear head on each class's "
                              "least-spurious images"),
    MethodInfo("error-tuning", "error tuning: retrain the head on misclassified images (the paper's baseline)"),
    MethodInfo("dcwp", "DCWP: learn weight masks that prune the bias (GCE mining + Gumbel masks)"),
    MethodInfo("ffw", "FFW: prune weights carrying bias information (needs bias labels or mined ones)"),
    MethodInfo("jtt", "JTT: upweight the errors of an early-stopped model and retrain"),
    MethodInfo("mrm", "MRM: mask-based retraining"),
    MethodInfo("erm", "ERM: plain retraining from scratch (reference)"),
)

#: the names of `METHOD_TABLE`, in its order (what the CLI offers)
METHOD_CHOICES: tuple[str, ...] = tuple(m.name for m in METHOD_TABLE)


def method_help() -> dict[str, str]:
    """``{name: one-line description}`` of `METHOD_TABLE`, in its order (the dashboard's help)."""
    return {m.name: m.description for m in METHOD_TABLE}


RunFn = Callable[..., MitigationResult]
METHODS: dict[str, RunFn] = {}


def register_method(name: str) -> Callable[[RunFn], RunFn]:
    """Decorator adding a run function to `METHODS` under ``name`` (a later registration replaces)."""

    def deco(fn: RunFn) -> RunFn:
        METHODS[name] = fn
        return fn

    return deco


def get_method(name: str) -> RunFn:
    """The run function registered as ``name`` (`SpurAuditError` listing the registered ones otherwise).

    The returned callable also accepts ``config`` as a plain mapping (from the CLI's ``--set``, a job's
    JSON params or the dashboard): it is turned into the method's config dataclass, nested dataclass
    fields from nested mappings, and unknown keys raise `SpurAuditError` listing the valid ones.
    """
    check_choice("mitigation method", name, list(METHODS))
    fn = METHODS[name]

    @functools.wraps(fn)
    def run(data, *, config=None, **kwargs):
        return fn(data, config=coerce_config(fn, config, method=name), **kwargs)

    return run


def _config_class(fn: RunFn) -> type | None:
    """The dataclass named in ``fn``'s ``config`` annotation (``XConfig | None`` -> XConfig)."""
    try:
        hint = typing.get_type_hints(fn).get("config")
    except Exception:  # unresolvable annotations: leave the config as given
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and is_dataclass(candidate):
            return candidate
    return None


def coerce_config(fn: RunFn, config: Any, *, method: str = "") -> Any:
    """A mapping config -> the dataclass ``fn`` expects (`core.config.config_from_mapping`); a dataclass,
    None or a function without a config dataclass passes through unchanged."""
    if config is None or is_dataclass(config) or not isinstance(config, dict):
        return config
    cls = _config_class(fn)
    if cls is None:
        return config
    return config_from_mapping(cls, dict(config), what=method)


def check_config(method: str, config: Mapping[str, Any] | None) -> None:
    """Raise `SpurAuditError` now if ``config`` is not a valid config of ``method`` (unknown keys,
    out-of-range values), so a bad option fails before any data is loaded or run recorded."""
    fn = get_method(method)
    if config:
        coerce_config(fn, dict(config), method=method)


__all__ = ["MethodInfo", "METHOD_TABLE", "METHOD_CHOICES", "method_help", "RunFn", "METHODS", "register_method",
           "get_method", "coerce_config", "check_config"]
