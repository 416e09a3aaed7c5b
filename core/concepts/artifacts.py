"""Where concept results live and how they are read: named **concept rankings** (a per-image
spuriosity measured by CLIP similarity to concept texts, e.g. "by concept: water"), which the
Rankings and Gaps pages, the report and the gap code use exactly like a ranking by neural features.

Layout under ``concepts/<dataset>/rankings/<name>/``:

* ``meta.json`` — name, the global spurious and core concept texts, ``core_default`` ("class name":
  each class's core is its own name; "given": the global core list), ``per_class`` (the overridden
  classes by name: ``{class: {"spurious": [...], "core": [...]}}``, a kind left out keeps its
  default), ``columns`` (the concept text of each score column), the CLIP model, the splits scored
  and, per split, the AUROC of aligned vs conflicting images when the manifest knows;
* ``<split>.scores.npy`` — (N, T) float32 CLIP similarity of each image to each concept text
  (column t = ``columns[t]``);
* ``<split>.spuriosity.npy`` — (N,) float32 spuriosity (higher = more of the spurious concepts, less
  of the core ones; within-class z-scores, NaN where a class has no spurious concept), rows aligned
  with ``manifest.split(split)`` (ascending sample_id).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from core.audit.spuriosity import SpuriosityResult, class_score_order
from core.errors import SpurAuditError
from core.workspace import Workspace

ROOT = "concepts"


def concept_ranking_dir(dataset: str, name: str) -> str:
    """Workspace-relative folder of the concept ranking ``name`` of ``dataset``."""
    return f"{ROOT}/{dataset}/rankings/{name}"


def ranking_name(concepts: list[str]) -> str:
    """A folder-safe default name from the spurious concept texts ("water, sky" -> "water-sky")."""
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(concepts).lower()).strip("-")
    return (slug or "concepts")[:60]


@dataclass
class ConceptRanking:
    """What `list_concept_rankings` returns about one saved concept ranking."""

    name: str
    concepts: list[str]
    core_concepts: list[str] = field(default_factory=list)
    per_class: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    core_default: str = "given"
    columns: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    clip: dict = field(default_factory=dict)
    auroc: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a page names it: ``by concept: water, sky`` (+ ``(own concepts for 3 classes)`` when
        some classes have per-class overrides)."""
        own = f" (own concepts for {len(self.per_class)} class{'es' if len(self.per_class) != 1 else ''})" \
            if self.per_class else ""
        return "by concept: " + ", ".join(self.concepts or [self.name]) + own


def list_concept_rankings(ws: Workspace, dataset: str, *, split: str | None = None) -> list[ConceptRanking]:
    """The saved concept rankings of ``dataset`` (only those scored on ``split`` when given), by name."""
    base = ws.path(f"{ROOT}/{dataset}/rankings")
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        meta = ws.read_json(f"{concept_ranking_dir(dataset, folder.name)}/meta.json")
        if not meta:
            continue
        ranking = ConceptRanking(name=folder.name, concepts=list(meta.get("concepts", [])),
                                 core_concepts=list(meta.get("core_concepts", [])),
                                 per_class=dict(meta.get("per_class", {})),
                                 core_default=str(meta.get("core_default", "given")),
                                 columns=list(meta.get("columns", [])), splits=list(meta.get("splits", [])),
                                 clip=dict(meta.get("clip", {})), auroc=dict(meta.get("auroc", {})))
        if split is None or split in ranking.splits:
            out.append(ranking)
    return out


