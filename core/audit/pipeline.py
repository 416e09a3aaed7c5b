"""Workspace-level audit steps and `run_audit` (what the CLI, the demo and the dashboard call).

Persistence (all through `Workspace`), under ``audits/<dataset>/<model>/``:

- ``discovery.json`` (top features, importances, single-feature gaps, grouping), ``importance.npy`` (K, D);
- ``verdicts.csv`` (derived label verdicts at the time of ranking);
- ``rankings/<split>.scores.npy`` (N,) float32 spuriosity (NaN = class not ranked),
  ``rankings/<split>.json`` (spurious features used, unranked classes), ``rankings/<split>.csv``
  (sample_id, row, class_index, spuriosity, rank_in_class; ascending spuriosity);
- ``gaps/<split>.json`` / ``gaps/<split>.csv`` (per class and pooled, one column set per evaluated model);
- ``collisions.csv``, ``crops.json``, ``sensitivity.csv``.

Each gaps computation is also recorded as a workspace run with method ``audit-gaps`` (params: split,
k, models; metrics: pooled gap of the audited model and each evaluated model; artifacts: the files above),
so it shows next to mitigation runs. Reports go to ``reports/<dataset>__<model>.html``.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable, TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from core.audit.collisions import collision_summary, find_collisions
from core.audit.discover import DiscoveryConfig, DiscoveryResult, discover_features
from core.audit.gaps import GapConfig, compare_models, spurious_gaps
from core.audit.labels import (MaskLabelConfig, VerdictConfig, auto_labels_from_masks, core_features,
                               spurious_features, verdicts)
from core.audit.spuriosity import SpuriosityResult, class_score_order, compute_spuriosity
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress, sub_progress

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from core.workspace import Workspace

__all__ = ["audit_dir", "load_audit_model", "run_discovery", "load_discovery", "current_verdicts",
           "run_rankings", "load_rankings", "run_gaps", "run_mask_labels", "run_collisions",
           "run_core_crops", "run_sensitivity", "run_audit", "LABEL_SOURCES_AUTO"]

LABEL_SOURCES_AUTO = ("auto", "masks", "existing", "none")


def audit_dir(dataset: str, model: str) -> str:
    return f"audits/{dataset}/{model}"


def _features(ws: "Workspace", dataset: str, model: str, split: str, *, extract: bool = False,
              device: str = "auto", progress: ProgressFn | None = None):
    from core.features.store import load_features

    try:
        return load_features(ws, dataset, model, split)
    except SpurAuditError:
        if not extract:
            raise
    from core.features.extract import extract_to_workspace

    extract_to_workspace(ws, dataset, model, split, device=device, progress=progress)
    return load_features(ws, dataset, model, split)


def load_audit_model(ws: "Workspace", model: str, *, device: str = "cpu") -> "torch.nn.Module":
    """The `AuditModel` checkpoint of workspace model ``model``."""
    from core.models.registry import load_model

    rec = ws.get_model(model)
    return load_model(rec.checkpoint, device=device)


def _head_weight(ws: "Workspace", model: str) -> np.ndarray:
    m = load_audit_model(ws, model)
    return m.head.weight.detach().cpu().numpy().astype(np.float32)          # (K, D)


def run_discovery(ws: "Workspace", dataset: str, model: str, *, split: str = "train",
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
    base = audit_dir(dataset, model)
    ws.save_npy(f"{base}/importance.npy", res.importance)
    ws.write_json(f"{base}/discovery.json", {
        "split": split, "k": config.k, "group_by": res.group_by, "top_features": res.top_features.tolist(),
        "top_importance": res.top_importance.tolist(), "counts": res.counts.tolist(),
        "fallback_classes": res.fallback_classes,
        "single_gaps": res.single_gaps.to_dict(orient="records") if res.single_gaps is not None else None})
    ws.write_text(f"{base}/discovery.csv", res.table().to_csv(index=False))
    return res


def load_discovery(ws: "Workspace", dataset: str, model: str) -> DiscoveryResult:
    """The saved discovery of (dataset, model); SpurAuditError naming the command when missing."""
    base = audit_dir(dataset, model)
    meta = ws.read_json(f"{base}/discovery.json")
    if meta is None:
        raise SpurAuditError(f"no discovery saved for {dataset}/{model}; run "
                             f"`python -m core discover --dataset {dataset} --model {model}` first")
    importance = np.asarray(ws.open_npy(f"{base}/importance.npy", mmap=False))
    single = pd.DataFrame(meta["single_gaps"]) if meta.get("single_gaps") else None
    return DiscoveryResult(importance=importance, top_features=np.asarray(meta["top_features"], dtype=np.int64),
                           top_importance=np.asarray(meta["top_importance"], dtype=np.float32),
                           counts=np.asarray(meta["counts"]), group_by=meta["group_by"], single_gaps=single,
                           fallback_classes=list(meta.get("fallback_classes", [])))


def current_verdicts(ws: "Workspace", dataset: str, model: str, *, quorum: int | None = None) -> pd.DataFrame:
    """Verdict table derived from every stored answer (human first, machine otherwise)."""
    return verdicts(ws.labels(dataset, model), config=VerdictConfig(quorum=quorum))


def run_rankings(ws: "Workspace", dataset: str, model: str, *, split: str, quorum: int | None = None,
                 extract: bool = False, device: str = "auto", progress: ProgressFn | None = None) -> SpuriosityResult:
    """Spuriosity rankings of ``split`` from the current verdicts; saved under rankings/."""
    fs = _features(ws, dataset, model, split, extract=extract, device=device, progress=sub_progress(progress, 0, 0.3))
    K = fs.num_classes
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    spur = spurious_features(vt, K)
    if (fs.labels < 0).any():
        raise SpurAuditError(f"split {split!r} of {dataset!r} has unlabelled rows; rankings are within class")
    res = compute_spuriosity(fs.features, fs.labels, spur, num_classes=K, progress=sub_progress(progress, 0.3, 0.95))
    base = audit_dir(dataset, model)
    ws.write_text(f"{base}/verdicts.csv", vt.to_csv(index=False))
    ws.save_npy(f"{base}/rankings/{split}.scores.npy", res.scores)
    ws.write_json(f"{base}/rankings/{split}.json", {
        "split": split, "spurious": {str(c): v for c, v in res.spurious.items()},
        "classes_without_spurious": res.classes_without_spurious, "quorum": quorum})
    sample_ids = _sample_ids(fs)
    rank = np.empty(len(res.order), dtype=np.int64)
    for c in range(K):
        r = res.order[res.class_start[c]:res.class_start[c + 1]]
        rank[r] = np.arange(len(r))
    df = pd.DataFrame({"row": res.order, "sample_id": sample_ids[res.order], "class_index": res.labels[res.order],
                       "spuriosity": res.scores[res.order], "rank_in_class": rank[res.order]})
    ws.write_text(f"{base}/rankings/{split}.csv", df.to_csv(index=False))
    (progress or null_progress)(1.0, f"ranked {split}")
    return res


def _sample_ids(fs) -> np.ndarray:
    try:
        return np.asarray(fs.manifest.df["sample_id"].to_numpy(), dtype=np.int64)
    except SpurAuditError:
        return np.arange(fs.n, dtype=np.int64)


def load_rankings(ws: "Workspace", dataset: str, model: str, split: str) -> SpuriosityResult:
    """The saved ranking of ``split`` (order rebuilt from the saved scores and the split's labels)."""
    from core.features.store import load_features

    base = audit_dir(dataset, model)
    meta = ws.read_json(f"{base}/rankings/{split}.json")
    if meta is None:
        raise SpurAuditError(f"no ranking saved for {dataset}/{model}/{split}; run "
                             f"`python -m core rank --dataset {dataset} --model {model} --split {split}`")
    scores = np.asarray(ws.open_npy(f"{base}/rankings/{split}.scores.npy", mmap=False))
    labels = load_features(ws, dataset, model, split).labels
    K = len(meta["spurious"])
    order = class_score_order(labels, scores)
    start = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=K), out=start[1:])
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=start,
                            spurious={int(c): v for c, v in meta["spurious"].items()},
                            classes_without_spurious=list(meta["classes_without_spurious"]))


