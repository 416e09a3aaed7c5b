"""One home for turning engine values into plain Python: JSON for the workspace, the CLI and job
results, and the dict/list/scalar/tensor trees that a ``weights_only=True`` checkpoint can hold.

* `json_default` is the strict ``default=`` hook of ``json.dumps`` used by the store: numpy scalars and
  arrays, paths and dataclasses become JSON; anything else raises ``TypeError`` (a workspace record
  never silently stores ``repr`` text).
* `to_plain` converts a whole tree (mappings, sequences, dataclasses, numpy, tensors, paths) for
  callers that must not fail: what it cannot convert becomes ``str(value)``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def json_default(value: Any) -> Any:
    """``json.dumps(obj, default=json_default)``: numpy scalars/arrays, ``Path`` and dataclasses;
    ``TypeError`` for anything else."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def _is_tensor(value: Any) -> bool:
    # torch is not imported here (this module sits at the bottom of the layer order and must stay
    # light); a tensor is recognised by its type's module.
    return type(value).__module__.startswith("torch") and hasattr(value, "tolist") and hasattr(value, "numel")


def to_plain(value: Any, *, nan_as_none: bool = False, summarize_over: int | None = None,
             keep_tensors: bool = False) -> Any:
    """``value`` as dicts (string keys), lists, str/int/float/bool/None (and tensors with
    ``keep_tensors``), recursively.

    Args:
        nan_as_none: NaN floats become None (strict JSON; run metrics use it).
        summarize_over: arrays/tensors with more elements than this become ``"<array (shape)>"`` /
            ``"<tensor (shape)>"`` instead of a list (None: always a list).
        keep_tensors: keep torch tensors as they are (checkpoints loaded with ``weights_only=True``).
    Anything else becomes ``str(value)``.
    """
    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
            return int(v)
        if isinstance(v, (float, np.floating)):
            f = float(v)
            return None if nan_as_none and math.isnan(f) else f
        if isinstance(v, np.bool_):
            return bool(v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return plain(dataclasses.asdict(v))
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.ndarray):
            if summarize_over is not None and v.size > summarize_over:
                return f"<array {v.shape}>"
            return plain(v.tolist())
        if _is_tensor(v):
            if keep_tensors:
                return v
            if summarize_over is not None and v.numel() > summarize_over:
                return f"<tensor {tuple(v.shape)}>"
            return plain(v.tolist())
        if isinstance(v, Path):
            return str(v)
        return str(v)

    return plain(value)


__all__ = ["json_default", "to_plain"]
