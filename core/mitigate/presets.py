"""Presets as data: named option sets stored as JSON under ``assets/presets/`` and read through one
function each (the CLI, the benchmarks and the dashboard all call these, never the files).

* `load_preset(name)`: the parsed ``assets/presets/<name>.json`` (a fresh dict on every call).
* `ffw_presets()`: the FFW variants, ``{preset name: FFWConfig options}`` (``ffw.json``), each checked
  against `core.mitigate.ffw_gates.FFWConfig`.
* `ffw_variants()`: ``{form label: preset name}`` of the variants forms offer (the dashboard's choice).

The demo's sizes and budgets (``demo.json``) are read by `core.demo.demo_settings`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.mitigate.ffw_gates import FFWConfig

PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "presets"


def load_preset(name: str) -> dict[str, Any]:
    """The JSON object stored in ``assets/presets/<name>.json``; `SpurAuditError` naming the presets
    that exist when there is no such file, or saying where the JSON is broken."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
        raise SpurAuditError(f"no preset file {name!r} in {PRESET_DIR}; known: {', '.join(known) or 'none'}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpurAuditError(f"preset file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpurAuditError(f"preset file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _ffw_entries() -> dict[str, dict[str, Any]]:
    entries = load_preset("ffw").get("presets") or {}
    for name, entry in entries.items():
        config_from_mapping(FFWConfig, entry.get("options") or {}, what=f"ffw preset {name}")
    return entries


def ffw_presets() -> dict[str, dict[str, Any]]:
    """``{preset name: FFWConfig options}`` in file order: "unstructured" and "structured" (the paper's
    gates per weight / per bottleneck neuron), "structured-refit" (+ head re-fit) and "rank-refit"
    (bias-ranked neurons + head re-fit). A run's config is ``{**ffw_presets()[name], **overrides}``."""
    return {name: dict(entry.get("options") or {}) for name, entry in _ffw_entries().items()}


def ffw_variants() -> dict[str, str]:
    """``{label: preset name}`` of the FFW presets forms offer, in file order (e.g.
    ``"gates per weight (paper)" -> "unstructured"``)."""
    return {str(entry["label"]): name for name, entry in _ffw_entries().items() if entry.get("offered")}


__all__ = ["PRESET_DIR", "load_preset", "ffw_presets", "ffw_variants"]
