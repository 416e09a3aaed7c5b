"""Workspace-level concept steps: SAM-IoU feature labels, CLIP concept spuriosity, CLIP feature labels.

Each reads the workspace (dataset manifest, discovery, feature store), runs a backend, and writes its
results through the workspace: labels with source ``sam_iou`` / ``clip`` (never overwriting a person's
answers: verdicts prefer human answers), named concept rankings under ``concepts/<dataset>/rankings/`` (`core.concepts.artifacts`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from core.audit.artifacts import load_discovery
from core.audit.labels import MaskLabelConfig
from core.audit.pipeline import run_mask_labels
from core.concepts.artifacts import concept_ranking_dir, ranking_name, save_concept_ranking
from core.concepts.clip import ClipConfig, ClipScorer, class_concept_spuriosity, suggest_feature_labels
from core.concepts.sam import SamConfig, SamSegmenter
from core.concepts.vocabulary import check_per_class, class_concepts
from core.data import load_manifest
from core.errors import SpurAuditError
from core.features.store import load_features
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import Workspace, check_name


def run_sam_labels(ws: Workspace, dataset: str, model: str, *, sam: SamConfig | None = None, split: str = "train",
                   device: str = "auto", progress: ProgressFn | None = None) -> int:
    """Label the discovered (class, feature) pairs by IoU with SAM object masks (source ``sam_iou``).

    Needs a discovery (``python -m core discover``). Returns the number of labels written.
    """
    segmenter = SamSegmenter(sam or SamConfig(), device=device)
    # SAM masks are filled regions: compare with the feature mask at the object's own area, as the
    # IoU thresholds calibrated on thin digit strokes do not carry over (see MaskLabelConfig).
    config = MaskLabelConfig(quantile="object", core_iou=0.5, spurious_iou=0.3)
    return run_mask_labels(ws, dataset, model, split=split, config=config, device=device,
                           segmenter=lambda image: segmenter.object_mask(image)[0], progress=progress)


def _split_images(ws: Workspace, dataset: str, split: str, *, progress: ProgressFn) -> tuple[torch.Tensor, np.ndarray, object]:
    manifest = load_manifest(ws, dataset).split(split)
    if len(manifest) == 0:
        raise SpurAuditError(f"dataset {dataset!r} has no {split!r} rows")
    x, y = manifest.load_tensors(progress=progress)
    return x, y.numpy(), manifest


def run_clip_spuriosity(ws: Workspace, dataset: str, *, concepts: Sequence[str],
                        core_concepts: Sequence[str] | None = None,
                        per_class: Mapping[int | str, Mapping[str, Sequence[str]]] | None = None,
                        clip: ClipConfig | None = None, split: str = "val", name: str | None = None,
                        device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Score every image of ``split`` with CLIP against its own class's concepts and z-score within
    class (`core.concepts.clip.class_concept_spuriosity`); saved as the concept ranking ``name``
    (default: from the concept texts) in the layout of `core.concepts.artifacts` (a ranking the pages
    and the gap code read like a feature ranking).

    Concepts per class (`core.concepts.vocabulary.class_concepts`): the spurious ``concepts`` for every
    class; as core, ``core_concepts`` for every class when given, else the class's own name;
    ``per_class`` (``{class name or index: {"spurious": [...], "core": [...]}}``) overrides either list
    for the classes it names. Every distinct text is embedded once: the saved scores have one column
    per text (meta ``columns``).

    When the manifest knows which images are bias-aligned, the summary includes the AUROC of the
    spuriosity for telling aligned from conflicting images (1.0 = the concept is exactly the bias).
    """
    progress = progress or null_progress
    concepts = [c.strip() for c in concepts if c and c.strip()]
    if not concepts:
        raise SpurAuditError("name at least one spurious concept, e.g. --concept water")
    shared_core = None if core_concepts is None else [c.strip() for c in core_concepts if c and c.strip()]
    name = name or ranking_name(concepts)
    check_name("concept ranking", name)
    class_names = [str(n) for n in load_manifest(ws, dataset).class_names]
    # validated before CLIP is built or any image is read: a bad override fails fast
    overrides = {class_names[c]: v for c, v in sorted(check_per_class(per_class, class_names).items())}
    per_class_texts = class_concepts(class_names, spurious=concepts, core=shared_core, per_class=overrides)
    scorer = ClipScorer(clip or ClipConfig(), device=device)
    x, labels, manifest = _split_images(ws, dataset, split, progress=sub_progress(progress, 0.0, 0.2))
    # the union of every class's texts, first-seen order (a dict keeps the order, and is fast at 1,000 classes)
    col = {t: i for i, t in enumerate(dict.fromkeys(t for e in per_class_texts for t in e["spurious"] + e["core"]))}
    columns = list(col)
    scores = scorer.concept_scores(x, columns, progress=sub_progress(progress, 0.2, 0.95))    # (N, T)
    spur = class_concept_spuriosity(
        scores, labels, spurious={c: [col[t] for t in e["spurious"]] for c, e in enumerate(per_class_texts)},
        core={c: [col[t] for t in e["core"]] for c, e in enumerate(per_class_texts)})
    base = concept_ranking_dir(dataset, name)
    table = ws.concepts(dataset)
    known = set(zip(table.text, table.class_index.map(lambda v: None if pd.isna(v) else int(v)), table.kind)) \
        if len(table) else set()
    wanted = [(t, None, "spurious") for t in concepts] + [(t, None, "core") for t in shared_core or []]
    index = {n: c for c, n in enumerate(class_names)}
    wanted += [(t, index[cls], kind) for cls, entry in overrides.items()
               for kind, texts in entry.items() for t in texts]
    for text, class_index, kind in wanted:
        if (text, class_index, kind) not in known:
            ws.add_concept(dataset=dataset, text=text, class_index=class_index, kind=kind)
            known.add((text, class_index, kind))
    summary = {"dataset": dataset, "split": split, "name": name, "concepts": concepts,
               "core_concepts": shared_core or [], "core_default": "given" if shared_core is not None else "class name",
               "per_class": overrides,
               "clip": {"model": scorer.config.model_name, "pretrained": scorer.config.pretrained},
               "n": int(len(spur)), "scores": f"{base}/{split}.scores.npy",
               "spuriosity": f"{base}/{split}.spuriosity.npy"}
    aligned = manifest.aligned
    auroc = None
    finite = np.isfinite(spur)
    if aligned is not None and finite.any():
        al = np.asarray(aligned, bool)[finite]
        if 0 < al.sum() < len(al):
            summary["auroc_aligned_vs_conflicting"] = auroc = float(roc_auc_score(al, spur[finite]))
    save_concept_ranking(ws, dataset, name, split, scores=scores, spuriosity=spur, concepts=concepts,
                         core_concepts=shared_core or [], per_class=overrides, columns=columns,
                         core_default=summary["core_default"], clip=summary["clip"], auroc=auroc)
    progress(1.0, "CLIP concept spuriosity saved")
    return summary


