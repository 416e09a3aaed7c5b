"""Job kinds of the concepts package (what the New audit and Automation pages start):

- ``clip-rank``: `ClipRankJob` -> `core.concepts.pipeline.run_clip_spuriosity` (a named concept ranking
  that the Rankings and Gaps pages can pick);
- ``clip-labels``: `ClipLabelsJob` -> `run_clip_labels` (suggestions, source ``clip``);
- ``sam-labels``: `SamLabelsJob` -> `run_sam_labels` (source ``sam_iou``);
- ``audit-chain``: `core.audit.chain.AuditChainConfig` -> `core.audit.chain.run_audit_chain` with the
  CLIP / SAM-IoU labellers (when their weights are given) and the report step wired in here: the chain
  is in the analysis layer and imports neither the report nor the concept backends.

Machine labels never override a person: verdicts prefer human answers (`core.audit.labels`).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.audit.chain import AuditChainConfig, audit_chain_steps, run_audit_chain
from core.concepts.clip import ClipConfig
from core.concepts.pipeline import run_clip_labels, run_clip_spuriosity, run_sam_labels
from core.concepts.sam import SAM_MODEL_TYPES, SamConfig
from core.concepts.vocabulary import check_templates, default_spurious_concepts, default_templates
from core.config import config_from_mapping
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn
from core.report import write_report
from core.workspace import Workspace


def _clip_config(model_name: str, weights: str | None, templates: list[str] | None) -> ClipConfig:
    return ClipConfig(model_name=model_name, pretrained=weights or None,
                      templates=tuple(check_templates(templates or default_templates())))


@dataclass(kw_only=True)
class ClipRankJob:
    """Params of job kind "clip-rank": ``dataset``, ``split``, the spurious ``concepts`` (every class's
    default) and the ``core_concepts`` (every class's default; None = each class's own name),
    ``per_class`` overrides (``{class name or index: {"spurious": [...], "core": [...]}}``, see
    `core.concepts.vocabulary.check_per_class`), the prompt ``templates``, ``clip_model``,
    ``clip_weights`` (open_clip tag or a weights file; None = random init, for tests), the ranking's
    ``name`` (default from the concepts)."""

    dataset: str = ""
    split: str = "val"
    concepts: list[str] | None = None
    core_concepts: list[str] | None = None
    per_class: dict | None = None
    templates: list[str] | None = None
    clip_model: str = "ViT-B-32"
    clip_weights: str | None = "openai"
    name: str | None = None
    device: str = "auto"

    def validate(self) -> None:
        if not self.dataset:
            raise SpurAuditError("clip-rank job needs params['dataset']")
        if not self.concepts:
            raise SpurAuditError("name at least one spurious concept (e.g. water)")


@dataclass(kw_only=True)
class ClipLabelsJob:
    """Params of job kind "clip-labels": ``dataset``, ``model``, the spurious ``concepts`` (default:
    the vocabulary), ``templates``, ``clip_model``, ``clip_weights``, ``top_n`` images per feature."""

    dataset: str = ""
    model: str = ""
    concepts: list[str] | None = None
    templates: list[str] | None = None
    clip_model: str = "ViT-B-32"
    clip_weights: str | None = "openai"
    top_n: int = 5
    device: str = "auto"

    def validate(self) -> None:
        if not self.dataset or not self.model:
            raise SpurAuditError("clip-labels job needs params['dataset'] and params['model']")
        if self.top_n < 1:
            raise SpurAuditError(f"top_n must be at least 1, got {self.top_n}")


@dataclass(kw_only=True)
class SamLabelsJob:
    """Params of job kind "sam-labels": ``dataset``, ``model``, ``sam_type`` (vit_b, vit_l, vit_h),
    ``sam_checkpoint`` (a local ``sam_vit_*.pth``; None = random init, for tests), ``split``."""

    dataset: str = ""
    model: str = ""
    sam_type: str = "vit_b"
    sam_checkpoint: str | None = None
    split: str = "train"
    device: str = "auto"

    def validate(self) -> None:
        if not self.dataset or not self.model:
            raise SpurAuditError("sam-labels job needs params['dataset'] and params['model']")
        check_choice("SAM model type", self.sam_type, SAM_MODEL_TYPES)


def clip_rank_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    job = config_from_mapping(ClipRankJob, params, what="clip-rank job")
    return run_clip_spuriosity(ws, job.dataset, concepts=job.concepts, core_concepts=job.core_concepts,
                               per_class=job.per_class,
                               clip=_clip_config(job.clip_model, job.clip_weights, job.templates), split=job.split,
                               name=job.name, device=job.device, progress=progress)


def clip_labels_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    job = config_from_mapping(ClipLabelsJob, params, what="clip-labels job")
    n = run_clip_labels(ws, job.dataset, job.model, concepts=job.concepts or default_spurious_concepts(),
                        clip=_clip_config(job.clip_model, job.clip_weights, job.templates), top_n=job.top_n,
                        device=job.device, progress=progress)
    return {"labels_written": n, "source": "clip"}


def sam_labels_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    job = config_from_mapping(SamLabelsJob, params, what="sam-labels job")
    n = run_sam_labels(ws, job.dataset, job.model, sam=SamConfig(model_type=job.sam_type,
                                                                 checkpoint=job.sam_checkpoint or None),
                       split=job.split, device=job.device, progress=progress)
    return {"labels_written": n, "source": "sam_iou"}


def audit_chain_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "audit-chain": extract → discover → machine labels → rank → gaps → report, reusing the
    steps that finished before (`core.audit.chain`)."""
    config = config_from_mapping(AuditChainConfig, params, what="audit-chain job")
    ds, mdl, dev = config.dataset, config.model, config.device
    labellers = []
    if config.sam_checkpoint:
        sam = SamConfig(model_type=config.sam_type, checkpoint=config.sam_checkpoint)
        labellers.append(("sam_iou", lambda p: run_sam_labels(ws, ds, mdl, sam=sam, device=dev, progress=p),
                          {"sam_type": config.sam_type, "checkpoint": config.sam_checkpoint}))
    if config.clip_weights:
        clip = _clip_config(config.clip_model, config.clip_weights, None)
        concepts = config.concepts or default_spurious_concepts()
        labellers.append(("clip", lambda p: run_clip_labels(ws, ds, mdl, concepts=concepts, clip=clip, device=dev,
                                                            progress=p),
                          {"model": config.clip_model, "weights": config.clip_weights, "concepts": concepts}))
    steps = audit_chain_steps(ws, config, labellers=labellers, report=write_report if config.report else None)
    return run_audit_chain(ws, config, steps, progress=progress)


JOB_KINDS = {"clip-rank": clip_rank_job, "clip-labels": clip_labels_job, "sam-labels": sam_labels_job,
             "audit-chain": audit_chain_job}
