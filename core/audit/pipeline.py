"""Workspace-level audit steps and `run_audit`: the write side of an audit.

Each step reads what earlier steps saved (through `core.audit.artifacts`, the read side, which also
names every file and documents the layout under ``audits/<dataset>/<model>/``), computes with the
pure modules (`discover`, `labels`, `spuriosity`, `gaps`, `collisions`, `crops`, `sensitivity`) and
writes its results through `Workspace`.

Each gaps computation is also recorded as a workspace run with method ``audit-gaps`` (params: split,
k, models; metrics: pooled gap of the audited model and each evaluated model; artifacts: the gaps
and rankings files), so it shows next to mitigation runs.

The HTML report belongs to the layer above (`core.report` reads the audit): `run_audit` calls it only
when a caller passes it as ``report``; `core.report.run_audit` is the whole audit with its report,
as the CLI, the demo and the ``audit`` job run it.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.audit.artifacts import audit_files, current_verdicts, load_discovery, load_rankings, load_sensitivity
from core.audit.collisions import collision_summary, find_collisions
from core.audit.crops import crop_examples, evaluate_core_crops
from core.audit.discover import DiscoveryConfig, DiscoveryResult, discover_features
from core.audit.gaps import GapConfig, compare_models, spurious_gaps
from core.audit.labels import MaskLabelConfig, auto_labels_from_masks, core_features, spurious_features
from core.audit.salient_masks import load_salient_masks, salient_inputs
from core.audit.sensitivity import SensitivityConfig, feature_masks, measure_sensitivity
from core.audit.spuriosity import SpuriosityResult, compute_spuriosity
from core.data import load_manifest
from core.errors import SpurAuditError, check_choice
from core.features.extract import extract_to_workspace
from core.features.store import FeatureSet, load_features
from core.models.checkpoints import load_workspace_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import Workspace

__all__ = ["run_discovery", "run_rankings", "run_gaps", "run_mask_labels", "run_collisions", "run_core_crops",
           "run_sensitivity", "run_audit", "how_to_label", "ReportStep", "LABEL_SOURCES_AUTO", "MASK_SOURCES"]

LABEL_SOURCES_AUTO = ("auto", "masks", "existing", "none")
#: where `run_sensitivity` takes its masks from
MASK_SOURCES = ("core", "spurious", "object", "salient", "salient_core", "salient_spurious")

#: the report step `run_audit` may end with: ``report(ws, dataset, model, split=..., quorum=...,
#: progress=...)`` -> path of the written report (`core.report.write_report`)
ReportStep = Callable[..., Path]


def _features(ws: Workspace, dataset: str, model: str, split: str, *, extract: bool = False,
              device: str = "auto", progress: ProgressFn | None = None) -> FeatureSet:
    try:
        return load_features(ws, dataset, model, split)
    except SpurAuditError:
        if not extract:
            raise
    extract_to_workspace(ws, dataset, model, split, device=device, progress=progress)
    return load_features(ws, dataset, model, split)


def _head_weight(ws: Workspace, model: str) -> np.ndarray:
    m = load_workspace_model(ws, model)
    return m.head.weight.detach().cpu().numpy().astype(np.float32)          # (K, D)


def run_discovery(ws: Workspace, dataset: str, model: str, *, split: str = "train",
                  config: DiscoveryConfig | None = None, extract: bool = False, device: str = "auto",
                  progress: ProgressFn | None = None) -> DiscoveryResult:
    """Top-k features per class on ``split`` (default train); saved under audits/<dataset>/<model>/."""
    config = config or DiscoveryConfig()
    fs = _features(ws, dataset, model, split, extract=extract, device=device, progress=sub_progress(progress, 0, 0.3))
    weight = _head_weight(ws, model)
    if (fs.labels < 0).any():
        raise SpurAuditError(f"split {split!r} of {dataset!r} has unlabelled rows; discovery needs labels")
    res = discover_features(fs.features, fs.labels, weight, predictions=fs.preds(), config=config,
                            progress=sub_progress(progress, 0.3, 1.0))
    files = audit_files(dataset, model)
    ws.save_npy(files.importance, res.importance)
    ws.write_json(files.discovery, {
        "split": split, "k": config.k, "group_by": res.group_by, "top_features": res.top_features.tolist(),
        "top_importance": res.top_importance.tolist(), "counts": res.counts.tolist(),
        "fallback_classes": res.fallback_classes,
        "single_gaps": res.single_gaps.to_dict(orient="records") if res.single_gaps is not None else None})
    ws.write_text(files.discovery_table, res.table().to_csv(index=False))
    return res


def run_rankings(ws: Workspace, dataset: str, model: str, *, split: str, quorum: int | None = None,
                 extract: bool = False, device: str = "auto", progress: ProgressFn | None = None) -> SpuriosityResult:
    """Spuriosity rankings of ``split`` from the current verdicts; saved under rankings/."""
    fs = _features(ws, dataset, model, split, extract=extract, device=device, progress=sub_progress(progress, 0, 0.3))
    K = fs.num_classes
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    spur = spurious_features(vt, K)
    if (fs.labels < 0).any():
        raise SpurAuditError(f"split {split!r} of {dataset!r} has unlabelled rows; rankings are within class")
    res = compute_spuriosity(fs.features, fs.labels, spur, num_classes=K, progress=sub_progress(progress, 0.3, 0.95))
    files = audit_files(dataset, model)
    ws.write_text(files.verdicts, vt.to_csv(index=False))
    ws.save_npy(files.ranking_scores(split), res.scores)
    ws.write_json(files.ranking_meta(split), {
        "split": split, "spurious": {str(c): v for c, v in res.spurious.items()},
        "classes_without_spurious": res.classes_without_spurious, "quorum": quorum})
    ws.write_text(files.ranking_table(split), _ranking_table(res, _sample_ids(fs)).to_csv(index=False))
    (progress or null_progress)(1.0, f"ranked {split}")
    return res


def _ranking_table(res: SpuriosityResult, sample_ids: np.ndarray) -> pd.DataFrame:
    """One row per image in ranking order (class by class, ascending spuriosity) with its rank in class."""
    rank = np.empty(len(res.order), dtype=np.int64)
    for c in range(res.num_classes):
        r = res.order[res.class_start[c]:res.class_start[c + 1]]
        rank[r] = np.arange(len(r))
    return pd.DataFrame({"row": res.order, "sample_id": sample_ids[res.order], "class_index": res.labels[res.order],
                         "spuriosity": res.scores[res.order], "rank_in_class": rank[res.order]})


def _sample_ids(fs: FeatureSet) -> np.ndarray:
    try:
        return np.asarray(fs.manifest.df["sample_id"].to_numpy(), dtype=np.int64)
    except SpurAuditError:
        return np.arange(fs.n, dtype=np.int64)


def run_gaps(ws: Workspace, dataset: str, model: str, *, split: str, models: Sequence[str] | None = None,
             config: GapConfig | None = None, progress: ProgressFn | None = None) -> dict:
    """Spurious gaps on ``split`` of the audited model and of each of ``models`` (their predictions
    on the same split, from their stored logits), ranked by the audited model's saved ranking.

    Returns {"gaps": {model: GapResult}, "table": per-class DataFrame, "correlation": DataFrame, "run_id": int}
    (``run_id`` None on a read-only workspace, where nothing is recorded or saved).
    """
    config = config or GapConfig()
    ranking = load_rankings(ws, dataset, model, split)
    names = [model] + [m for m in (models or []) if m != model]
    preds = {}
    for name in names:
        fs = load_features(ws, dataset, name, split)
        if fs.n != len(ranking.labels):
            raise SpurAuditError(f"model {name!r} has {fs.n} rows on {split!r}, the ranking {len(ranking.labels)}")
        preds[name] = fs.preds()
    if getattr(ws, "read_only", False):  # a read-only workspace: the same numbers, nothing recorded or saved
        results = {name: spurious_gaps(ranking, p, config=config) for name, p in preds.items()}
        table, corr, _ = compare_models(ranking, preds, config=GapConfig(**{**asdict(config), "n_boot": 0}))
        (progress or null_progress)(1.0, "gaps computed (read-only workspace: not saved)")
        return {"gaps": results, "table": table, "correlation": corr, "run_id": None}
    run_id = ws.add_run(method="audit-gaps", dataset=dataset, model=model,
                        params={"split": split, "k": config.k, "max_k": config.max_k, "n_boot": config.n_boot,
                                "seed": config.seed, "models": names})
    try:
        results = {name: spurious_gaps(ranking, p, config=config) for name, p in preds.items()}
        table, corr, _ = compare_models(ranking, preds, config=GapConfig(**{**asdict(config), "n_boot": 0}))
        files = audit_files(dataset, model)
        main = results[model]
        per = main.per_class.copy()
        for name in names[1:]:
            per[f"gap_{name}"] = results[name].per_class["gap"].to_numpy()
        ws.write_text(files.gaps_table(split), per.to_csv(index=False))
        payload = {"split": split, "models": names, "config": asdict(config),
                   "pooled": {n: r.pooled for n, r in results.items()},
                   "per_class": {n: r.per_class.to_dict(orient="records") for n, r in results.items()},
                   "correlation": corr.to_dict()}
        jpath = ws.write_json(files.gaps_meta(split), payload)
        ws.update_run(run_id, status="done",
                      metrics={"pooled_gap": main.pooled.get("gap"), "ci_low": main.pooled.get("ci_low"),
                               "ci_high": main.pooled.get("ci_high"), "n_negative": main.pooled.get("n_negative"),
                               **{f"pooled_gap_{n}": r.pooled.get("gap") for n, r in results.items() if n != model}},
                      artifacts={"gaps_json": jpath, "gaps_csv": ws.path(files.gaps_table(split)),
                                 "rankings_csv": ws.path(files.ranking_table(split))})
    except Exception as exc:
        ws.update_run(run_id, status="failed", error=str(exc))
        raise
    (progress or null_progress)(1.0, "gaps saved")
    return {"gaps": results, "table": table, "correlation": corr, "run_id": run_id}


def _rows_index(rows: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(rows, dtype=np.int64))


def _split_tensors(ws: Workspace, dataset: str, split: str, rows: np.ndarray | None = None):
    """(manifest of split, images (n, 3, H, W) float in [0, 1], labels (n,)) for ``rows`` (default all)."""
    man = load_manifest(ws, dataset).split(split)
    images, labels = man.load_tensors()
    labels = labels.numpy()
    if rows is None:
        return man, images, labels
    return man, images[_rows_index(rows)], labels[np.asarray(rows, dtype=np.int64)]


def run_mask_labels(ws: Workspace, dataset: str, model: str, *, split: str = "train",
                    config: MaskLabelConfig | None = None, only_missing: bool = True, device: str = "auto",
                    segmenter: "Callable[[np.ndarray], np.ndarray] | None" = None,
                    progress: ProgressFn | None = None) -> int:
    """Machine labels for the discovered features from object masks: the dataset's own (source
    ``masks``) or, with ``segmenter`` (an (H, W, 3) uint8 image -> (H, W) bool mask callable, e.g.
    `core.concepts.sam.SamSegmenter`), masks segmented on the fly (source ``sam_iou``).

    ``only_missing``: skip (class, feature) pairs that already have an answer of that source (re-running
    the audit does not duplicate them). Returns the number of answers written."""
    config = config or MaskLabelConfig()
    source = "masks" if segmenter is None else "sam_iou"
    disc = load_discovery(ws, dataset, model)
    fs = load_features(ws, dataset, model, split)
    man = fs.manifest
    if segmenter is None and "mask_path" not in man.df.columns:
        raise SpurAuditError(f"dataset {dataset!r} has no object masks (mask_path column); label by hand or "
                             "with CLIP/SAM instead")
    K = disc.top_features.shape[0]
    skip: set[tuple[int, int]] = set()
    if only_missing:
        old = ws.labels(dataset, model, source=source)
        skip = set(zip(old.class_index.astype(int).tolist(), old.feature.astype(int).tolist()))
    todo = {c: [int(j) for j in disc.top_features[c] if (c, int(j)) not in skip] for c in range(K)}
    if not any(todo.values()):
        return 0
    class_rows = {c: fs.class_rows(c) for c in range(K)}
    rows = _rows_needed(fs, class_rows, todo, config.top_n)
    images, obj = _images_and_masks(man, rows, segmenter, where=f"{dataset}/{split}")
    pos = {int(r): i for i, r in enumerate(rows)}
    local_rows = {c: np.array([pos[int(r)] for r in idx if int(r) in pos], dtype=np.int64)
                  for c, idx in class_rows.items()}
    acts = np.asarray(fs.features[rows], dtype=np.float32)
    m = load_workspace_model(ws, model)
    labels = auto_labels_from_masks(m, images, obj, local_rows, disc.top_features, acts, config=config,
                                    skip=skip, device=device, progress=progress)
    for r in labels:
        r.update(dataset=dataset, model=model)
        if segmenter is not None:
            r.update(source="sam_iou", annotator="sam")
    return ws.add_labels(labels)


def _rows_needed(fs: FeatureSet, class_rows: dict[int, np.ndarray], todo: dict[int, list[int]],
                 top_n: int) -> np.ndarray:
    """Sorted rows that can be among some feature's ``top_n``: per class, the union of the ``top_n``
    top-activating rows of each of its features still to label (only those images are loaded)."""
    need: set[int] = set()
    for c, features in todo.items():
        idx = class_rows[c]
        for j in features:
            act = np.asarray(fs.features[idx, int(j)], dtype=np.float32)
            need.update(idx[np.argsort(-act, kind="stable")[:top_n]].tolist())
    return np.array(sorted(need), dtype=np.int64)


def _images_and_masks(man, rows: np.ndarray, segmenter: "Callable[[np.ndarray], np.ndarray] | None", *,
                      where: str) -> tuple[torch.Tensor, np.ndarray]:
    """Images (n, 3, H, W) float in [0, 1] and object masks (n, H, W) bool of ``rows``: the manifest's
    masks, or ``segmenter``'s of each image."""
    imgs = []
    masks = []
    for r in rows:
        pixels = np.asarray(man.load_image(int(r)).convert("RGB"), dtype=np.uint8)
        imgs.append(torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1))
        m = man.load_mask(int(r)) if segmenter is None else np.asarray(segmenter(pixels), dtype=bool)
        if m is None:
            raise SpurAuditError(f"row {int(r)} of {where} has no mask; all images need one")
        masks.append(m)
    return torch.stack(imgs), np.stack(masks)


