"""The read side of an audit: the names of its files and the functions that read them back.

`core.audit.pipeline` (the write side) writes these files through the workspace; the report
(`core.report`), the mitigation runner and the dashboard read them only through this module, so a
file name lives in one place. Layout, per (dataset, model), under ``audits/<dataset>/<model>/``
(the attribute of `AuditFiles` in brackets):

- ``discovery.json`` [discovery]: split, k, grouping, top features (K, k), their importances, counts,
  fallback classes, single-feature gaps; ``importance.npy`` [importance] (K, D) float32;
  ``discovery.csv`` [discovery_table] one row per (class, rank);
- ``verdicts.csv`` [verdicts]: the label verdicts at the time of the last ranking;
- ``rankings/<split>.scores.npy`` [ranking_scores(split)] (N,) float32 spuriosity, NaN = class not
  ranked; ``rankings/<split>.json`` [ranking_meta(split)] spurious features used, unranked classes,
  quorum; ``rankings/<split>.csv`` [ranking_table(split)] sample_id, row, class_index, spuriosity,
  rank_in_class (ascending spuriosity);
- ``gaps/<split>.json`` [gaps_meta(split)] per class and pooled, per evaluated model, and their
  correlation; ``gaps/<split>.csv`` [gaps_table(split)] per class, one gap column per further model;
- ``collisions.csv`` [collisions], ``collisions_summary.json`` [collisions_summary];
- ``crops.json`` [crops], ``sensitivity.csv`` [sensitivity] (one row set per mask source);
- ``summary.json`` [summary]: what `run_audit` returned; written last, so it marks a finished audit;
- ``chain.json`` [chain]: the steps of the last audit chain (`core.audit.chain`; `load_chain_state`).
- ``salient_masks/`` [salient_masks]: imported Salient ImageNet soft masks (`core.audit.salient_masks`:
  ``masks.npy``, ``index.csv``, ``meta.json``; `load_salient_masks`).

The report of (dataset, model) is ``reports/<dataset>__<model>.html`` [report], its CSV/JSON exports
lie in ``reports/<dataset>__<model>/`` [exports].

Runs (`core.workspace.RunRecord`) record their artifacts by name -> absolute path; `load_run_json`,
`load_comparison`, `load_comparison_figure` and `load_run_gaps` read those of mitigation runs
(written by `core.mitigate.runner`).

Loaders of optional files return None when the file is missing; the loaders of what later steps
need (`load_discovery`, `load_rankings`) raise `SpurAuditError` naming the command that creates it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.io as pio

from core.audit.discover import DiscoveryResult
from core.audit.labels import VerdictConfig, verdicts
from core.audit.spuriosity import SpuriosityResult, class_score_order
from core.errors import SpurAuditError
from core.features.store import load_features
from core.workspace import RunRecord, Workspace

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["AuditFiles", "audit_files", "audit_dir", "report_path", "has_discovery", "has_ranking",
           "ranked_splits", "audited_models", "load_discovery", "current_verdicts", "load_rankings",
           "load_ranking_table", "load_gaps", "load_gaps_table", "load_collisions", "load_crops",
           "load_sensitivity", "load_summary", "load_chain_state", "load_run_json", "load_comparison", "load_comparison_figure",
           "load_run_gaps"]

AUDITS = "audits"
REPORTS = "reports"
SUMMARY = "summary.json"


def _file(name: str) -> property:
    """A path of the audit folder (a read-only attribute of `AuditFiles`)."""
    return property(lambda self: f"{self.folder}/{name}", doc=f"``<folder>/{name}``")


def _split_file(pattern: str) -> Callable[["AuditFiles", str], str]:
    """A per-split path of the audit folder (a method of `AuditFiles` taking the split)."""
    def path(self: "AuditFiles", split: str) -> str:
        return f"{self.folder}/{pattern.format(split=split)}"

    path.__doc__ = f"``<folder>/{pattern}``"
    return path


@dataclass(frozen=True)
class AuditFiles:
    """Workspace-relative paths of the audit artifacts of (dataset, model) (see the module docstring)."""

    dataset: str
    model: str

    @property
    def folder(self) -> str:
        return f"{AUDITS}/{self.dataset}/{self.model}"

    # run_discovery (on train)
    discovery = _file("discovery.json")
    discovery_table = _file("discovery.csv")
    importance = _file("importance.npy")
    # run_rankings: the verdicts it ranked with, then per split
    verdicts = _file("verdicts.csv")
    ranking_scores = _split_file("rankings/{split}.scores.npy")
    ranking_meta = _split_file("rankings/{split}.json")
    ranking_table = _split_file("rankings/{split}.csv")
    # run_gaps, per split
    gaps_meta = _split_file("gaps/{split}.json")
    gaps_table = _split_file("gaps/{split}.csv")
    # run_collisions, run_core_crops, run_sensitivity
    collisions = _file("collisions.csv")
    collisions_summary = _file("collisions_summary.json")
    crops = _file("crops.json")
    sensitivity = _file("sensitivity.csv")
    # run_audit, last
    summary = _file(SUMMARY)
    # core.audit.chain: the state of the audit chain's steps
    chain = _file("chain.json")
    # core.audit.salient_masks: imported Salient ImageNet masks (masks.npy, index.csv, meta.json; issue 14)
    salient_masks = _file("salient_masks")

    @property
    def report(self) -> str:
        """``reports/<dataset>__<model>.html``"""
        return f"{REPORTS}/{self.dataset}__{self.model}.html"

    @property
    def exports(self) -> str:
        """``reports/<dataset>__<model>/`` (the CSV/JSON exports beside the report)"""
        return f"{REPORTS}/{self.dataset}__{self.model}"


def audit_files(dataset: str, model: str) -> AuditFiles:
    return AuditFiles(dataset, model)


def audit_dir(dataset: str, model: str) -> str:
    """``audits/<dataset>/<model>`` (workspace-relative)."""
    return audit_files(dataset, model).folder


def report_path(ws: Workspace, dataset: str, model: str) -> Path:
    """Absolute path of the HTML report of (dataset, model) (it may not exist yet)."""
    return ws.path(audit_files(dataset, model).report)


def load_report(ws: Workspace, dataset: str, model: str) -> bytes | None:
    """The HTML report of (dataset, model) as bytes (for a download), or None when none was written."""
    path = report_path(ws, dataset, model)
    return path.read_bytes() if path.is_file() else None


# ------------------------------------------------------------------------------------------------
# does it exist
# ------------------------------------------------------------------------------------------------
def has_discovery(ws: Workspace, dataset: str, model: str) -> bool:
    return ws.path(audit_files(dataset, model).discovery).exists()


def has_ranking(ws: Workspace, dataset: str, model: str, split: str) -> bool:
    return ws.path(audit_files(dataset, model).ranking_meta(split)).exists()


def ranked_splits(ws: Workspace, dataset: str, model: str, splits: Sequence[str]) -> list[str]:
    """The splits of ``splits`` (order kept) that have a saved ranking."""
    return [s for s in splits if has_ranking(ws, dataset, model, s)]


def audited_models(ws: Workspace, dataset: str) -> list[str]:
    """Models of ``dataset`` whose whole audit finished (``summary.json`` written), sorted."""
    return sorted(p.parent.name for p in ws.path(f"{AUDITS}/{dataset}").glob(f"*/{SUMMARY}"))


# ------------------------------------------------------------------------------------------------
# what later steps need (missing: SpurAuditError naming the command)
# ------------------------------------------------------------------------------------------------
def load_discovery(ws: Workspace, dataset: str, model: str) -> DiscoveryResult:
    """The saved discovery of (dataset, model); SpurAuditError naming the command when missing."""
    files = audit_files(dataset, model)
    meta = ws.read_json(files.discovery)
    if meta is None:
        raise SpurAuditError(f"no discovery saved for {dataset}/{model}; run "
                             f"`python -m core discover --dataset {dataset} --model {model}` first")
    importance = np.asarray(ws.open_npy(files.importance, mmap=False))
    single = pd.DataFrame(meta["single_gaps"]) if meta.get("single_gaps") else None
    return DiscoveryResult(importance=importance, top_features=np.asarray(meta["top_features"], dtype=np.int64),
                           top_importance=np.asarray(meta["top_importance"], dtype=np.float32),
                           counts=np.asarray(meta["counts"]), group_by=meta["group_by"], single_gaps=single,
                           fallback_classes=list(meta.get("fallback_classes", [])))


def current_verdicts(ws: Workspace, dataset: str, model: str, *, quorum: int | None = None) -> pd.DataFrame:
    """Verdict table derived from every stored answer (human first, machine otherwise)."""
    return verdicts(ws.labels(dataset, model), config=VerdictConfig(quorum=quorum))


def load_rankings(ws: Workspace, dataset: str, model: str, split: str) -> SpuriosityResult:
    """The saved ranking of ``split`` (order rebuilt from the saved scores and the split's labels)."""
    files = audit_files(dataset, model)
    meta = ws.read_json(files.ranking_meta(split))
    if meta is None:
        raise SpurAuditError(f"no ranking saved for {dataset}/{model}/{split}; run "
                             f"`python -m core rank --dataset {dataset} --model {model} --split {split}`")
    scores = np.asarray(ws.open_npy(files.ranking_scores(split), mmap=False))
    labels = load_features(ws, dataset, model, split).labels
    K = len(meta["spurious"])
    order = class_score_order(labels, scores)
    start = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=K), out=start[1:])
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=start,
                            spurious={int(c): v for c, v in meta["spurious"].items()},
                            classes_without_spurious=list(meta["classes_without_spurious"]))


