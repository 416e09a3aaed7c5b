"""Job kinds of the audit: ``audit`` (`core.report.run_audit`: the whole audit and its report),
``audit-step`` (one step, dispatched through `AUDIT_STEPS`), ``report`` (`core.report.write_report`) and
``label-import`` (`core.audit.label_import.run_label_import`: answers CSV and Salient ImageNet masks).

Each kind's params become a dataclass (`AuditJob`, `AuditStepJob`, `ReportJob`) through
`core.config.config_from_mapping` (typed, unknown keys listed), then one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.audit.discover import DiscoveryConfig
from core.audit.gaps import GapConfig
from core.audit.label_import import LabelImportConfig, run_label_import
from core.audit.pipeline import run_core_crops, run_discovery, run_gaps, run_mask_labels, run_rankings, run_sensitivity
from core.config import config_from_mapping
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn
from core.report import run_audit, write_report
from core.workspace import Workspace


def _require(what: str, **values: str | None) -> None:
    for key, value in values.items():
        if not value:
            raise SpurAuditError(f"{what} needs params[{key!r}]")


@dataclass(kw_only=True)
class AuditJob:
    """Params of job kind "audit" (the options of `core.report.run_audit`)."""

    dataset: str = ""
    model: str = ""
    k: int = 5
    label_source: str = "auto"
    eval_split: str | None = None
    quorum: int | None = None
    device: str = "auto"

    def validate(self) -> None:
        _require("audit job", dataset=self.dataset, model=self.model)


@dataclass(kw_only=True)
class AuditStepJob:
    """Params of job kind "audit-step": ``step`` (one of `AUDIT_STEPS`), the dataset, the model, the
    split (discover and masks: default train; the other steps need one) and the options of the steps:
    ``k`` (discover: top features per class; gaps: slice size; None = the step's default), ``quorum``
    (rank), ``models`` (gaps: further models on the same ranking), ``mask_from`` and ``image_size``
    (sensitivity; image_size for Salient masks on photo datasets), ``device``."""

    step: str = ""
    dataset: str = ""
    model: str = ""
    split: str | None = None
    k: int | None = None
    quorum: int | None = None
    models: list[str] | None = None
    mask_from: str = "core"
    image_size: int | None = None
    device: str = "auto"

    def validate(self) -> None:
        check_choice("audit step", self.step, tuple(AUDIT_STEPS))
        if not self.dataset or not self.model:
            raise SpurAuditError("audit-step job needs params['dataset'] and params['model']")
        if AUDIT_STEPS[self.step][1] and not self.split:
            raise SpurAuditError(f"audit step {self.step!r} needs params['split']")


@dataclass(kw_only=True)
class ReportJob:
    """Params of job kind "report" (the options of `core.report.write_report`)."""

    dataset: str = ""
    model: str = ""
    split: str = ""
    quorum: int | None = None
    max_classes: int | None = 50
    attack_steps: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        _require("report job", dataset=self.dataset, model=self.model, split=self.split)


def audit_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "audit": the whole audit with its report; returns the audit's summary."""
    job = config_from_mapping(AuditJob, params, what="audit job")
    return run_audit(ws, job.dataset, job.model, k=job.k, label_source=job.label_source, eval_split=job.eval_split,
                     quorum=job.quorum, device=job.device, progress=progress)


def _discover(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    config = DiscoveryConfig() if job.k is None else DiscoveryConfig(k=job.k)
    res = run_discovery(ws, job.dataset, job.model, split=job.split or "train", config=config, device=job.device,
                        progress=progress)
    return {"top_features": res.top_features.tolist()}


def _masks(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    return {"labels_written": run_mask_labels(ws, job.dataset, job.model, split=job.split or "train",
                                              device=job.device, progress=progress)}


def _rank(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    res = run_rankings(ws, job.dataset, job.model, split=job.split, quorum=job.quorum, progress=progress)
    return {"classes_without_spurious": res.classes_without_spurious}


def _gaps(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    out = run_gaps(ws, job.dataset, job.model, split=job.split, models=job.models, config=GapConfig(k=job.k),
                   progress=progress)
    return {"pooled": {n: r.pooled for n, r in out["gaps"].items()}, "run_id": out["run_id"]}


def _crops(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    return run_core_crops(ws, job.dataset, job.model, split=job.split, device=job.device, progress=progress)


def _sensitivity(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    t = run_sensitivity(ws, job.dataset, job.model, split=job.split, mask_from=job.mask_from, device=job.device,
                        image_size=job.image_size, progress=progress)
    return {"summary": t[t.class_index == -1].to_dict(orient="records")}


def _report(ws: Workspace, job: AuditStepJob, progress: ProgressFn) -> dict:
    return {"report": str(write_report(ws, job.dataset, job.model, split=job.split, progress=progress))}


StepFn = Callable[[Workspace, AuditStepJob, ProgressFn], dict]
#: audit step -> (function, whether it needs params["split"])
AUDIT_STEPS: dict[str, tuple[StepFn, bool]] = {
    "discover": (_discover, False), "masks": (_masks, False), "rank": (_rank, True), "gaps": (_gaps, True),
    "crops": (_crops, True), "sensitivity": (_sensitivity, True), "report": (_report, True),
}


def audit_step_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "audit-step": one step of the audit (see `AuditStepJob`)."""
    job = config_from_mapping(AuditStepJob, params, what="audit-step job")
    return AUDIT_STEPS[job.step][0](ws, job, progress)


def report_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "report": the HTML report (and exports); returns its absolute and workspace-relative path."""
    job = config_from_mapping(ReportJob, params, what="report job")
    path = write_report(ws, job.dataset, job.model, split=job.split, quorum=job.quorum, max_classes=job.max_classes,
                        attack_steps=job.attack_steps, device=job.device, progress=progress)
    return {"report": str(path), "report_rel": ws.rel(path)}


def label_import_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "label-import" (params: the fields of `LabelImportConfig`): answers and/or Salient masks."""
    return run_label_import(ws, config_from_mapping(LabelImportConfig, params, what="label-import job"),
                            progress=progress)


JOB_KINDS = {"audit": audit_job, "audit-step": audit_step_job, "report": report_job,
             "label-import": label_import_job}
