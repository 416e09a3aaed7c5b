"""Self-contained HTML audit report, and CSV/JSON exports of rankings, gaps and labels.

- `render.render_report(context)` is pure: a dict in, HTML text out (jinja2 with autoescape on, the
  template in ``templates/report.html.j2``); `render.png_base64` inlines images;
- `context.build_report_context(ws, dataset, model, ...)` gathers that dict from the workspace,
  reading the audit only through `core.audit.artifacts`;
- `exports.export_tables` writes the CSV/JSON exports under ``reports/<dataset>__<model>/``;
- `writer.write_report` writes ``reports/<dataset>__<model>.html`` (and the exports);
  `writer.run_audit` is the whole audit (`core.audit.pipeline.run_audit`) followed by its report.

The report sits above the audit in the layer order: the audit never imports it; whoever wants an
audit with its report calls `run_audit` here (the CLI, the demo, the ``audit`` job).
"""
from __future__ import annotations

from core.report.context import build_report_context
from core.report.exports import export_tables
from core.report.render import png_base64, render_report
from core.report.writer import run_audit, write_report

__all__ = ["render_report", "png_base64", "build_report_context", "write_report", "export_tables", "run_audit"]