def save_concept_ranking(ws: Workspace, dataset: str, name: str, split: str, *, scores: np.ndarray,
                         spuriosity: np.ndarray, concepts: list[str], core_concepts: list[str] = (),
                         per_class: dict[str, dict[str, list[str]]] | None = None, columns: list[str] | None = None,
                         core_default: str = "given", clip: dict | None = None, auroc: float | None = None) -> str:
    """Write split ``split`` of concept ranking ``name`` (the layout above) and merge its meta.json
    (splits and per-split AUROC kept from earlier splits). ``scores`` (N, T) CLIP similarities
    (``columns``: the T concept texts; default ``concepts + core_concepts``),
    ``spuriosity`` (N,) rows aligned with ``manifest.split(split)``. Returns the ranking's folder."""
    spuriosity = np.asarray(spuriosity, dtype=np.float32)
    if spuriosity.ndim != 1 or len(np.asarray(scores)) != len(spuriosity):
        raise SpurAuditError(f"concept ranking {name!r}: scores have {len(np.asarray(scores))} rows, spuriosity "
                             f"shape {spuriosity.shape}; both need one row per image of the split")
    columns = list(columns) if columns is not None else list(concepts) + list(core_concepts)
    if np.asarray(scores).ndim != 2 or np.asarray(scores).shape[1] != len(columns):
        raise SpurAuditError(f"concept ranking {name!r}: scores have shape {np.asarray(scores).shape} but "
                             f"{len(columns)} concept columns are named; give one column per concept text")
    base = concept_ranking_dir(dataset, name)
    ws.save_npy(f"{base}/{split}.scores.npy", np.asarray(scores, dtype=np.float32))
    ws.save_npy(f"{base}/{split}.spuriosity.npy", spuriosity)
    meta = ws.read_json(f"{base}/meta.json", {}) or {}
    aurocs = dict(meta.get("auroc", {}))
    if auroc is not None:
        aurocs[split] = float(auroc)
    ws.write_json(f"{base}/meta.json", {"name": name, "concepts": list(concepts), "core_concepts": list(core_concepts),
                                        "core_default": core_default, "per_class": dict(per_class or {}),
                                        "columns": columns, "clip": dict(clip or {}), "auroc": aurocs,
                                        "splits": sorted(set(meta.get("splits", [])) | {split})})
    return base


def load_concept_scores(ws: Workspace, dataset: str, name: str, split: str) -> np.ndarray:
    """(N,) float32 spuriosity of ``split`` under concept ranking ``name``."""
    rel = f"{concept_ranking_dir(dataset, name)}/{split}.spuriosity.npy"
    if not ws.path(rel).is_file():
        known = ", ".join(r.name for r in list_concept_rankings(ws, dataset)) or "none yet"
        raise SpurAuditError(f"no concept ranking {name!r} of {dataset}/{split} (saved: {known}); run it on the "
                             "Automation page or with `python -m core concepts clip-rank`")
    return np.asarray(ws.open_npy(rel, mmap=False), dtype=np.float32)


def load_concept_ranking(ws: Workspace, dataset: str, name: str, split: str, labels: np.ndarray,
                         num_classes: int) -> SpuriosityResult:
    """The concept ranking ``name`` of ``split`` as a `SpuriosityResult` (same order rules as every
    ranking: `class_score_order`), ready for `core.audit.gaps.spurious_gaps`. ``labels`` (N,) int64
    are the split's class labels (e.g. a feature set's ``labels``); classes whose scores are all NaN
    are reported unranked."""
    scores = load_concept_scores(ws, dataset, name, split)
    labels = np.asarray(labels, dtype=np.int64)
    if len(scores) != len(labels):
        raise SpurAuditError(f"concept ranking {name!r} has {len(scores)} rows but {dataset}/{split} has {len(labels)}; "
                             "the split changed since it was scored: run the concept ranking again")
    start = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=num_classes), out=start[1:])
    unranked = [c for c in range(num_classes) if not np.isfinite(scores[labels == c]).any()]
    return SpuriosityResult(scores=scores, labels=labels, order=class_score_order(labels, scores), class_start=start,
                            spurious={c: [] for c in range(num_classes)}, classes_without_spurious=unranked)


__all__ = ["ROOT", "ConceptRanking", "concept_ranking_dir", "ranking_name", "list_concept_rankings",
           "save_concept_ranking", "load_concept_scores",
           "load_concept_ranking"]
