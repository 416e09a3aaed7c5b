"""Every ``st.cache_resource`` / ``st.cache_data`` of the dashboard lives here (one place to see what
is cached and what invalidates it).

Cache keys always include what changes the result: the workspace root plus a *stamp* (file mtime /
size, or a label count) so an edit in the workspace (a new label, a re-extracted feature set) is seen
on the next rerun. Functions here only load and call `core`; they do no modelling.

Large read-only results (manifests, memmapped feature sets, predictions, discovery, rankings) use
``cache_resource`` so a rerun does not copy them (``cache_data`` pickles a copy per call); pages must
not mutate them. Small tables (verdicts, gaps) and thumbnails use ``cache_data``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.audit.artifacts import audit_files, load_discovery, load_rankings
from core.audit.artifacts import load_crops, load_gaps, load_sensitivity
from core.audit.crops import crop_pair_tile
from core.audit.discover import DiscoveryConfig, discover_features
from core.audit.labelling import class_progress, pair_status
from core.audit.labelling import class_table as core_class_table
from core.audit.gaps import GapConfig, spurious_gaps
from core.audit.labels import spurious_features
from core.audit.labels import verdicts as core_verdicts
from core.audit.salient_masks import load_salient_masks, mask_tile, salient_index_path
from core.audit.spuriosity import compute_spuriosity
from core.concepts.artifacts import concept_ranking_dir, load_concept_ranking
from core.data.manifest import Manifest
from core.data.preview import sample_tile
from core.device import device_options
from core.figures import safe_figure
from core.features.projection import project, subsample
from core.features.store import load_features
from core.mitigate.embeddings import embedding_rel, load_run_embedding
from core.models.checkpoints import load_model
from core.study.artifacts import load_study, study_files
from core.workspace import Workspace

THUMB_SIZE = 96
LIVE_MAX_ROWS = 200_000   # above this, rankings and discovery come from the audit job's saved results


def file_stamp(path: str | Path) -> tuple[float, int]:
    """(mtime, size) of a file, or (0, -1) when it is missing — used in cache keys."""
    try:
        st_ = os.stat(path)
    except OSError:
        return (0.0, -1)
    return (st_.st_mtime, st_.st_size)


@st.cache_resource(show_spinner=False)
def workspace(root: str):
    """The `core.workspace.Workspace` at ``root`` (an existing workspace; holds no open connection)."""
    return Workspace(root, create=False)


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnail(path: str, size: int = THUMB_SIZE, stamp: tuple = ()) -> bytes:
    """A small PNG of the image at ``path`` (longer side ``size`` px; pixel art kept sharp).
    Only thumbnails go to the browser."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = size / max(im.size)
        resample = Image.NEAREST if max(im.size) <= 64 else Image.BILINEAR
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), resample)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


def thumb(path: str | Path, size: int = THUMB_SIZE) -> bytes:
    """`thumbnail` keyed on the file's stamp (so a rewritten cache image is reloaded)."""
    return thumbnail(str(path), size, stamp=file_stamp(path))


@st.cache_resource(show_spinner=False, max_entries=32)
def manifest_frame(root: str, dataset: str, stamp: tuple) -> "object":
    """The dataset's manifest (`core.data.manifest.Manifest`) — cached per manifest file stamp."""
    rec = workspace(root).get_dataset(dataset)
    return Manifest.load(rec.manifest_path, root=rec.root)


def manifest(ws, dataset: str):
    rec = ws.get_dataset(dataset)
    return manifest_frame(str(ws.root), dataset, file_stamp(rec.manifest_path))


# ------------------------------------------------------------------------------------------------
# models, features, audit results (all computed by `core`; cached here per workspace stamp)
# ------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def _audit_model(checkpoint: str, stamp: tuple):
    model = load_model(checkpoint, device="cpu")
    model.eval()
    return model


