"""The audit engine: discover features, label them, rank images by spuriosity, measure spurious
gaps, find collisions, core crops and feature sensitivity (seed 002, METHODS.md §1).

Pure computation lives in one module per step (`discover`, `labels`, `spuriosity`, `gaps`,
`collisions`, `crops`, `sensitivity`, `plots`); `pipeline` runs the steps over a workspace
(`run_audit` is the one-call entry point the demo uses). Job kinds ``audit`` (whole audit) and
``audit-step`` (one step) are registered with `core.jobs`.
"""
from __future__ import annotations

from core.audit.discover import DiscoveryConfig, DiscoveryResult, discover_features, feature_importance
from core.audit.gaps import GapConfig, GapResult, compare_models, spurious_gaps
from core.audit.labels import VerdictConfig, core_features, spurious_features, verdicts
from core.audit.pipeline import (current_verdicts, load_discovery, load_rankings, run_audit, run_collisions,
                                 run_core_crops, run_discovery, run_gaps, run_mask_labels, run_rankings,
                                 run_sensitivity)
from core.audit.spuriosity import SpuriosityResult, compute_spuriosity

__all__ = ["DiscoveryConfig", "DiscoveryResult", "discover_features", "feature_importance", "GapConfig",
           "GapResult", "compare_models", "spurious_gaps", "VerdictConfig", "core_features", "spurious_features",
           "verdicts", "SpuriosityResult", "compute_spuriosity", "current_verdicts", "load_discovery",
           "load_rankings", "run_audit", "run_collisions", "run_core_crops", "run_discovery", "run_gaps",
           "run_mask_labels", "run_rankings", "run_sensitivity"]


def _audit_job(ws, params: dict, progress) -> dict:
    """Job kind "audit": params dataset, model, k (5), label_source (auto), eval_split, quorum, device."""
    from core.errors import SpurAuditError

    for key in ("dataset", "model"):
        if not params.get(key):
            raise SpurAuditError(f"audit job needs params[{key!r}]")
    return run_audit(ws, params["dataset"], params["model"], k=int(params.get("k", 5)),
                     label_source=params.get("label_source", "auto"), eval_split=params.get("eval_split"),
                     quorum=params.get("quorum"), device=params.get("device", "auto"), progress=progress)


def _audit_step_job(ws, params: dict, progress) -> dict:
    """Job kind "audit-step": params step (discover|rank|gaps|masks|crops|sensitivity|report), dataset,
    model, split and the step's options."""
    from core.audit.gaps import GapConfig as _GC
    from core.errors import SpurAuditError, check_choice

    step = params.get("step")
    check_choice("audit step", step, ("discover", "rank", "gaps", "masks", "crops", "sensitivity", "report"))
    ds, md = params.get("dataset"), params.get("model")
    if not ds or not md:
        raise SpurAuditError("audit-step job needs params['dataset'] and params['model']")
    split, device = params.get("split"), params.get("device", "auto")
    if step == "discover":
        res = run_discovery(ws, ds, md, split=split or "train", config=DiscoveryConfig(k=int(params.get("k", 5))),
                            device=device, progress=progress)
        return {"top_features": res.top_features.tolist()}
    if step == "masks":
        return {"labels_written": run_mask_labels(ws, ds, md, split=split or "train", device=device,
                                                  progress=progress)}
    if not split:
        raise SpurAuditError(f"audit step {step!r} needs params['split']")
    if step == "rank":
        res = run_rankings(ws, ds, md, split=split, quorum=params.get("quorum"), progress=progress)
        return {"classes_without_spurious": res.classes_without_spurious}
    if step == "gaps":
        out = run_gaps(ws, ds, md, split=split, models=params.get("models"), config=_GC(k=params.get("k")),
                       progress=progress)
        return {"pooled": {n: r.pooled for n, r in out["gaps"].items()}, "run_id": out["run_id"]}
    if step == "crops":
        return run_core_crops(ws, ds, md, split=split, device=device, progress=progress)
    if step == "sensitivity":
        t = run_sensitivity(ws, ds, md, split=split, mask_from=params.get("mask_from", "core"), device=device,
                            progress=progress)
        return {"summary": t[t.class_index == -1].to_dict(orient="records")}
    from core.report import write_report

    return {"report": str(write_report(ws, ds, md, split=split, progress=progress))}


def _register() -> None:
    try:
        from core.jobs import register_job_kind
    except ModuleNotFoundError:  # pragma: no cover - jobs module absent
        return
    register_job_kind("audit")(_audit_job)
    register_job_kind("audit-step")(_audit_step_job)


_register()