# ------------------------------------------------------------------------------------------------
# optional results (missing: None)
# ------------------------------------------------------------------------------------------------
def _csv(ws: Workspace, rel: str) -> pd.DataFrame | None:
    path = ws.path(rel)
    return pd.read_csv(path) if path.exists() else None


def load_ranking_table(ws: Workspace, dataset: str, model: str, split: str) -> pd.DataFrame | None:
    """``rankings/<split>.csv``: one row per image in ascending spuriosity within its class."""
    return _csv(ws, audit_files(dataset, model).ranking_table(split))


def load_gaps(ws: Workspace, dataset: str, model: str, split: str) -> dict | None:
    """``gaps/<split>.json``: {split, models, config, pooled: {model: dict}, per_class: {model: [rows]},
    correlation: {model: {model: float}}}."""
    return ws.read_json(audit_files(dataset, model).gaps_meta(split))


def load_gaps_table(ws: Workspace, dataset: str, model: str, split: str) -> pd.DataFrame | None:
    """``gaps/<split>.csv``: per class the audited model's gap row plus ``gap_<model>`` per further model."""
    return _csv(ws, audit_files(dataset, model).gaps_table(split))


def load_collisions(ws: Workspace, dataset: str, model: str) -> pd.DataFrame | None:
    """``collisions.csv``: spurious (class, feature) pairs that are core features of another class."""
    return _csv(ws, audit_files(dataset, model).collisions)