def audit_model(ws, model: str):
    """The registered model (`core.models.AuditModel`, eval mode, CPU) — cached per checkpoint stamp."""
    rec = ws.get_model(model)
    return _audit_model(str(rec.checkpoint), file_stamp(rec.checkpoint))


def feature_splits(ws, dataset: str, model: str) -> list[str]:
    """Splits with extracted features, in train/val/test order."""
    order = {"train": 0, "val": 1, "test": 2}
    splits = [f.split for f in ws.list_feature_sets(dataset=dataset, model=model)]
    return sorted(splits, key=lambda s: (order.get(s, 9), s))


@st.cache_resource(show_spinner=False, max_entries=16)
def _feature_set(root: str, dataset: str, model: str, split: str, stamp: tuple):
    return load_features(workspace(root), dataset, model, split)


def feature_set(ws, dataset: str, model: str, split: str):
    """`core.features.store.FeatureSet` (memmaps) — cached per features-file stamp."""
    rec = ws.get_feature_set(dataset, model, split)
    return _feature_set(str(ws.root), dataset, model, split, (rec.id, file_stamp(rec.features_path),
                                                              file_stamp(rec.logits_path)))


@st.cache_resource(show_spinner=False, max_entries=16)
def _predictions(root: str, dataset: str, model: str, split: str, stamp: tuple):
    return _feature_set(root, dataset, model, split, stamp).preds()


def predictions(ws, dataset: str, model: str, split: str):
    """(N,) int64 predicted classes of the stored logits."""
    rec = ws.get_feature_set(dataset, model, split)
    stamp = (rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path))
    _feature_set(str(ws.root), dataset, model, split, stamp)
    return _predictions(str(ws.root), dataset, model, split, stamp)


@st.cache_resource(show_spinner="Discovering each class's top features…", max_entries=8)
def _discovery(root: str, dataset: str, model: str, split: str, k: int, stamp: tuple, model_stamp: tuple):
    ws = workspace(root)
    fs = _feature_set(root, dataset, model, split, stamp)
    weight = audit_model(ws, model).head.weight.detach().cpu().numpy()
    preds = _predictions(root, dataset, model, split, stamp)
    return discover_features(fs.features, fs.labels, weight, predictions=preds, config=DiscoveryConfig(k=k))


def discovery(ws, dataset: str, model: str, split: str, *, k: int = 5):
    """`core.audit.discover.DiscoveryResult` of (dataset, model) on ``split`` (top ``k`` per class)."""
    rec = ws.get_feature_set(dataset, model, split)
    stamp = (rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path))
    return _discovery(str(ws.root), dataset, model, split, int(k), stamp,
                      file_stamp(ws.get_model(model).checkpoint))


def labels_stamp(ws, dataset: str, model: str) -> tuple:
    """Changes whenever a label is added or removed for (dataset, model) (one aggregate query: a page
    asks for it several times per rerun, so it must not load the label table)."""
    return ws.labels_version(dataset, model)


@st.cache_resource(show_spinner=False, max_entries=8)
def _labels(root: str, dataset: str, model: str, stamp: tuple):
    return workspace(root).labels(dataset, model)


def labels(ws, dataset: str, model: str):
    """`Workspace.labels` of (dataset, model) — loaded once per label change (shared, not copied: do not
    mutate it)."""
    return _labels(str(ws.root), dataset, model, labels_stamp(ws, dataset, model))


@st.cache_data(show_spinner=False, max_entries=16)
def _verdicts(root: str, dataset: str, model: str, stamp: tuple):
    return core_verdicts(_labels(root, dataset, model, stamp))


def verdicts(ws, dataset: str, model: str):
    """Derived verdict per (class, feature) (`core.audit.labels.verdicts`)."""
    return _verdicts(str(ws.root), dataset, model, labels_stamp(ws, dataset, model))