def run_gaps(ws: "Workspace", dataset: str, model: str, *, split: str, models: Sequence[str] | None = None,
             config: GapConfig | None = None, progress: ProgressFn | None = None) -> dict:
    """Spurious gaps on ``split`` of the audited model and of each of ``models`` (their predictions
    on the same split, from their stored logits), ranked by the audited model's saved ranking.

    Returns {"gaps": {model: GapResult}, "table": per-class DataFrame, "correlation": DataFrame, "run_id": int}
    (``run_id`` None on a read-only workspace, where nothing is recorded or saved).
    """
    from core.features.store import load_features

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
        base = audit_dir(dataset, model)
        main = results[model]
        per = main.per_class.copy()
        for name in names[1:]:
            per[f"gap_{name}"] = results[name].per_class["gap"].to_numpy()
        ws.write_text(f"{base}/gaps/{split}.csv", per.to_csv(index=False))
        payload = {"split": split, "models": names, "config": asdict(config),
                   "pooled": {n: r.pooled for n, r in results.items()},
                   "per_class": {n: r.per_class.to_dict(orient="records") for n, r in results.items()},
                   "correlation": corr.to_dict()}
        jpath = ws.write_json(f"{base}/gaps/{split}.json", payload)
        ws.update_run(run_id, status="done",
                      metrics={"pooled_gap": main.pooled.get("gap"), "ci_low": main.pooled.get("ci_low"),
                               "ci_high": main.pooled.get("ci_high"), "n_negative": main.pooled.get("n_negative"),
                               **{f"pooled_gap_{n}": r.pooled.get("gap") for n, r in results.items() if n != model}},
                      artifacts={"gaps_json": jpath, "gaps_csv": ws.path(f"{base}/gaps/{split}.csv"),
                                 "rankings_csv": ws.path(f"{base}/rankings/{split}.csv")})
    except Exception as exc:
        ws.update_run(run_id, status="failed", error=str(exc))
        raise
    (progress or null_progress)(1.0, "gaps saved")
    return {"gaps": results, "table": table, "correlation": corr, "run_id": run_id}


