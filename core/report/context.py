"""The context of the audit report, gathered from a workspace (see `core.report.render.render_report`
for its keys). Everything is read through `core.audit.artifacts` (the audit's files) and the
workspace records; images are inlined as base64 PNG from the workspace's image cache
(`core.features.maps`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.audit import plots
from core.audit.coverage import (NO_SPURIOUS, REASONS, choose_classes, coverage_sentence, unranked_reason,
                                 unranked_summary, unranked_table)
from core.audit.artifacts import (current_verdicts, load_collisions, load_crops, load_discovery, load_gaps,
                                  load_rankings, load_sensitivity)
from core.audit.discover import DiscoveryResult
from core.audit.spuriosity import SpuriosityResult
from core.data import load_manifest
from core.data.manifest import Manifest
from core.features.assets import render_attacks, render_overlays, top_activating_rows
from core.features.maps import cached_thumbnail
from core.features.store import load_features
from core.models.checkpoints import load_workspace_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.report.render import png_base64
from core.study.artifacts import list_studies, load_study
from core.workspace import DatasetRecord, ModelRecord, Workspace

__all__ = ["build_report_context", "verdict_rule"]


def build_report_context(ws: Workspace, dataset: str, model: str, *, split: str, quorum: int | None = None,
                         n_images: int = 6, max_classes: int | None = 50, thumb_size: int = 96,
                         attack_steps: int = 0, device: str = "cpu", progress: ProgressFn | None = None) -> dict:
    """Collect the report context of (dataset, model) from the workspace (see `render_report`).

    Each top feature shows the NAM overlays of its top-activating training images of the class and,
    when ``attack_steps`` > 0, the feature attack (cached) from the top image. Rankings, gaps and
    collisions come from the saved audit of ``split``; crops, sensitivity and runs when present."""
    progress = progress or null_progress
    drec = ws.get_dataset(dataset)
    mrec = ws.get_model(model)
    names = list(drec.class_names)
    manifest = load_manifest(ws, dataset)
    disc = load_discovery(ws, dataset, model)
    K = disc.top_features.shape[0]
    gaps_meta = load_gaps(ws, dataset, model, split)
    per = pd.DataFrame(gaps_meta["per_class"][model]) if gaps_meta is not None else None
    classes_shown, how = choose_classes(per, K, max_classes)
    ranking = load_rankings(ws, dataset, model, split)
    progress(0.02, "classes chosen")
    classes = _feature_sections(ws, dataset, model, disc, current_verdicts(ws, dataset, model, quorum=quorum),
                                classes_shown, names, manifest.split("train"), n_images=n_images,
                                thumb_size=thumb_size, attack_steps=attack_steps, device=device,
                                progress=sub_progress(progress, 0.02, 0.6))
    rankings = _ranking_sections(ws, dataset, ranking, manifest.split(split), classes_shown, names,
                                 n_images=n_images, thumb_size=thumb_size, per_class=per)
    progress(0.85, "rankings")
    gaps_rows, pooled, figures = _gap_section(gaps_meta, model, names, classes_shown)
    unranked = unranked_table(per, ranking.classes_without_spurious, names) if per is not None else None
    collisions = load_collisions(ws, dataset, model)
    shown = coverage_sentence(len(classes_shown), K, how)
    coverage = {
        "classes": shown,
        "rankings": shown,
        "gaps": (f"The table lists all {int(per.ranked.astype(bool).sum()):,} ranked classes of {K:,}, largest gap "
                 "first; the bar chart shows "
                 + ("every ranked class." if len(classes_shown) >= K else
                    f"the ranked ones among the {len(classes_shown):,} classes above ({how}).")
                 if per is not None else ""),
        "collisions": (f"The first {min(100, len(collisions)):,} of {len(collisions):,} collisions, strongest first."
                       if collisions is not None and len(collisions) else ""),
    }
    sensitivity, sensitivity_figures = _sensitivity_section(load_sensitivity(ws, dataset, model))
    context = {"title": f"SpurAudit report — {dataset} / {model}", "split": split, "k": disc.top_features.shape[1],
               "group_by": disc.group_by, "verdict_rule": verdict_rule(quorum),
               "dataset": {"name": dataset, "summary": _dataset_summary(drec, manifest, names)},
               "model": {"name": model, "summary": _model_summary(mrec)},
               "classes": classes, "rankings": rankings, "pooled": pooled, "gaps": gaps_rows,
               "figures": figures + sensitivity_figures,
               "collisions": _collision_rows(collisions, names), "coverage": coverage,
               "unranked": {"summary": unranked_summary(unranked, K),
                            "rows": unranked.to_dict(orient="records")} if unranked is not None else None,
               "crops": load_crops(ws, dataset, model), "sensitivity": sensitivity, "runs": _run_rows(ws, dataset)}
    context.update(_study_section(ws, dataset, model))   # issue 14: the many-model studies of this ranking
    progress(0.95, "tables")
    return context


def _name(class_names: Sequence[str], c: int) -> str:
    return str(class_names[c]) if 0 <= c < len(class_names) else str(c)


def verdict_rule(quorum: int | None) -> str:
    """The verdict rule in words (`core.audit.labels.verdicts`), as the report states it."""
    return ("human answers are used when any exist for a (class, feature), else machine ones; spurious when "
            + (f"at least {quorum}" if quorum else "a strict majority") + " of those answers are spurious")


def _feature_sections(ws: Workspace, dataset: str, model: str, disc: DiscoveryResult, vt: pd.DataFrame,
                      classes_shown: list[int], names: Sequence[str], man_train: Manifest, *, n_images: int,
                      thumb_size: int, attack_steps: int, device: str, progress: ProgressFn) -> list[dict]:
    """Per shown class: its top features with importance, verdict and activation-map images (the
    feature's NAM over its (up to 3) top-activating training images of the class, then its attack from
    the top one when ``attack_steps`` > 0), rendered in batches into the workspace cache
    (`core.features.assets`)."""
    fs_train = load_features(ws, dataset, model, "train")
    audit_model = load_workspace_model(ws, model, device="cpu")
    vmap = {(int(r.class_index), int(r.feature)): r for r in vt.itertuples()}
    single = {}
    if disc.single_gaps is not None:
        single = {(int(r.class_index), int(r.feature)): float(r.gap) for r in disc.single_gaps.itertuples()}
    shown_rows = {(c, int(j)): top_activating_rows(fs_train, c, int(j), min(n_images, 3))
                  for c in classes_shown for j in disc.top_features[c]}
    overlay_pairs = [(int(r), j) for (c, j), rows in shown_rows.items() for r in rows]
    attack_pairs = [(int(rows[0]), j) for (c, j), rows in shown_rows.items() if len(rows)] if attack_steps > 0 else []
    overlays = render_overlays(ws, dataset, model, audit_model, man_train, overlay_pairs, size=thumb_size,
                               device=device, progress=sub_progress(progress, 0.0, 0.4 if attack_pairs else 0.6))
    attacks = render_attacks(ws, dataset, model, audit_model, man_train, attack_pairs, size=thumb_size,
                             steps=attack_steps, device=device,
                             progress=sub_progress(progress, 0.4, 0.6)) if attack_pairs else {}
    classes = []
    for c in classes_shown:
        feats = []
        for rank, j in enumerate(disc.top_features[c]):
            j = int(j)
            rows = shown_rows[(c, j)]
            imgs = [png_base64(overlays[(int(r), j)]) for r in rows]
            if attack_pairs and len(rows):
                imgs.append(png_base64(attacks[(int(rows[0]), j)]))
            v = vmap.get((c, j))
            g = single.get((c, j))
            feats.append(dict(feature=j, importance=float(disc.top_importance[c, rank]),
                              verdict=v.verdict if v is not None else "unlabelled",
                              kind=v.kind if v is not None else "", basis=v.basis if v is not None else "",
                              single_gap=None if g is None or np.isnan(g) else g, images=imgs))
        classes.append(dict(name=_name(names, c), index=c, features=feats))
    return classes


def _ranking_sections(ws: Workspace, dataset: str, ranking: SpuriosityResult, man_split: Manifest,
                      classes_shown: list[int], names: Sequence[str], *, n_images: int,
                      thumb_size: int, per_class: pd.DataFrame | None = None) -> list[dict]:
    """Per shown class: thumbnails of its lowest and highest spuriosity images (none when unranked,
    with the reason: `core.audit.coverage`)."""
    def thumbs(rows) -> list[str]:
        return [png_base64(cached_thumbnail(ws, dataset, man_split, int(r), size=thumb_size)) for r in rows]

    no_spur = set(ranking.classes_without_spurious)
    reasons = {}
    if per_class is not None and len(per_class):
        reasons = {int(r["class_index"]): r["why"] for r in unranked_table(per_class, no_spur).to_dict("records")}
    rankings = []
    for c in classes_shown:
        n = len(ranking.ranking(c))
        unranked = c in no_spur or n == 0
        why = reasons.get(c) or (REASONS[unranked_reason(n, 1, c not in no_spur) or NO_SPURIOUS] if unranked else "")
        rankings.append(dict(name=_name(names, c), unranked=unranked, why=why,
                             lowest=[] if unranked else thumbs(ranking.lowest(c, n_images)),
                             highest=[] if unranked else thumbs(ranking.highest(c, n_images))))
    return rankings


def _gap_section(gaps_meta: dict | None, model: str, names: Sequence[str], classes_shown: Sequence[int] = ()
                 ) -> tuple[list[dict], dict | None, list[go.Figure]]:
    """(per-class gap rows of the ranked classes, largest gap first; pooled gap; figures: bars of the
    shown classes, high-vs-low scatter of all, model correlation) of the audited model; empty when the
    gaps were never computed. Unranked classes are listed apart (`core.audit.coverage`)."""
    if gaps_meta is None:
        return [], None, []
    per = pd.DataFrame(gaps_meta["per_class"][model])
    ranked = per[per.ranked.astype(bool)].sort_values(["gap", "class_index"], ascending=[False, True], kind="stable")
    rows = [dict(r, name=_name(names, int(r["class_index"]))) for r in ranked.to_dict(orient="records")]
    shown = set(int(c) for c in classes_shown) if classes_shown else set(per.class_index.astype(int))
    bar_title = "Spurious gap per class" + (f" ({len(shown & set(ranked.class_index.astype(int))):,} shown classes)"
                                            if len(shown) < len(per) else "")
    figures = [plots.gap_bar(per[per.class_index.astype(int).isin(shown)], class_names=names, title=bar_title),
               plots.gap_scatter(per, class_names=names)]
    corr = pd.DataFrame(gaps_meta.get("correlation") or {})
    if corr.shape[0] > 1:
        figures.append(plots.model_gap_correlation(corr))
    return rows, gaps_meta["pooled"][model], figures


def _collision_rows(collisions: pd.DataFrame | None, names: Sequence[str]) -> list[dict]:
    """The first 100 collisions with both class names."""
    if collisions is None:
        return []
    return [dict(r, name=_name(names, int(r["class_index"])), other_name=_name(names, int(r["other_class"])))
            for r in collisions.head(100).to_dict(orient="records")]


def _sensitivity_section(table: pd.DataFrame | None) -> tuple[list[dict], list[go.Figure]]:
    """(pooled sensitivity rows, one bar chart per mask source)."""
    if table is None:
        return [], []
    pooled = table[table.class_index == -1]
    figures = [plots.sensitivity_bars(pooled[pooled.mask_source == src], title=f"Accuracy drop, mask from {src}")
               for src in pooled.mask_source.unique()]
    return pooled.to_dict(orient="records"), figures


def _run_rows(ws: Workspace, dataset: str) -> list[dict]:
    """Mitigation runs of the dataset (the audit's own gap runs left out), metrics as one line."""
    return [dict(id=r.id, method=r.method, status=r.status,
                 metrics=", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in sorted(r.metrics.items())))
            for r in ws.list_runs(dataset=dataset) if r.method != "audit-gaps"]


def _dataset_summary(drec: DatasetRecord, manifest: Manifest, names: Sequence[str]) -> dict:
    summary = manifest.summary()
    return {"source": drec.source, "classes": len(names), "images": summary.get("n"),
            **{f"{s} images": info["n"] for s, info in summary.get("splits", {}).items()}}


def _model_summary(mrec: ModelRecord) -> dict:
    return {"arch": mrec.arch, **{k: (f"{v:.4g}" if isinstance(v, float) else v)
                                  for k, v in (mrec.metrics or {}).items() if not isinstance(v, (dict, list))}}


# --------------------------------------------------------------------------------------------------
# issue 14: many-model studies ranked by this model (a small block of their own)
# --------------------------------------------------------------------------------------------------
def _study_section(ws: Workspace, dataset: str, model: str, *, max_studies: int = 3) -> dict:
    """{"studies": [{name, split, n_models, mean_pearson, slope, intercept, rows}], "study_figures": [...]}
    for the finished studies of ``dataset`` ranked by ``model`` (the newest ``max_studies``, newest first)."""
    studies, figures = [], []
    for s in sorted((load_study(ws, n) for n in list_studies(ws, dataset=dataset)),
                    key=lambda st: st.summary.get("finished", ""), reverse=True):
        name = s.name
        if s.ranking_model != model:
            continue
        fit = s.summary.get("fit") or {}
        rows = [{k: r.get(k) for k in ("model", "accuracy", "acc_high", "acc_low", "gap", "ci_low", "ci_high",
                                       "effective_robustness")} for r in s.summary.get("models", [])]
        studies.append({"name": name, "split": s.summary["config"]["split"], "n_models": len(rows),
                        "mean_pearson": s.summary.get("mean_pairwise_pearson"), "slope": fit.get("slope"),
                        "intercept": fit.get("intercept"), "rows": rows})
        figures += [f for f in (s.scatter, s.heatmap) if f is not None]
        if len(studies) >= max_studies:
            break
    return {"studies": studies, "study_figures": figures}