@st.cache_resource(show_spinner="Ranking images by spuriosity…", max_entries=16)
def _spuriosity(root: str, dataset: str, model: str, split: str, stamp: tuple, lstamp: tuple):
    fs = _feature_set(root, dataset, model, split, stamp)
    table = _verdicts(root, dataset, model, lstamp)
    spurious = spurious_features(table, fs.num_classes)
    return compute_spuriosity(fs.features, fs.labels, spurious, num_classes=fs.num_classes)


@st.cache_resource(show_spinner=False, max_entries=16)
def _saved_ranking(root: str, dataset: str, model: str, split: str, stamp: tuple):
    return load_rankings(workspace(root), dataset, model, split)


def computes_live(ws, dataset: str, model: str, split: str) -> bool:
    """Whether rankings/discovery of this split are computed in the page (small stores: they follow
    every new label at once) or read from what the audit job saved (stores above `LIVE_MAX_ROWS`
    rows, where a pass over the features is long work that belongs in a job)."""
    return ws.get_feature_set(dataset, model, split).n <= LIVE_MAX_ROWS


def spuriosity(ws, dataset: str, model: str, split: str):
    """`core.audit.spuriosity.SpuriosityResult` of ``split``: from the current label verdicts when the
    split is small (`computes_live`), else the ranking the audit saved (`SpurAuditError` naming the
    command when there is none)."""
    rec = ws.get_feature_set(dataset, model, split)
    stamp = (rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path))
    if not computes_live(ws, dataset, model, split):
        scores = ws.path(audit_files(dataset, model).ranking_scores(split))
        return _saved_ranking(str(ws.root), dataset, model, split, (stamp, file_stamp(scores)))
    _feature_set(str(ws.root), dataset, model, split, stamp)
    return _spuriosity(str(ws.root), dataset, model, split, stamp, labels_stamp(ws, dataset, model))


@st.cache_data(show_spinner="Computing spurious gaps…", max_entries=32)
def _gaps(root: str, dataset: str, ranker: str, split: str, evaluated: str, n_boot: int, stamps: tuple):
    ws = workspace(root)
    ranking = spuriosity(ws, dataset, ranker, split)
    preds = predictions(ws, dataset, evaluated, split)
    return spurious_gaps(ranking, preds, config=GapConfig(n_boot=n_boot))


def gaps(ws, dataset: str, ranker: str, split: str, *, evaluated: str | None = None, n_boot: int = 1000):
    """`core.audit.gaps.GapResult`: images of ``split`` ranked with ``ranker``'s features and labels,
    accuracy of ``evaluated``'s predictions (default: the ranker itself)."""
    evaluated = evaluated or ranker
    recs = [ws.get_feature_set(dataset, m, split) for m in (ranker, evaluated)]
    stamps = tuple((r.id, file_stamp(r.features_path), file_stamp(r.logits_path)) for r in recs)
    return _gaps(str(ws.root), dataset, ranker, split, evaluated, int(n_boot),
                 (stamps, labels_stamp(ws, dataset, ranker)))


@st.cache_data(show_spinner=False, ttl=15)
def _device_options() -> dict[str, str]:
    return device_options()


def device_choices() -> list[str]:
    """"auto", "cpu", then "cuda:N" for every visible GPU (and "mps" on Apple silicon); show them with
    ``format_func=device_label`` (name and free memory, re-read every 15 s; `core.device.device_options`)."""
    return list(_device_options())


def device_label(value: str) -> str:
    """The picker label of a device value: e.g. "cuda:0 · NVIDIA H200 (131.2 of 139.8 GiB free)"."""
    return _device_options().get(value, str(value))


@st.cache_resource(show_spinner=False, max_entries=16)
def _saved_discovery(root: str, dataset: str, model: str, stamp: tuple):
    return load_discovery(workspace(root), dataset, model)


def saved_discovery(ws, dataset: str, model: str):
    """The discovery saved by the audit (`core.audit.artifacts.load_discovery`), or None if never run."""
    path = ws.path(audit_files(dataset, model).discovery)
    if not path.exists():
        return None
    return _saved_discovery(str(ws.root), dataset, model, file_stamp(path))


