"""Job kinds of the audit: ``audit`` (`run_audit`, the whole audit), ``audit-step`` (one step, dispatched
through `AUDIT_STEPS`) and ``report`` (`core.report.write_report`)."""
from __future__ import annotations

from typing import Callable

from core.audit.discover import DiscoveryConfig
from core.audit.gaps import GapConfig
from core.audit.pipeline import (run_audit, run_core_crops, run_discovery, run_gaps, run_mask_labels, run_rankings,
                                 run_sensitivity)
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn
from core.report import write_report
from core.workspace import Workspace


def audit_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "audit": params dataset, model, k (5), label_source (auto), eval_split, quorum, device."""
    for key in ("dataset", "model"):
        if not params.get(key):
            raise SpurAuditError(f"audit job needs params[{key!r}]")
    return run_audit(ws, params["dataset"], params["model"], k=int(params.get("k", 5)),
                     label_source=params.get("label_source", "auto"), eval_split=params.get("eval_split"),
                     quorum=params.get("quorum"), device=params.get("device", "auto"), progress=progress)


def _discover(ws: Workspace, ds: str, md: str, split: str | None, params: dict, progress: ProgressFn) -> dict:
    res = run_discovery(ws, ds, md, split=split or "train", config=DiscoveryConfig(k=int(params.get("k", 5))),
                        device=params.get("device", "auto"), progress=progress)
    return {"top_features": res.top_features.tolist()}


def _masks(ws: Workspace, ds: str, md: str, split: str | None, params: dict, progress: ProgressFn) -> dict:
    return {"labels_written": run_mask_labels(ws, ds, md, split=split or "train",
                                              device=params.get("device", "auto"), progress=progress)}


def _rank(ws: Workspace, ds: str, md: str, split: str, params: dict, progress: ProgressFn) -> dict:
    res = run_rankings(ws, ds, md, split=split, quorum=params.get("quorum"), progress=progress)
    return {"classes_without_spurious": res.classes_without_spurious}


def _gaps(ws: Workspace, ds: str, md: str, split: str, params: dict, progress: ProgressFn) -> dict:
    out = run_gaps(ws, ds, md, split=split, models=params.get("models"), config=GapConfig(k=params.get("k")),
                   progress=progress)
    return {"pooled": {n: r.pooled for n, r in out["gaps"].items()}, "run_id": out["run_id"]}


def _crops(ws: Workspace, ds: str, md: str, split: str, params: dict, progress: ProgressFn) -> dict:
    return run_core_crops(ws, ds, md, split=split, device=params.get("device", "auto"), progress=progress)


def _sensitivity(ws: Workspace, ds: str, md: str, split: str, params: dict, progress: ProgressFn) -> dict:
    t = run_sensitivity(ws, ds, md, split=split, mask_from=params.get("mask_from", "core"),
                        device=params.get("device", "auto"), progress=progress)
    return {"summary": t[t.class_index == -1].to_dict(orient="records")}


def _report(ws: Workspace, ds: str, md: str, split: str, params: dict, progress: ProgressFn) -> dict:
    return {"report": str(write_report(ws, ds, md, split=split, progress=progress))}


StepFn = Callable[[Workspace, str, str, "str | None", dict, ProgressFn], dict]
#: audit step -> (function, whether it needs params["split"])
AUDIT_STEPS: dict[str, tuple[StepFn, bool]] = {
    "discover": (_discover, False), "masks": (_masks, False), "rank": (_rank, True), "gaps": (_gaps, True),
    "crops": (_crops, True), "sensitivity": (_sensitivity, True), "report": (_report, True),
}


def audit_step_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "audit-step": params step (one of `AUDIT_STEPS`), dataset, model, split and the step's options."""
    step = params.get("step")
    check_choice("audit step", step, tuple(AUDIT_STEPS))
    ds, md = params.get("dataset"), params.get("model")
    if not ds or not md:
        raise SpurAuditError("audit-step job needs params['dataset'] and params['model']")
    fn, needs_split = AUDIT_STEPS[step]
    split = params.get("split")
    if needs_split and not split:
        raise SpurAuditError(f"audit step {step!r} needs params['split']")
    return fn(ws, ds, md, split, params, progress)


def report_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "report": params dataset, model, split, optional quorum, max_classes, attack_steps, device."""
    for key in ("dataset", "model", "split"):
        if not params.get(key):
            raise SpurAuditError(f"report job needs params[{key!r}]")
    path = write_report(ws, params["dataset"], params["model"], split=params["split"], quorum=params.get("quorum"),
                        max_classes=params.get("max_classes", 50), attack_steps=int(params.get("attack_steps", 0)),
                        device=params.get("device", "cpu"), progress=progress)
    return {"report": str(path), "report_rel": ws.rel(path)}


JOB_KINDS = {"audit": audit_job, "audit-step": audit_step_job, "report": report_job}
