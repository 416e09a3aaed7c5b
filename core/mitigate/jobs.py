"""Job kinds of the mitigate package: ``mitigate`` (one method, `run_mitigation`) and ``compare``
(several methods and seeds, `run_comparison`)."""
from __future__ import annotations

from core.errors import SpurAuditError
from core.mitigate.runner import run_comparison, run_mitigation
from core.progress import ProgressFn
from core.workspace import Workspace


def mitigate_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """params: dataset, model, method, config (dict), seed, device."""
    missing = [k for k in ("dataset", "model", "method") if not params.get(k)]
    if missing:
        raise SpurAuditError(f"mitigate job needs params {missing}")
    run_id = run_mitigation(ws, dataset=params["dataset"], model=params["model"], method=params["method"],
                            config=params.get("config") or {}, seed=int(params.get("seed", 0)),
                            device=params.get("device", "auto"), progress=progress)
    return {"run_id": run_id, "metrics": ws.get_run(run_id).metrics}


def compare_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """params: dataset, model, methods (list), seeds (list), configs ({method: dict}), sweep ("p=v1,v2")."""
    missing = [k for k in ("dataset", "model", "methods") if not params.get(k)]
    if missing:
        raise SpurAuditError(f"compare job needs params {missing}")
    run_id = run_comparison(ws, dataset=params["dataset"], model=params["model"], methods=params["methods"],
                            seeds=params.get("seeds") or [0], configs=params.get("configs"),
                            sweep=params.get("sweep"), device=params.get("device", "auto"), progress=progress)
    return {"run_id": run_id}


JOB_KINDS = {"mitigate": mitigate_job, "compare": compare_job}
