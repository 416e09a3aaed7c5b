"""Where a study's files live and how they are read (the one place that names them).

Under ``studies/<name>/`` (``name`` defaults to ``<dataset>__<ranking model>__<split>``):

| file | content |
|---|---|
| ``state.json`` | config, and per model label: its spec identity and the predictions file (resume) |
| ``preds/<i>.npy`` | (N,) int32 predicted class of model i on the ranked split |
| ``study.json`` | config, models table, fit, correlation (pearson, spearman), mean pairwise correlation |
| ``models.csv`` / ``per_class.csv`` / ``correlation.csv`` | the tables |
| ``scatter.json`` / ``heatmap.json`` | the Plotly figures (``plotly.io.to_json``) |
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from core.errors import SpurAuditError
from core.workspace import Workspace

STUDIES_DIR = "studies"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

__all__ = ["Study", "StudyFiles", "default_study_name", "study_files", "list_studies", "load_study", "has_study"]


def default_study_name(dataset: str, ranking_model: str, split: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", f"{dataset}__{ranking_model}__{split}")


@dataclass(frozen=True)
class StudyFiles:
    name: str

    @property
    def folder(self) -> str:
        return f"{STUDIES_DIR}/{self.name}"

    def pred(self, index: int) -> str:
        return f"{self.folder}/preds/{int(index)}.npy"

    state = property(lambda self: f"{self.folder}/state.json")
    summary = property(lambda self: f"{self.folder}/study.json")
    models = property(lambda self: f"{self.folder}/models.csv")
    per_class = property(lambda self: f"{self.folder}/per_class.csv")
    correlation = property(lambda self: f"{self.folder}/correlation.csv")
    scatter = property(lambda self: f"{self.folder}/scatter.json")
    heatmap = property(lambda self: f"{self.folder}/heatmap.json")


def study_files(name: str) -> StudyFiles:
    if not name or not _NAME_RE.match(name):
        raise SpurAuditError(f"study name {name!r}: use letters, digits and _ . - only")
    return StudyFiles(name)


@dataclass
class Study:
    """A finished study as read back: ``summary`` (study.json), tables, figures."""

    name: str
    summary: dict
    models: pd.DataFrame
    per_class: pd.DataFrame
    correlation: pd.DataFrame
    scatter: go.Figure | None
    heatmap: go.Figure | None

    @property
    def dataset(self) -> str:
        return self.summary["config"]["dataset"]

    @property
    def ranking_model(self) -> str:
        return self.summary["config"]["ranking_model"]


def has_study(ws: Workspace, name: str) -> bool:
    return ws.path(study_files(name).summary).is_file()


def _figure(ws: Workspace, rel: str) -> go.Figure | None:
    p = ws.path(rel)
    return pio.from_json(p.read_text(encoding="utf-8")) if p.is_file() else None


def load_study(ws: Workspace, name: str) -> Study:
    """The finished study ``name`` (`SpurAuditError` with the command when there is none)."""
    files = study_files(name)
    summary = ws.read_json(files.summary, None)
    if summary is None:
        raise SpurAuditError(f"no finished study {name!r}; run `python -m core study --dataset D --ranking-model M "
                             f"--models a,b,c --name {name}` (see `python -m core study --help`)")
    corr = pd.read_csv(ws.path(files.correlation), index_col=0)
    return Study(name=name, summary=summary, models=pd.read_csv(ws.path(files.models)),
                 per_class=pd.read_csv(ws.path(files.per_class)), correlation=corr,
                 scatter=_figure(ws, files.scatter), heatmap=_figure(ws, files.heatmap))


def list_studies(ws: Workspace, *, dataset: str | None = None) -> list[str]:
    """Names of the finished studies (optionally of one dataset), sorted."""
    root = ws.path(STUDIES_DIR)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name)):
        summary = ws.read_json(f"{STUDIES_DIR}/{d.name}/study.json", None)
        if summary and (dataset is None or summary.get("config", {}).get("dataset") == dataset):
            out.append(d.name)
    return out