def _split_tensors(ws: "Workspace", dataset: str, split: str, rows: np.ndarray | None = None):
    """(manifest of split, images (n, 3, H, W) float in [0, 1], labels (n,)) for ``rows`` (default all)."""
    from core.data import load_manifest

    man = load_manifest(ws, dataset).split(split)
    images, labels = man.load_tensors()
    labels = labels.numpy()
    if rows is None:
        return man, images, labels
    return man, images[torch_index(rows)], labels[np.asarray(rows, dtype=np.int64)]


def torch_index(rows: np.ndarray):
    import torch

    return torch.as_tensor(np.asarray(rows, dtype=np.int64))


def run_mask_labels(ws: "Workspace", dataset: str, model: str, *, split: str = "train",
                    config: MaskLabelConfig | None = None, only_missing: bool = True, device: str = "auto",
                    segmenter: "Callable[[np.ndarray], np.ndarray] | None" = None,
                    progress: ProgressFn | None = None) -> int:
    """Machine labels for the discovered features from object masks: the dataset's own (source
    ``masks``) or, with ``segmenter`` (an (H, W, 3) uint8 image -> (H, W) bool mask callable, e.g.
    `core.concepts.sam.SamSegmenter`), masks segmented on the fly (source ``sam_iou``).

    ``only_missing``: skip (class, feature) pairs that already have an answer of that source (re-running
    the audit does not duplicate them). Returns the number of answers written."""
    from core.features.store import load_features

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
    # only the images that can be among some feature's top_n are needed: per class, the union of the
    # top_n rows of each of its top features
    need = set()
    class_rows = {}
    for c in range(K):
        idx = fs.class_rows(c)
        class_rows[c] = idx
        for j in todo[c]:
            act = np.asarray(fs.features[idx, int(j)], dtype=np.float32)
            need.update(idx[np.argsort(-act, kind="stable")[:config.top_n]].tolist())
    rows = np.array(sorted(need), dtype=np.int64)
    import torch

    pos = {int(r): i for i, r in enumerate(rows)}
    imgs = []
    masks = []
    for r in rows:
        pixels = np.asarray(man.load_image(int(r)).convert("RGB"), dtype=np.uint8)
        imgs.append(torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1))
        m = man.load_mask(int(r)) if segmenter is None else np.asarray(segmenter(pixels), dtype=bool)
        if m is None:
            raise SpurAuditError(f"row {int(r)} of {dataset}/{split} has no mask; all images need one")
        masks.append(m)
    images = torch.stack(imgs)
    obj = np.stack(masks)
    local_rows = {c: np.array([pos[int(r)] for r in idx if int(r) in pos], dtype=np.int64)
                  for c, idx in class_rows.items()}
    acts = np.asarray(fs.features[rows], dtype=np.float32)
    m = load_audit_model(ws, model)
    labels = auto_labels_from_masks(m, images, obj, local_rows, disc.top_features, acts, config=config,
                                    skip=skip, device=device, progress=progress)
    for r in labels:
        r.update(dataset=dataset, model=model)
        if segmenter is not None:
            r.update(source="sam_iou", annotator="sam")
    return ws.add_labels(labels)