# ------------------------------------------------------------------------------------------------
# rare patterns (dashboard/app_pages/rare.py) — results and previews computed by `core.rare`
# ------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def _rare_run(root: str, run_id: int, stamp: tuple):
    from core.rare.artifacts import load_rare_run

    return load_rare_run(workspace(root), run_id)


def rare_run(ws, run_id: int):
    """`core.rare.artifacts.RareRun` of ``run_id`` — cached until the run record changes (a running
    sweep updates it after every cell)."""
    run = ws.get_run(int(run_id))
    return _rare_run(str(ws.root), int(run_id), (run.updated, run.status))


@st.cache_data(show_spinner="Drawing the patterned images…", max_entries=32)
def _rare_preview(root: str, data: str, dataset: str | None, patterns: tuple, patch: tuple, target: int, k: int,
                  stamp: tuple):
    from core.rare.preview import preview_patterns

    return preview_patterns(workspace(root), data=data, dataset=dataset, patterns=list(patterns),
                            patch=dict(patch) if patch else None, target=target, k=k)


def rare_preview(ws, *, data: str, dataset: str | None, patterns: list[str], patch: dict | None, target: int,
                 k: int = 4) -> dict:
    """{"original" | pattern: [uint8 (H, W, 3)]} — `core.rare.preview.preview_patterns`, cached."""
    stamp = ()
    if patch and patch.get("path"):
        stamp = file_stamp(ws.path(patch["path"]) if not Path(patch["path"]).is_absolute() else patch["path"])
    patch_key = tuple(sorted((k_, tuple(v) if isinstance(v, list) else v) for k_, v in (patch or {}).items()))
    return _rare_preview(str(ws.root), data, dataset, tuple(patterns), patch_key, int(target), int(k), stamp)


# ------------------------------------------------------------------------------------------------
# many-model studies (issue 14; the Gaps page's study block) — read through `core.study.artifacts`
# ------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def _study(root: str, name: str, stamp: tuple):
    return load_study(workspace(root), name)


def study(ws, name: str):
    """`core.study.artifacts.Study` ``name`` — cached until its study.json changes."""
    return _study(str(ws.root), name, file_stamp(ws.path(study_files(name).summary)))


# ------------------------------------------------------------------------------------------------
# issue 12: the class navigator's class table and labelling progress (`core.audit.labelling`)
# ------------------------------------------------------------------------------------------------
def top_features(ws, dataset: str, model: str):
    """(K, k) top discovered features: the audit's saved discovery, else (small stores) the live one of
    the train split; None when neither is available."""
    disc = saved_discovery(ws, dataset, model)
    if disc is None:
        splits = feature_splits(ws, dataset, model)
        split = "train" if "train" in splits else (splits[0] if splits else None)
        if split is None or not computes_live(ws, dataset, model, split):
            return None
        disc = discovery(ws, dataset, model, split)
    return disc.top_features


@st.cache_data(show_spinner=False, max_entries=16)
def _label_pairs(root: str, dataset: str, model: str, lstamp: tuple, dstamp: tuple):
    ws = workspace(root)
    top = top_features(ws, dataset, model)
    if top is None:
        return None
    return pair_status(top, _labels(root, dataset, model, lstamp))


def _discovery_stamp(ws, dataset: str, model: str) -> tuple:
    return file_stamp(ws.path(audit_files(dataset, model).discovery))


def label_pairs(ws, dataset: str, model: str):
    """`core.audit.labelling.pair_status` of the top features (None without a discovery) — cached
    until a label is added or the discovery changes."""
    return _label_pairs(str(ws.root), dataset, model, labels_stamp(ws, dataset, model),
                        _discovery_stamp(ws, dataset, model))


