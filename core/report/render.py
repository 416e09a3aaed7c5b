"""HTML of the audit report from a context dict (pure: no workspace, no files besides the template).

jinja2 with autoescape on, so every user-supplied string — class names, annotator notes, dataset
names — is escaped; Plotly figures are embedded with ``to_html``, the plotly.js library inlined once,
with the first figure; thumbnails are inlined as base64 PNG.
"""
from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import jinja2

from core.features.maps import to_pil

__all__ = ["render_report", "png_base64", "TEMPLATE_DIR", "TEMPLATE_NAME"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.html.j2"


def png_base64(image: Any) -> str:
    """Base64 PNG of a PIL image, an (H, W, 3) uint8 array, a (3, H, W) tensor, or a PNG file path."""
    if isinstance(image, (str, Path)):
        return base64.b64encode(Path(image).read_bytes()).decode("ascii")
    pil = image if hasattr(image, "save") else to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True)


def _figures_html(figures: Sequence[Any]) -> list[str]:
    out = []
    for i, fig in enumerate(figures):
        out.append(fig.to_html(include_plotlyjs="inline" if i == 0 else False, full_html=False))
    return out


def render_report(context: dict) -> str:
    """HTML text of the report.

    context keys (all optional except title): title, generated, split, k, group_by, verdict_rule,
    dataset {name, summary: dict}, model {name, summary: dict}, classes [{name, index, features:
    [{feature, importance, verdict, kind, basis, single_gap, images: [base64 PNG]}]}], rankings
    [{name, unranked, lowest: [b64], highest: [b64]}], pooled {gap, ci_low, ci_high, acc_high,
    acc_low, n_classes}, gaps [{name, n, k, ranked, acc_high, acc_low, gap, ci_low, ci_high}],
    figures [plotly Figure], collisions [{name, feature, other_name, rank_in_other, strength}],
    crops {acc_before, acc_after, n}, sensitivity [{mask_source, corruption, acc_clean, drop_masked,
    drop_random}], runs [{id, method, status, metrics}], studies [{name, split, n_models, mean_pearson,
    slope, intercept, rows}] and study_figures [plotly Figure] (issue 14), coverage {classes, rankings,
    gaps, collisions: a sentence each saying what the section covers and how its classes were chosen},
    unranked {summary, rows: [{class, class_index, n, why}]} (issue 12).
    """
    ctx = {"title": "SpurAudit report", "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "split": "", "k": "", "group_by": "", "verdict_rule": "", "dataset": {"name": "", "summary": {}},
           "model": {"name": "", "summary": {}}, "classes": [], "rankings": [], "pooled": None, "gaps": [],
           "collisions": [], "crops": None, "sensitivity": [], "runs": []}
    ctx.update({k: v for k, v in context.items() if k not in ("figures", "study_figures")})
    figs = _figures_html(list(context.get("figures", [])) + list(context.get("study_figures", [])))
    n_main = len(context.get("figures", []))
    ctx["figures"], ctx["study_figures"] = figs[:n_main], figs[n_main:]   # studies (issue 14): after the gaps
    ctx.setdefault("studies", [])
    return _env().get_template(TEMPLATE_NAME).render(**ctx)