def run_collisions(ws: "Workspace", dataset: str, model: str, *, top_k: int = 5, quorum: int | None = None) -> pd.DataFrame:
    disc = load_discovery(ws, dataset, model)
    K = disc.importance.shape[0]
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    spur = spurious_features(vt, K)
    df = find_collisions(disc.importance, spur, top_k=top_k)
    base = audit_dir(dataset, model)
    ws.write_text(f"{base}/collisions.csv", df.to_csv(index=False))
    ws.write_json(f"{base}/collisions_summary.json", collision_summary(df, spur))
    return df


def _high_rows(ranking: SpuriosityResult, fraction: float) -> np.ndarray:
    rows = []
    for c in range(ranking.num_classes):
        r = ranking.ranking(c)
        if len(r):
            n = max(1, int(round(fraction * len(r))))
            rows.append(r[len(r) - n:])
    return np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)


def run_core_crops(ws: "Workspace", dataset: str, model: str, *, split: str, fraction: float = 0.2,
                   quorum: int | None = None, device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Core crops on the top ``fraction`` highest-spuriosity images of each ranked class of ``split``."""
    from core.audit.crops import evaluate_core_crops

    if not 0 < fraction <= 1:
        raise SpurAuditError("fraction must be in (0, 1]")
    ranking = load_rankings(ws, dataset, model, split)
    rows = _high_rows(ranking, fraction)
    vt = current_verdicts(ws, dataset, model, quorum=quorum)
    core = core_features(vt, ranking.num_classes)
    if not any(core.values()):
        raise SpurAuditError("no core features are labelled; label some features core first")
    _, images, labels = _split_tensors(ws, dataset, split, rows)
    res = evaluate_core_crops(load_audit_model(ws, model), images, labels, core, device=device, progress=progress)
    out = res.to_dict()
    out.update(split=split, fraction=fraction)
    ws.write_json(f"{audit_dir(dataset, model)}/crops.json", out)
    return out


def run_sensitivity(ws: "Workspace", dataset: str, model: str, *, split: str, mask_from: str = "core",
                    max_images: int = 500, quorum: int | None = None, seed: int = 0, device: str = "auto",
                    progress: ProgressFn | None = None) -> pd.DataFrame:
    """Masked-corruption sensitivity on up to ``max_images`` images of ``split`` (seeded subset).

    mask_from: core | spurious (NAMs of the class's labelled features) | object (dataset masks).
    """
    from core.audit.sensitivity import SensitivityConfig, feature_masks, measure_sensitivity

    check_choice("mask_from", mask_from, ("core", "spurious", "object"))
    man, images, labels = _split_tensors(ws, dataset, split)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(len(labels))[:max_images])
    images, labels = images[torch_index(rows)], labels[rows]
    m = load_audit_model(ws, model)
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
        images, labels, masks = images[torch_index(np.nonzero(has)[0])], labels[has], masks[has]
    res = measure_sensitivity(m, images, labels, masks, mask_source=mask_from,
                              config=SensitivityConfig(seed=seed), device=device, progress=progress)
    table = res.table.assign(mask_source=mask_from)
    path = f"{audit_dir(dataset, model)}/sensitivity.csv"
    old = None
    if ws.path(path).exists():
        old = pd.read_csv(ws.path(path))
        old = old[old.mask_source != mask_from]
    merged = pd.concat([old, table]) if old is not None and len(old) else table
    ws.write_text(path, merged.to_csv(index=False))
    return table


def _pick_eval_split(ws: "Workspace", dataset: str, model: str, split: str | None) -> str:
    if split:
        return split
    have = {fs.split for fs in ws.list_feature_sets(dataset, model)}
    for s in ("val", "test"):
        if s in have:
            return s
    from core.data import load_manifest

    splits = load_manifest(ws, dataset).splits()
    for s in ("val", "test"):
        if s in splits:
            return s
    raise SpurAuditError(f"dataset {dataset!r} has no val or test split to measure gaps on")


def run_audit(ws: "Workspace", dataset: str, model: str, *, k: int = 5, label_source: str = "auto",
              eval_split: str | None = None, quorum: int | None = None, gap_k: int | None = None,
              report: bool = True, extract: bool = True, device: str = "auto",
              progress: ProgressFn | None = None) -> dict:
    """The whole audit: discovery (train), labels, rankings (train + eval split), gaps, collisions, report.

    label_source: ``auto`` (machine labels from object masks when the dataset has them, keeping any
    existing answers), ``masks`` (require masks), ``existing`` (use the stored answers only),
    ``none`` (no labelling; classes are reported unranked unless answers exist).
    Returns a summary dict (pooled gap, counts, paths, run id).
    """
    check_choice("label_source", label_source, LABEL_SOURCES_AUTO)
    progress = progress or null_progress
    eval_split = _pick_eval_split(ws, dataset, model, eval_split)
    disc = run_discovery(ws, dataset, model, split="train", config=DiscoveryConfig(k=k), extract=extract,
                         device=device, progress=sub_progress(progress, 0, 0.25))
    n_machine = 0
    if label_source in ("auto", "masks"):
        from core.data import load_manifest

        has_masks = "mask_path" in load_manifest(ws, dataset).df.columns
        if has_masks:
            n_machine = run_mask_labels(ws, dataset, model, split="train", device=device,
                                        progress=sub_progress(progress, 0.25, 0.45))
        elif label_source == "masks":
            raise SpurAuditError(f"dataset {dataset!r} has no object masks; use label_source='existing'")
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
           "n_collisions": int(len(collisions)), "fallback_classes": disc.fallback_classes}
    if report:
        from core.report import write_report

        path = write_report(ws, dataset, model, split=eval_split, quorum=quorum,
                            progress=sub_progress(progress, 0.8, 1.0))
        out["report"] = str(path)
    progress(1.0, "audit done")
    ws.write_json(f"{audit_dir(dataset, model)}/summary.json", out)
    return out