def navigator_split(ws, dataset: str, model: str) -> str | None:
    splits = feature_splits(ws, dataset, model)
    for s in ("test", "val", "train"):
        if s in splits:
            return s
    return splits[0] if splits else None


@st.cache_data(show_spinner="Summarising the classes…", max_entries=16)
def _class_base(root: str, dataset: str, model: str, split: str | None, fstamp: tuple):
    """The label-independent part of the class table (images, accuracy, saved gaps) — a new label does
    not recompute it."""
    ws = workspace(root)
    names = manifest(ws, dataset).class_names
    K = len(names)
    sizes, acc, gaps_df = np.zeros(K, dtype=np.int64), None, None
    if split is not None:
        fs = feature_set(ws, dataset, model, split)
        K = max(K, fs.num_classes)
        lab = np.asarray(fs.labels, dtype=np.int64)
        ok = lab >= 0
        sizes = np.bincount(lab[ok], minlength=K)
        hits = np.bincount(lab[ok], weights=(predictions(ws, dataset, model, split)[ok] == lab[ok]), minlength=K)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(sizes > 0, hits / np.maximum(sizes, 1), np.nan)
        saved = load_gaps(ws, dataset, model, split)
        if saved is not None and model in saved.get("per_class", {}):
            gaps_df = pd.DataFrame(saved["per_class"][model])
    return core_class_table(K, names, labels_per_class=sizes, accuracy=acc, gaps=gaps_df)


@st.cache_data(show_spinner=False, max_entries=16)
def _class_table(root: str, dataset: str, model: str, split: str | None, stamps: tuple):
    base = _class_base(root, dataset, model, split, stamps[0]).drop(columns=["status"])
    pairs = _label_pairs(root, dataset, model, stamps[1], stamps[2])
    if pairs is not None:
        table = base.merge(class_progress(pairs), on="class_index", how="left")
        table["status"] = table["status"].fillna("unlabelled")
    else:
        table = base.assign(status="unlabelled")
    table.attrs["split"] = split
    return table


def class_table(ws, dataset: str, model: str, split: str | None = None):
    """The navigator's per-class table (`core.audit.labelling.class_table`: images, accuracy and saved
    gap on ``split`` — default the held-out split — and the labelling status), cached per stamps."""
    split = split or navigator_split(ws, dataset, model)
    fstamp = ()
    if split is not None:
        rec = ws.get_feature_set(dataset, model, split)
        gaps_file = ws.path(audit_files(dataset, model).gaps_meta(split))
        fstamp = (rec.id, file_stamp(rec.logits_path), file_stamp(gaps_file))
    return _class_table(str(ws.root), dataset, model, split,
                        (fstamp, labels_stamp(ws, dataset, model), _discovery_stamp(ws, dataset, model)))


@st.cache_data(show_spinner="Projecting the features to 2-D…", max_entries=8)
def _projection(root: str, dataset: str, model: str, split: str, method: str, max_points: int, stamp: tuple):
    fs = _feature_set(root, dataset, model, split, stamp)
    rows = subsample(fs.labels, int(max_points))
    return project(fs.features, rows, method=method, n_total=fs.n)


def projection(ws, dataset: str, model: str, split: str, *, method: str = "pca", max_points: int = 3000):
    """`core.features.projection.Projection` of ``split``'s features (at most ``max_points``, class-
    stratified) — cached per feature-file stamp."""
    rec = ws.get_feature_set(dataset, model, split)
    stamp = (rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path))
    return _projection(str(ws.root), dataset, model, split, method, int(max_points), stamp)


@st.cache_resource(show_spinner=False, max_entries=8)
def _crop_results(root: str, dataset: str, model: str, stamps: tuple):
    ws = workspace(root)
    return load_crops(ws, dataset, model), load_sensitivity(ws, dataset, model)


