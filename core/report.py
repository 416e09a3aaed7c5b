"""Self-contained HTML audit report, and CSV/JSON exports of rankings, gaps and labels.

`render_report(context)` is pure: a dict in, HTML text out (jinja2 with autoescape on, so every
user-supplied string — class names, annotator notes, dataset names — is escaped; Plotly figures are
embedded with ``to_html``, the plotly.js library inlined once, with the first figure; thumbnails are
inlined as base64 PNG). `write_report(ws, dataset, model, ...)` gathers the context from the
workspace (the files written by `core.audit.pipeline`) and writes ``reports/<dataset>__<model>.html``.
"""
from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from core.progress import ProgressFn, null_progress

if TYPE_CHECKING:  # pragma: no cover
    from core.workspace import Workspace

__all__ = ["render_report", "png_base64", "build_report_context", "write_report", "export_tables"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.html.j2"


def png_base64(image: Any) -> str:
    """Base64 PNG of a PIL image, an (H, W, 3) uint8 array, a (3, H, W) tensor, or a PNG file path."""
    if isinstance(image, (str, Path)):
        return base64.b64encode(Path(image).read_bytes()).decode("ascii")
    from core.features.maps import to_pil

    pil = image if hasattr(image, "save") else to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _env():
    import jinja2

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
    drop_random}], runs [{id, method, status, metrics}].
    """
    ctx = {"title": "SpurAudit report", "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "split": "", "k": "", "group_by": "", "verdict_rule": "", "dataset": {"name": "", "summary": {}},
           "model": {"name": "", "summary": {}}, "classes": [], "rankings": [], "pooled": None, "gaps": [],
           "collisions": [], "crops": None, "sensitivity": [], "runs": []}
    ctx.update({k: v for k, v in context.items() if k != "figures"})
    ctx["figures"] = _figures_html(context.get("figures", []))
    return _env().get_template(TEMPLATE_NAME).render(**ctx)


def _name(class_names: Sequence[str], c: int) -> str:
    return str(class_names[c]) if 0 <= c < len(class_names) else str(c)


def _thumb_b64(ws, dataset: str, manifest, row: int, size: int) -> str:
    from core.features.maps import cached_thumbnail

    return png_base64(cached_thumbnail(ws, dataset, manifest, int(row), size=size))


def build_report_context(ws: "Workspace", dataset: str, model: str, *, split: str, quorum: int | None = None,
                         n_images: int = 6, max_classes: int | None = 50, thumb_size: int = 96,
                         attack_steps: int = 0, device: str = "cpu", progress: ProgressFn | None = None) -> dict:
    """Collect the report context of (dataset, model) from the workspace (see `render_report`).

    Each top feature shows the NAM overlays of its top-activating training images of the class and,
    when ``attack_steps`` > 0, the feature attack (cached) from the top image."""
    from core.audit import plots
    from core.audit.pipeline import audit_dir, current_verdicts, load_audit_model, load_discovery, load_rankings
    from core.data import load_manifest
    from core.features.maps import cached_attack, cached_overlay

    progress = progress or null_progress
    drec = ws.get_dataset(dataset)
    mrec = ws.get_model(model)
    names = list(drec.class_names)
    man_all = load_manifest(ws, dataset)
    base = audit_dir(dataset, model)
    disc = load_discovery(ws, dataset, model)
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    vmap = {(int(r.class_index), int(r.feature)): r for r in vt.itertuples()}
    K = disc.top_features.shape[0]
    classes_shown = list(range(K if max_classes is None else min(K, max_classes)))
    man_train = man_all.split("train")
    from core.features.store import load_features

    fs_train = load_features(ws, dataset, model, "train")
    audit_model = load_audit_model(ws, model, device="cpu")
    single = {}
    if disc.single_gaps is not None:
        single = {(int(r.class_index), int(r.feature)): float(r.gap) for r in disc.single_gaps.itertuples()}
    classes = []
    for i, c in enumerate(classes_shown):
        idx = fs_train.class_rows(c)
        feats = []
        for rank, j in enumerate(disc.top_features[c]):
            j = int(j)
            imgs = []
            if len(idx):
                act = np.asarray(fs_train.features[idx, j], dtype=np.float32)
                best = idx[np.argsort(-act, kind="stable")[:min(n_images, 3)]]
                for r in best:
                    imgs.append(png_base64(cached_overlay(ws, dataset, model, audit_model, man_train, int(r), j,
                                                          size=thumb_size, device=device)))
                if attack_steps > 0:
                    imgs.append(png_base64(cached_attack(ws, dataset, model, audit_model, man_train, int(best[0]), j,
                                                         size=thumb_size, steps=attack_steps, device=device)))
            v = vmap.get((c, j))
            g = single.get((c, j))
            feats.append(dict(feature=j, importance=float(disc.top_importance[c, rank]),
                              verdict=v.verdict if v is not None else "unlabelled",
                              kind=v.kind if v is not None else "", basis=v.basis if v is not None else "",
                              single_gap=None if g is None or np.isnan(g) else g, images=imgs))
        classes.append(dict(name=_name(names, c), index=c, features=feats))
        progress(0.6 * (i + 1) / len(classes_shown), "feature visualisations")
    ranking = load_rankings(ws, dataset, model, split)
    man_split = man_all.split(split)
    rankings = []
    for c in classes_shown:
        unranked = c in ranking.classes_without_spurious or len(ranking.ranking(c)) == 0
        rankings.append(dict(name=_name(names, c), unranked=unranked,
                             lowest=[] if unranked else [_thumb_b64(ws, dataset, man_split, r, thumb_size)
                                                         for r in ranking.lowest(c, n_images)],
                             highest=[] if unranked else [_thumb_b64(ws, dataset, man_split, r, thumb_size)
                                                          for r in ranking.highest(c, n_images)]))
    progress(0.85, "rankings")
    gaps_meta = ws.read_json(f"{base}/gaps/{split}.json")
    figures, gaps_rows, pooled = [], [], None
    if gaps_meta is not None:
        per = pd.DataFrame(gaps_meta["per_class"][model])
        pooled = gaps_meta["pooled"][model]
        for r in per.to_dict(orient="records"):
            gaps_rows.append(dict(r, name=_name(names, int(r["class_index"]))))
        figures.append(plots.gap_bar(per, class_names=names))
        figures.append(plots.gap_scatter(per, class_names=names))
        corr = pd.DataFrame(gaps_meta.get("correlation") or {})
        if corr.shape[0] > 1:
            figures.append(plots.model_gap_correlation(corr))
    collisions = []
    if ws.path(f"{base}/collisions.csv").exists():
        col = pd.read_csv(ws.path(f"{base}/collisions.csv"))
        for r in col.head(100).to_dict(orient="records"):
            collisions.append(dict(r, name=_name(names, int(r["class_index"])),
                                   other_name=_name(names, int(r["other_class"]))))
    crops = ws.read_json(f"{base}/crops.json")
    sens = []
    if ws.path(f"{base}/sensitivity.csv").exists():
        st = pd.read_csv(ws.path(f"{base}/sensitivity.csv"))
        st = st[st.class_index == -1]
        sens = st.to_dict(orient="records")
        for src in st.mask_source.unique():
            figures.append(plots.sensitivity_bars(st[st.mask_source == src],
                                                  title=f"Accuracy drop, mask from {src}"))
    runs = [dict(id=r.id, method=r.method, status=r.status,
                 metrics=", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in sorted(r.metrics.items())))
            for r in ws.list_runs(dataset=dataset) if r.method != "audit-gaps"]
    summary = man_all.summary()
    ds_summary = {"source": drec.source, "classes": len(names), "images": summary.get("n"),
                  **{f"{s} images": info["n"] for s, info in summary.get("splits", {}).items()}}
    md_summary = {"arch": mrec.arch, **{k: (f"{v:.4g}" if isinstance(v, float) else v)
                                        for k, v in (mrec.metrics or {}).items() if not isinstance(v, (dict, list))}}
    progress(0.95, "tables")
    rule = ("human answers are used when any exist for a (class, feature), else machine ones; spurious when "
            + (f"at least {quorum}" if quorum else "a strict majority") + " of those answers are spurious")
    return {"title": f"SpurAudit report — {dataset} / {model}", "split": split, "k": disc.top_features.shape[1],
            "group_by": disc.group_by, "verdict_rule": rule, "dataset": {"name": dataset, "summary": ds_summary},
            "model": {"name": model, "summary": md_summary}, "classes": classes, "rankings": rankings,
            "pooled": pooled, "gaps": gaps_rows, "figures": figures, "collisions": collisions, "crops": crops,
            "sensitivity": sens, "runs": runs}


def export_tables(ws: "Workspace", dataset: str, model: str, *, split: str) -> dict[str, Path]:
    """CSV and JSON exports of rankings, gaps and labels under ``reports/<dataset>__<model>/``."""
    from core.audit.labels import labels_to_csv
    from core.audit.pipeline import audit_dir, current_verdicts

    base = audit_dir(dataset, model)
    out_base = f"reports/{dataset}__{model}"
    paths: dict[str, Path] = {}
    labels = ws.labels(dataset, model)
    paths["labels_csv"] = ws.write_text(f"{out_base}/labels.csv", labels_to_csv(labels))
    paths["labels_json"] = ws.write_json(f"{out_base}/labels.json", json.loads(labels.to_json(orient="records")))
    vt = current_verdicts(ws, dataset, model)
    paths["verdicts_csv"] = ws.write_text(f"{out_base}/verdicts.csv", vt.to_csv(index=False))
    for kind in ("rankings", "gaps"):
        src = ws.path(f"{base}/{kind}/{split}.csv")
        if src.exists():
            df = pd.read_csv(src)
            paths[f"{kind}_csv"] = ws.write_text(f"{out_base}/{kind}_{split}.csv", df.to_csv(index=False))
            paths[f"{kind}_json"] = ws.write_json(f"{out_base}/{kind}_{split}.json",
                                                  json.loads(df.to_json(orient="records")))
    return paths


def write_report(ws: "Workspace", dataset: str, model: str, *, split: str, quorum: int | None = None,
                 n_images: int = 6, max_classes: int | None = 50, attack_steps: int = 0, device: str = "cpu",
                 progress: ProgressFn | None = None) -> Path:
    """Write ``reports/<dataset>__<model>.html`` (plus the CSV/JSON exports); returns its path."""
    progress = progress or null_progress
    ctx = build_report_context(ws, dataset, model, split=split, quorum=quorum, n_images=n_images,
                               max_classes=max_classes, attack_steps=attack_steps, device=device,
                               progress=progress)
    html = render_report(ctx)
    export_tables(ws, dataset, model, split=split)
    path = ws.write_text(f"reports/{dataset}__{model}.html", html)
    progress(1.0, "report written")
    return path