def load_crops(ws: Workspace, dataset: str, model: str) -> dict | None:
    """``crops.json``: accuracy before/after core crops (pooled and per class), split, fraction."""
    return ws.read_json(audit_files(dataset, model).crops)


def load_sensitivity(ws: Workspace, dataset: str, model: str) -> pd.DataFrame | None:
    """``sensitivity.csv``: accuracy drops per mask source, corruption and class (class_index -1 = all)."""
    return _csv(ws, audit_files(dataset, model).sensitivity)


def load_chain_state(ws: Workspace, dataset: str, model: str) -> dict | None:
    """``chain.json``: the audit chain's steps (status, seconds, error) as `core.audit.chain` left them."""
    return ws.read_json(audit_files(dataset, model).chain)


def load_summary(ws: Workspace, dataset: str, model: str) -> dict | None:
    """``summary.json``: the summary `run_audit` returned (present once a whole audit finished)."""
    return ws.read_json(audit_files(dataset, model).summary)


# ------------------------------------------------------------------------------------------------
# artifacts of runs (mitigation runs record name -> absolute path)
# ------------------------------------------------------------------------------------------------
def load_run_json(run: RunRecord, name: str) -> Any:
    """The JSON artifact ``name`` of ``run``, or None when the run has none (or its file is gone)."""
    path = run.artifacts.get(name)
    if path is None or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_comparison(run: RunRecord) -> dict | None:
    """The table of a "compare" run: {split, summary: [per-method rows], pooled_gaps, gaps, ...}."""
    return load_run_json(run, "comparison_json")


def load_comparison_figure(run: RunRecord) -> go.Figure | None:
    """The figure a "compare" (or "sweep") run saved, or None."""
    path = run.artifacts.get("figure_json")
    if path is None or not Path(path).exists():
        return None
    return pio.from_json(Path(path).read_text(encoding="utf-8"))


def load_run_gaps(run: RunRecord) -> dict | None:
    """Per-class spurious gaps of a single-method run: {split, before: [rows], after: [rows], ...}."""
    return load_run_json(run, "gaps")