def crop_results(ws, dataset: str, model: str):
    """(crops.json dict or None, sensitivity table or None) of (dataset, model)
    (`core.audit.artifacts.load_crops` / `load_sensitivity`), read once per file stamp (at 1,000
    classes the CSV is thousands of rows). Shared: do not mutate."""
    files = audit_files(dataset, model)
    return _crop_results(str(ws.root), dataset, model,
                         (file_stamp(ws.path(files.crops)), file_stamp(ws.path(files.sensitivity))))


@st.cache_resource(show_spinner=False, max_entries=16)
def _safe_chart(key: tuple, _build):
    return safe_figure(_build())


def safe_chart(ws, dataset: str, model: str, split: str, key: tuple, build):
    """`core.figures.safe_figure` of ``build()`` (a zero-argument function returning a Plotly figure),
    built once per ``key`` (everything else the figure depends on: view options, colour) and the
    split's feature, label and manifest stamps. A 3,000-point scatter costs ~0.1-0.2 s to build and
    escape; a rerun that only changes a selection reuses it. Shared: show it with
    ``charts.plotly_chart(fig, escaped=True)``, never mutate it."""
    rec = ws.get_feature_set(dataset, model, split)
    stamps = ((rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path)), labels_stamp(ws, dataset, model),
              file_stamp(ws.get_dataset(dataset).manifest_path))
    return _safe_chart((str(ws.root), dataset, model, split, tuple(key), stamps), build)


@st.cache_data(show_spinner=False, max_entries=16)
def _run_embedding(root: str, run_id: int, split: str, stamp: tuple):
    return load_run_embedding(workspace(root), run_id, split)


def run_embedding(ws, run_id: int, split: str):
    """The saved before/after projection of a run (`core.mitigate.embeddings`), or None."""
    return _run_embedding(str(ws.root), int(run_id), split, file_stamp(ws.path(embedding_rel(run_id, split))))


# ------------------------------------------------------------------------------------------------
# issue 11: Dataset page tiles (mask outlined, conflicting framed) — core.data.preview.sample_tile
# ------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=2048)
def _dataset_tile(root: str, dataset: str, row: int, size: int, stamp: tuple) -> bytes:
    tile = sample_tile(manifest(workspace(root), dataset), row, size=size)
    buf = io.BytesIO()
    tile.save(buf, format="PNG")
    return buf.getvalue()


def dataset_tile(ws, dataset: str, row: int, size: int = THUMB_SIZE) -> bytes:
    """PNG of manifest row ``row`` of ``dataset`` with its object mask outlined and a red frame when it is
    bias-conflicting; cached per manifest file stamp."""
    rec = ws.get_dataset(dataset)
    return _dataset_tile(str(ws.root), dataset, int(row), int(size), file_stamp(rec.manifest_path))


# ------------------------------------------------------------------------------------------------
# issue 11: concept rankings ("by concept: water") on Rankings and Gaps — core.concepts.artifacts
# ------------------------------------------------------------------------------------------------
def _concept_stamp(ws, dataset: str, name: str, split: str) -> tuple:
    base = ws.path(concept_ranking_dir(dataset, name))
    return (file_stamp(base / f"{split}.spuriosity.npy"), file_stamp(base / "meta.json"))


@st.cache_resource(show_spinner=False, max_entries=16)
def _concept_ranking(root: str, dataset: str, name: str, split: str, label_model: str, stamps: tuple):
    fs = _feature_set(root, dataset, label_model, split, stamps[0])
    return load_concept_ranking(workspace(root), dataset, name, split, fs.labels, fs.num_classes)


def concept_ranking(ws, dataset: str, name: str, split: str, *, labels_from: str):
    """`core.concepts.artifacts.load_concept_ranking` of ranking ``name`` on ``split`` as a
    `SpuriosityResult` (class labels from ``labels_from``'s feature set of the split), cached per the
    ranking's file stamps."""
    rec = ws.get_feature_set(dataset, labels_from, split)
    fstamp = (rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path))
    return _concept_ranking(str(ws.root), dataset, name, split, labels_from,
                            (fstamp, _concept_stamp(ws, dataset, name, split)))