def run_collisions(ws: Workspace, dataset: str, model: str, *, top_k: int = 5, quorum: int | None = None) -> pd.DataFrame:
    disc = load_discovery(ws, dataset, model)
    K = disc.importance.shape[0]
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    spur = spurious_features(vt, K)
    df = find_collisions(disc.importance, spur, top_k=top_k)
    files = audit_files(dataset, model)
    ws.write_text(files.collisions, df.to_csv(index=False))
    ws.write_json(files.collisions_summary, collision_summary(df, spur))
    return df


def _high_rows(ranking: SpuriosityResult, fraction: float) -> np.ndarray:
    rows = []
    for c in range(ranking.num_classes):
        r = ranking.ranking(c)
        if len(r):
            n = max(1, int(round(fraction * len(r))))
            rows.append(r[len(r) - n:])
    return np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)


def run_core_crops(ws: Workspace, dataset: str, model: str, *, split: str, fraction: float = 0.2,
                   quorum: int | None = None, device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Core crops on the top ``fraction`` highest-spuriosity images of each ranked class of ``split``."""
    if not 0 < fraction <= 1:
        raise SpurAuditError("fraction must be in (0, 1]")
    ranking = load_rankings(ws, dataset, model, split)
    rows = _high_rows(ranking, fraction)
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    core = core_features(vt, ranking.num_classes)
    if not any(core.values()):
        raise SpurAuditError("no core features are labelled; label some features core first")
    _, images, labels = _split_tensors(ws, dataset, split, rows)
    res = evaluate_core_crops(load_workspace_model(ws, model), images, labels, core, device=device,
                              progress=progress)
    out = res.to_dict()
    out.update(split=split, fraction=fraction,
               images=crop_examples(res, rows, labels, height=images.shape[-2], width=images.shape[-1]))
    ws.write_json(audit_files(dataset, model).crops, out)
    return out


def run_sensitivity(ws: Workspace, dataset: str, model: str, *, split: str, mask_from: str = "core",
                    max_images: int = 500, quorum: int | None = None, seed: int = 0, device: str = "auto",
                    image_size: int | None = None, progress: ProgressFn | None = None) -> pd.DataFrame:
    """Masked-corruption sensitivity on up to ``max_images`` images of ``split`` (seeded subset).

    mask_from: core | spurious (NAMs of the class's labelled features) | object (dataset masks) |
    salient_core | salient_spurious (the imported Salient ImageNet soft masks of the class's core /
    spurious features, on the images of ``split`` that have one; `_salient_sensitivity`) | salient (both).
    image_size: salient sources only — the photo pipeline's centre crop (e.g. 224, the extraction's
    ``--image-size``); None = images as stored.
    The table replaces the rows of the same mask source(s) in ``sensitivity.csv`` (others kept).
    """
    check_choice("mask_from", mask_from, MASK_SOURCES)
    if mask_from.startswith("salient"):
        kinds = ("core", "spurious") if mask_from == "salient" else (mask_from.split("_", 1)[1],)
        table = _salient_sensitivity(ws, dataset, model, split=split, kinds=kinds, max_images=max_images,
                                     quorum=quorum, seed=seed, device=device, image_size=image_size,
                                     progress=progress)
        return _save_sensitivity(ws, dataset, model, table)
    man, images, labels = _split_tensors(ws, dataset, split)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(len(labels))[:max_images])
    images, labels = images[_rows_index(rows)], labels[rows]
    m = load_workspace_model(ws, model)
    if mask_from == "object":
        masks = [man.load_mask(int(r)) for r in rows]
        if any(x is None for x in masks):
            raise SpurAuditError(f"dataset {dataset!r} lacks object masks; use mask_from core or spurious")
        masks = np.stack(masks)
    else:
        K = int(labels.max()) + 1 if len(labels) else 0
        vt = current_verdicts(ws, dataset, model, quorum=quorum)
        feats = core_features(vt, max(K, 1)) if mask_from == "core" else spurious_features(vt, max(K, 1))
        if not any(feats.values()):
            raise SpurAuditError(f"no {mask_from} features are labelled; label features first")
        masks, has = feature_masks(m, images, labels, feats, device=device)
        images, labels, masks = images[_rows_index(np.nonzero(has)[0])], labels[has], masks[has]
    res = measure_sensitivity(m, images, labels, masks, mask_source=mask_from,
                              config=SensitivityConfig(seed=seed), device=device, progress=progress)
    return _save_sensitivity(ws, dataset, model, res.table.assign(mask_source=mask_from))


def _save_sensitivity(ws: Workspace, dataset: str, model: str, table: pd.DataFrame) -> pd.DataFrame:
    """Write ``table`` into ``sensitivity.csv`` in place of the rows of its mask source(s); returns it."""
    old = load_sensitivity(ws, dataset, model)
    if old is not None:
        old = old[~old.mask_source.isin(set(table.mask_source))]
    merged = pd.concat([old, table]) if old is not None and len(old) else table
    ws.write_text(audit_files(dataset, model).sensitivity, merged.to_csv(index=False))
    return table


def _salient_sensitivity(ws: Workspace, dataset: str, model: str, *, split: str, kinds: Sequence[str],
                         max_images: int, quorum: int | None, seed: int, device: str, image_size: int | None,
                         progress: ProgressFn | None) -> pd.DataFrame:
    """Salient ImageNet's noise test: for each kind (core / spurious), the images of ``split`` that have
    an imported mask of their class's features of that verdict, corrupted inside the union (pixel max)
    of those soft masks; rows with mask_source ``salient_<kind>``."""
    masks_art = load_salient_masks(ws, dataset, model)
    if masks_art is None:
        raise SpurAuditError(f"no Salient ImageNet masks are imported for {dataset}/{model}; import them first: "
                             f"python -m core label import --dataset {dataset} --model {model} --format "
                             "salient-imagenet --masks SALIENT_FOLDER [ANSWERS.csv]")
    man = load_manifest(ws, dataset).split(split)
    K = len(man.class_names)
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    m = load_workspace_model(ws, model)
    tables, empty = [], []
    for i, kind in enumerate(kinds):
        feats = core_features(vt, K) if kind == "core" else spurious_features(vt, K)
        rows, squares = masks_art.union(split, feats)
        if rows.size == 0:
            empty.append(kind)
            continue
        pick = np.sort(np.random.default_rng(seed).permutation(rows.size)[:max_images])
        rows, squares = rows[pick], squares[pick]
        images, masks = salient_inputs(man, rows, squares, image_size=image_size)
        res = measure_sensitivity(m, images, man.labels[rows], masks, mask_source=f"salient_{kind}",
                                  config=SensitivityConfig(seed=seed), device=device,
                                  progress=sub_progress(progress, i / len(kinds), (i + 1) / len(kinds)))
        tables.append(res.table.assign(mask_source=f"salient_{kind}"))
    if not tables:
        raise SpurAuditError(f"no image of {dataset}/{split} has an imported Salient mask of a feature labelled "
                             f"{' or '.join(empty)}; label those features (label import) or pick the split the "
                             f"masks belong to (they are on {', '.join(sorted(set(masks_art.index.split)))})")
    return pd.concat(tables, ignore_index=True)


def _pick_eval_split(ws: Workspace, dataset: str, model: str, split: str | None) -> str:
    if split:
        return split
    have = {fs.split for fs in ws.list_feature_sets(dataset, model)}
    for s in ("val", "test"):
        if s in have:
            return s
    splits = load_manifest(ws, dataset).splits()
    for s in ("val", "test"):
        if s in splits:
            return s
    raise SpurAuditError(f"dataset {dataset!r} has no val or test split to measure gaps on")


def _machine_labels(ws: Workspace, dataset: str, model: str, label_source: str, *, device: str,
                    progress: ProgressFn) -> int:
    """The labelling step of `run_audit`: mask labels when ``label_source`` asks and the dataset has masks."""
    if label_source not in ("auto", "masks"):
        return 0
    if "mask_path" in load_manifest(ws, dataset).df.columns:
        return run_mask_labels(ws, dataset, model, split="train", device=device, progress=progress)
    if label_source == "masks":
        raise SpurAuditError(f"dataset {dataset!r} has no object masks; use label_source='existing'")
    return 0


def how_to_label(dataset: str, model: str, *, has_masks: bool) -> list[str]:
    """The ways to get feature labels for ``dataset``/``model``, as sentences naming the page or the
    exact command (what `run_audit` lists when no class could be ranked)."""
    target = f"--dataset {dataset} --model {model}"
    ways = ["label features by hand on the dashboard's Features page "
            "(`python -m streamlit run dashboard/app.py`)"]
    if has_masks:
        ways.append(f"machine labels from the dataset's object masks: `python -m core label masks {target}`")
    ways += [f"SAM-IoU machine labels: `python -m core concepts sam-labels {target} --sam-checkpoint "
             "sam_vit_b.pth`",
             f"CLIP machine labels: `python -m core concepts clip-labels {target} --concept water "
             "--clip-weights WEIGHTS`",
             f"import answers from a CSV: `python -m core label import {target} answers.csv`",
             f"then rank and measure again: `python -m core audit {target}` "
             "(or `rank` and `gaps` with --split)"]
    return ways


def run_audit(ws: Workspace, dataset: str, model: str, *, k: int = 5, label_source: str = "auto",
              eval_split: str | None = None, quorum: int | None = None, gap_k: int | None = None,
              report: ReportStep | None = None, extract: bool = True, device: str = "auto",
              progress: ProgressFn | None = None) -> dict:
    """The whole audit: discovery (train), labels, rankings (train + eval split), gaps, collisions, and
    the report when ``report`` is given.

    label_source: ``auto`` (machine labels from object masks when the dataset has them, keeping any
    existing answers), ``masks`` (require masks), ``existing`` (use the stored answers only),
    ``none`` (no labelling; classes are reported unranked unless answers exist).
    report: the last step (`ReportStep`, i.e. `core.report.write_report`), passed in by the layer above
    because the report reads the audit; None (or False) writes no report. `core.report.run_audit` is
    the audit with its report.
    Returns a summary dict (pooled gap, counts, paths, run id), also saved as ``summary.json`` last.
    """
    check_choice("label_source", label_source, LABEL_SOURCES_AUTO)
    if report is True:
        raise TypeError("report takes the report step (core.report.write_report) or None; for the audit with its "
                        "report call core.report.run_audit")
    progress = progress or null_progress
    eval_split = _pick_eval_split(ws, dataset, model, eval_split)
    disc = run_discovery(ws, dataset, model, split="train", config=DiscoveryConfig(k=k), extract=extract,
                         device=device, progress=sub_progress(progress, 0, 0.25))
    n_machine = _machine_labels(ws, dataset, model, label_source, device=device,
                                progress=sub_progress(progress, 0.25, 0.45))
    progress(0.45, "labels ready")
    run_rankings(ws, dataset, model, split="train", quorum=quorum, extract=extract, device=device,
                 progress=sub_progress(progress, 0.45, 0.6))
    ranking = run_rankings(ws, dataset, model, split=eval_split, quorum=quorum, extract=extract, device=device,
                           progress=sub_progress(progress, 0.6, 0.7))
    gaps = run_gaps(ws, dataset, model, split=eval_split, config=GapConfig(k=gap_k),
                    progress=sub_progress(progress, 0.7, 0.8))
    collisions = run_collisions(ws, dataset, model, top_k=k, quorum=quorum)
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    out = {"dataset": dataset, "model": model, "eval_split": eval_split, "k": k,
           "n_machine_labels": n_machine, "n_spurious_pairs": int((vt.verdict == "spurious").sum()) if len(vt) else 0,
           "n_core_pairs": int((vt.verdict == "core").sum()) if len(vt) else 0,
           "classes_without_spurious": ranking.classes_without_spurious,
           "pooled_gap": gaps["gaps"][model].pooled, "gaps_run_id": gaps["run_id"],
           "n_collisions": int(len(collisions)), "fallback_classes": disc.fallback_classes,
           "ranked_classes": int(gaps["gaps"][model].pooled.get("n_classes", 0))}
    if out["ranked_classes"] == 0:  # nothing labelled spurious: no class ranked, no gap (NaN) to report
        out["pooled_gap"] = {"n_classes": 0, "total_k": 0}
        out["next_steps"] = how_to_label(dataset, model,
                                         has_masks="mask_path" in load_manifest(ws, dataset).df.columns)
    if report:
        path = report(ws, dataset, model, split=eval_split, quorum=quorum, progress=sub_progress(progress, 0.8, 1.0))
        out["report"] = str(path)
    progress(1.0, "audit done")
    ws.write_json(audit_files(dataset, model).summary, out)
    return out
