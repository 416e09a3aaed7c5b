"""Job kinds of the mitigate package: ``mitigate`` (params -> `MitigateJob` -> `run_mitigation`, one
method) and ``compare`` (params -> `CompareJob` -> `run_comparison`, several methods and seeds, or a
sweep)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.mitigate.runner import run_comparison, run_mitigation
from core.progress import ProgressFn
from core.workspace import Workspace


def _check_given(what: str, job: Any, names: tuple[str, ...]) -> None:
    missing = [k for k in names if not getattr(job, k)]
    if missing:
        raise SpurAuditError(f"{what} job needs params {missing}")


@dataclass(kw_only=True)
class MitigateJob:
    """Params of job kind "mitigate": the workspace ``dataset`` and ``model``, the ``method`` (a name of
    `core.mitigate.registry.METHOD_TABLE`), its ``config`` options, ``seed`` and ``device``."""

    dataset: str = ""
    model: str = ""
    method: str = ""
    config: dict[str, Any] | None = None
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        _check_given("mitigate", self, ("dataset", "model", "method"))


@dataclass(kw_only=True)
class CompareJob:
    """Params of job kind "compare": ``dataset``, ``model``, the ``methods`` compared, their ``seeds``
    (none or empty = [0]), per-method ``configs`` ({method: options}), an optional ``sweep`` ("param=v1,v2" of
    the single method given) and ``device``."""

    dataset: str = ""
    model: str = ""
    methods: list[str] = field(default_factory=list)
    seeds: list[int] | None = None
    configs: dict[str, Any] | None = None
    sweep: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        self.seeds = list(self.seeds or [0])   # none given (or an empty list from a form): seed 0

    def validate(self) -> None:
        _check_given("compare", self, ("dataset", "model", "methods"))


def mitigate_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Run one method; returns the run id and its metrics."""
    job = config_from_mapping(MitigateJob, params, what="mitigate job")
    run_id = run_mitigation(ws, dataset=job.dataset, model=job.model, method=job.method, config=job.config or {},
                            seed=job.seed, device=job.device, progress=progress)
    return {"run_id": run_id, "metrics": ws.get_run(run_id).metrics}


def compare_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Run a comparison (or a sweep); returns the run id."""
    job = config_from_mapping(CompareJob, params, what="compare job")
    run_id = run_comparison(ws, dataset=job.dataset, model=job.model, methods=job.methods, seeds=job.seeds,
                            configs=job.configs, sweep=job.sweep, device=job.device, progress=progress)
    return {"run_id": run_id}


JOB_KINDS = {"mitigate": mitigate_job, "compare": compare_job}