@st.cache_data(show_spinner="Computing spurious gaps on the concept ranking…", max_entries=32)
def _concept_gaps(root: str, dataset: str, name: str, split: str, evaluated: str, n_boot: int, stamps: tuple):
    ws = workspace(root)
    ranking = concept_ranking(ws, dataset, name, split, labels_from=evaluated)
    return spurious_gaps(ranking, predictions(ws, dataset, evaluated, split), config=GapConfig(n_boot=n_boot))


def concept_gaps(ws, dataset: str, name: str, split: str, *, evaluated: str, n_boot: int = 1000):
    """`core.audit.gaps.GapResult` of ``evaluated``'s predictions on ``split`` ranked by concept ranking
    ``name`` (the same gap code as a feature ranking), cached per the ranking's and features' stamps."""
    rec = ws.get_feature_set(dataset, evaluated, split)
    stamps = ((rec.id, file_stamp(rec.features_path), file_stamp(rec.logits_path)),
              _concept_stamp(ws, dataset, name, split))
    return _concept_gaps(str(ws.root), dataset, name, split, evaluated, int(n_boot), stamps)


# ------------------------------------------------------------------------------------------------
# issue 14: imported Salient ImageNet masks (Features page outlines) — core.audit.salient_masks
# ------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def _salient_masks(root: str, dataset: str, model: str, stamp: tuple):
    return load_salient_masks(workspace(root), dataset, model)


def salient_masks(ws, dataset: str, model: str):
    """The imported masks of (dataset, model) (`core.audit.salient_masks.SalientMasks`), or None; cached per
    the index file's stamp (a new import is seen on the next rerun)."""
    stamp = file_stamp(salient_index_path(ws, dataset, model))
    if stamp[1] < 0:
        return None
    return _salient_masks(str(ws.root), dataset, model, stamp)


@st.cache_data(show_spinner=False, max_entries=1024)
def _salient_tile(root: str, dataset: str, model: str, mask: int, split: str, row: int, size: int,
                  stamp: tuple) -> bytes:
    art = _salient_masks(root, dataset, model, stamp)
    tile = mask_tile(manifest(workspace(root), dataset).split(split), row, art.masks[int(mask)], size=size)
    buf = io.BytesIO()
    tile.save(buf, format="PNG")
    return buf.getvalue()


def salient_tile(ws, dataset: str, model: str, mask: int, split: str, row: int, size: int = THUMB_SIZE) -> bytes:
    """PNG of row ``row`` of ``split`` with imported mask ``mask`` (a row of its index) outlined."""
    stamp = file_stamp(salient_index_path(ws, dataset, model))
    return _salient_tile(str(ws.root), dataset, model, int(mask), split, int(row), int(size), stamp)



# ------------------------------------------------------------------------------------------------
# core crops shown on Crops & sensitivity — core.audit.crops.crop_pair_tile over the saved boxes
# ------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=1024)
def _crop_tile(root: str, dataset: str, split: str, row: int, box: tuple, size: int, stamp: tuple) -> bytes:
    image = manifest(workspace(root), dataset).split(split).load_image(row)
    buf = io.BytesIO()
    crop_pair_tile(image, box, size=size).save(buf, format="PNG")
    return buf.getvalue()


def crop_tile(ws, dataset: str, split: str, row: int, box: tuple, size: int = THUMB_SIZE) -> bytes:
    """PNG: row ``row`` of ``split`` with its core-crop ``box`` (fractions, `core.audit.crops.crop_examples`)
    outlined, beside the crop; cached per manifest file stamp."""
    rec = ws.get_dataset(dataset)
    return _crop_tile(str(ws.root), dataset, split, int(row), tuple(float(v) for v in box), int(size),
                      file_stamp(rec.manifest_path))
