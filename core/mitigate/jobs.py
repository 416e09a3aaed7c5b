"""Job kinds of the mitigate package: ``mitigate`` (params -> `MitigateJob` -> `run_mitigation`, one
method) and ``compare`` (params -> `CompareJob` -> `run_comparison`, several methods and seeds, or a
sweep)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.mitigate.embeddings import run_embedding
from core.mitigate.registry import METHODS
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


# --- issue 12: job kind "embedding" (the representation before / after a run) ---------------------
@dataclass
class EmbeddingJob:
    """Params of job kind "embedding": the run, the split, points shown, projection, device."""

    run_id: int
    split: str = "test"
    max_points: int = 3000
    method: str = "pca"
    seed: int = 0
    device: str = "auto"


def embedding_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Project the audited model's and the run's features of the same images; saved with the run."""
    job = config_from_mapping(EmbeddingJob, params, what="embedding job")
    return run_embedding(ws, job.run_id, split=job.split, max_points=job.max_points, method=job.method,
                         seed=job.seed, device=job.device, progress=progress)


JOB_KINDS = {"mitigate": mitigate_job, "compare": compare_job, "embedding": embedding_job}


def relaunch_params(run: Any) -> tuple[str, dict]:
    """The job kind and params that run a recorded mitigation run again with its own settings: a
    "compare"/"sweep" run -> ("compare", CompareJob params), a single-method run -> ("mitigate",
    MitigateJob params). Raises `SpurAuditError` for runs no mitigation job made (audit, rare sweeps)."""
    p = dict(run.params or {})
    if run.method in ("compare", "sweep"):
        return "compare", {"dataset": run.dataset, "model": run.model, "methods": list(p.get("methods") or []),
                           "seeds": list(p.get("seeds") or [0]), "configs": dict(p.get("configs") or {}),
                           "sweep": p.get("sweep"), "device": p.get("device") or "auto"}
    if run.method in METHODS:
        return "mitigate", {"dataset": run.dataset, "model": run.model, "method": run.method,
                            "config": dict(p.get("config") or {}), "seed": int(p.get("seed", 0)),
                            "device": p.get("device") or "auto"}
    raise SpurAuditError(f"run #{run.id} ({run.method}) was not made by a mitigation job; start it again "
                         "from the command or page that made it")
