"""The context of the audit report, gathered from a workspace (see `core.report.render.render_report`
for its keys). Everything is read through `core.audit.artifacts` (the audit's files) and the
workspace records; images are inlined as base64 PNG from the workspace's image cache
(`core.features.maps`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from core.audit import plots
from core.audit.artifacts import (current_verdicts, load_collisions, load_crops, load_discovery, load_gaps,
                                  load_rankings, load_sensitivity)
from core.audit.discover import DiscoveryResult
from core.audit.spuriosity import SpuriosityResult
from core.data import load_manifest
from core.data.manifest import Manifest
from core.features.maps import cached_attack, cached_overlay, cached_thumbnail
from core.features.store import FeatureSet, load_features
from core.models.checkpoints import load_workspace_model
from core.progress import ProgressFn, null_progress
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
    classes_shown = list(range(K if max_classes is None else min(K, max_classes)))
    classes = _feature_sections(ws, dataset, model, disc, current_verdicts(ws, dataset, model, quorum=quorum),
                                classes_shown, names, manifest.split("train"), n_images=n_images,
                                thumb_size=thumb_size, attack_steps=attack_steps, device=device, progress=progress)
    rankings = _ranking_sections(ws, dataset, load_rankings(ws, dataset, model, split), manifest.split(split),
                                 classes_shown, names, n_images=n_images, thumb_size=thumb_size)
    progress(0.85, "rankings")
    gaps_rows, pooled, figures = _gap_section(load_gaps(ws, dataset, model, split), model, names)
    sensitivity, sensitivity_figures = _sensitivity_section(load_sensitivity(ws, dataset, model))
    context = {"title": f"SpurAudit report — {dataset} / {model}", "split": split, "k": disc.top_features.shape[1],
               "group_by": disc.group_by, "verdict_rule": verdict_rule(quorum),
               "dataset": {"name": dataset, "summary": _dataset_summary(drec, manifest, names)},
               "model": {"name": model, "summary": _model_summary(mrec)},
               "classes": classes, "rankings": rankings, "pooled": pooled, "gaps": gaps_rows,
               "figures": figures + sensitivity_figures,
               "collisions": _collision_rows(load_collisions(ws, dataset, model), names),
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
    """Per shown class: its top features with importance, verdict and activation-map images."""
    fs_train = load_features(ws, dataset, model, "train")
    audit_model = load_workspace_model(ws, model, device="cpu")
    vmap = {(int(r.class_index), int(r.feature)): r for r in vt.itertuples()}
    single = {}
    if disc.single_gaps is not None:
        single = {(int(r.class_index), int(r.feature)): float(r.gap) for r in disc.single_gaps.itertuples()}
    classes = []
    for i, c in enumerate(classes_shown):
        idx = fs_train.class_rows(c)
        feats = []
        for rank, j in enumerate(disc.top_features[c]):
            j = int(j)
            imgs = _feature_images(ws, dataset, model, audit_model, fs_train, man_train, idx, j, n_images=n_images,
                                   thumb_size=thumb_size, attack_steps=attack_steps, device=device)
            v = vmap.get((c, j))
            g = single.get((c, j))
            feats.append(dict(feature=j, importance=float(disc.top_importance[c, rank]),
                              verdict=v.verdict if v is not None else "unlabelled",
                              kind=v.kind if v is not None else "", basis=v.basis if v is not None else "",
                              single_gap=None if g is None or np.isnan(g) else g, images=imgs))
        classes.append(dict(name=_name(names, c), index=c, features=feats))
        progress(0.6 * (i + 1) / len(classes_shown), "feature visualisations")
    return classes


def _feature_images(ws: Workspace, dataset: str, model: str, audit_model: torch.nn.Module, fs_train: FeatureSet,
                    man_train: Manifest, idx: np.ndarray, feature: int, *, n_images: int, thumb_size: int,
                    attack_steps: int, device: str) -> list[str]:
    """Base64 PNGs: the feature's NAM over its (up to 3) top-activating images ``idx`` of the class,
    then its attack from the top one when ``attack_steps`` > 0 (both cached in the workspace)."""
    if not len(idx):
        return []
    act = np.asarray(fs_train.features[idx, feature], dtype=np.float32)
    best = idx[np.argsort(-act, kind="stable")[:min(n_images, 3)]]
    imgs = [png_base64(cached_overlay(ws, dataset, model, audit_model, man_train, int(r), feature,
                                      size=thumb_size, device=device)) for r in best]
    if attack_steps > 0:
        imgs.append(png_base64(cached_attack(ws, dataset, model, audit_model, man_train, int(best[0]), feature,
                                             size=thumb_size, steps=attack_steps, device=device)))
    return imgs


def _ranking_sections(ws: Workspace, dataset: str, ranking: SpuriosityResult, man_split: Manifest,
                      classes_shown: list[int], names: Sequence[str], *, n_images: int,
                      thumb_size: int) -> list[dict]:
    """Per shown class: thumbnails of its lowest and highest spuriosity images (none when unranked)."""
    def thumbs(rows) -> list[str]:
        return [png_base64(cached_thumbnail(ws, dataset, man_split, int(r), size=thumb_size)) for r in rows]

    rankings = []
    for c in classes_shown:
        unranked = c in ranking.classes_without_spurious or len(ranking.ranking(c)) == 0
        rankings.append(dict(name=_name(names, c), unranked=unranked,
                             lowest=[] if unranked else thumbs(ranking.lowest(c, n_images)),
                             highest=[] if unranked else thumbs(ranking.highest(c, n_images))))
    return rankings


def _gap_section(gaps_meta: dict | None, model: str, names: Sequence[str]
                 ) -> tuple[list[dict], dict | None, list[go.Figure]]:
    """(per-class gap rows, pooled gap, figures: bars, high-vs-low scatter, model correlation) of the
    audited model; empty when the gaps were never computed."""
    if gaps_meta is None:
        return [], None, []
    per = pd.DataFrame(gaps_meta["per_class"][model])
    rows = [dict(r, name=_name(names, int(r["class_index"]))) for r in per.to_dict(orient="records")]
    figures = [plots.gap_bar(per, class_names=names), plots.gap_scatter(per, class_names=names)]
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
