"""Job adapters of the rare-pattern toolkit: job params → the config dataclass → one call.

``JOB_KINDS`` maps a job kind to ``fn(ws, params, progress) -> dict`` (JSON-able); `core.jobs` collects
it (the dashboard's "Rare patterns" page launches these kinds):

* ``rare-sweep``: params = `core.rare.sweep.SweepConfig` fields (``device`` included) → `run_sweep`;
* ``rare-canary``: params = `core.rare.canary.CanaryConfig` fields → `run_canary`.

Unknown or ill-typed params are refused by `core.config.config_from_mapping` before anything runs.
"""
from __future__ import annotations

from typing import Callable

from core.config import config_from_mapping
from core.progress import ProgressFn
from core.rare.canary import CanaryConfig, run_canary
from core.rare.sweep import SweepConfig, run_sweep
from core.serialize import to_plain
from core.workspace import Workspace


def sweep_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind ``rare-sweep``."""
    res = run_sweep(ws, config_from_mapping(SweepConfig, params, what="rare-sweep"), progress=progress)
    return {"run_id": res.run_id, "cells_run": res.cells_run, "cells_skipped": res.cells_skipped,
            "cells_total": res.cells_total}


def canary_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind ``rare-canary``."""
    res = run_canary(ws, config_from_mapping(CanaryConfig, params, what="rare-canary"), progress=progress)
    return to_plain({"run_id": res.run_id, "learned_n": res.learned_n, "stopped_early": res.stopped_early},
                    nan_as_none=True)


JOB_KINDS: dict[str, Callable[[Workspace, dict, ProgressFn], dict]] = {
    "rare-sweep": sweep_job,
    "rare-canary": canary_job,
}


__all__ = ["JOB_KINDS", "sweep_job", "canary_job"]