def run_clip_labels(ws: Workspace, dataset: str, model: str, *, concepts: Sequence[str], clip: ClipConfig | None = None,
                    split: str = "train", top_n: int = 5, device: str = "auto",
                    progress: ProgressFn | None = None) -> int:
    """CLIP suggestions (source ``clip``) for every discovered (class, feature): its ``top_n``
    top-activating images against the class name and the spurious ``concepts``."""
    progress = progress or null_progress
    if top_n < 1:
        raise SpurAuditError("top_n must be >= 1")
    disc = load_discovery(ws, dataset, model)
    fs = load_features(ws, dataset, model, split)
    man = fs.manifest
    scorer = ClipScorer(clip or ClipConfig(), device=device)
    feature_images: dict[tuple[int, int], torch.Tensor] = {}
    for c in range(disc.top_features.shape[0]):
        rows = fs.class_rows(c)
        if rows.size == 0:
            continue
        for j in disc.top_features[c]:
            act = np.asarray(fs.features[rows, int(j)], dtype=np.float32)
            top = rows[np.argsort(-act, kind="stable")[:top_n]]
            imgs = [torch.from_numpy(np.asarray(man.load_image(int(r)).convert("RGB"), dtype=np.float32) / 255.0)
                    .permute(2, 0, 1) for r in top]
            feature_images[(c, int(j))] = torch.stack(imgs)
    rows = suggest_feature_labels(scorer, feature_images, class_names=man.class_names, concepts=list(concepts),
                                  progress=progress)
    for r in rows:
        r.update(dataset=dataset, model=model)
    return ws.add_labels(rows)
