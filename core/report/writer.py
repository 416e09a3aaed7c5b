"""Writing the report of an audit, and the whole audit followed by its report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.audit import pipeline
from core.audit.artifacts import audit_files
from core.progress import ProgressFn, null_progress
from core.report.context import build_report_context
from core.report.exports import export_tables
from core.report.render import render_report
from core.workspace import Workspace

__all__ = ["write_report", "run_audit"]


def write_report(ws: Workspace, dataset: str, model: str, *, split: str, quorum: int | None = None,
                 n_images: int = 6, max_classes: int | None = 50, attack_steps: int = 0, device: str = "cpu",
                 progress: ProgressFn | None = None) -> Path:
    """Write ``reports/<dataset>__<model>.html`` (plus the CSV/JSON exports); returns its path."""
    progress = progress or null_progress
    ctx = build_report_context(ws, dataset, model, split=split, quorum=quorum, n_images=n_images,
                               max_classes=max_classes, attack_steps=attack_steps, device=device,
                               progress=progress)
    html = render_report(ctx)
    export_tables(ws, dataset, model, split=split)
    path = ws.write_text(audit_files(dataset, model).report, html)
    progress(1.0, "report written")
    return path


def run_audit(ws: Workspace, dataset: str, model: str, *, report: bool = True, **options: Any) -> dict:
    """The whole audit (`core.audit.pipeline.run_audit`, same ``options``: k, label_source, eval_split,
    quorum, gap_k, extract, device, progress) ending with `write_report` on the eval split (the last
    20 % of the progress); ``report=False`` stops after the audit. What the CLI ``audit`` command, the
    demo and the ``audit`` job run. Returns the audit's summary (with ``report``, the report's path)."""
    return pipeline.run_audit(ws, dataset, model, report=write_report if report else None, **options)
