"""`run_study`: the many-model study over a workspace, as one resumable run.

Steps: (1) the ranking of ``split`` saved by the audit of ``ranking_model`` (`core.audit.artifacts.
load_rankings`); (2) per model, its predictions on that split — reused from the feature store when the
model's logits are there, else a logits-only pass through the photo pipeline (`core.features.pipeline.
predict_classes`) — each saved as soon as it is computed, so an interrupted study resumes at the next
model (a model whose spec or checkpoint file changed is recomputed); (3) `analysis.analyse_study`;
(4) tables, JSON and Plotly figures under ``studies/<name>/`` (`artifacts`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import plotly.io as pio

from core.audit.artifacts import load_rankings
from core.audit.gaps import GapConfig
from core.config import config_from_mapping
from core.data import load_manifest
from core.errors import SpurAuditError
from core.features.pipeline import PhotoDataset, PipelineConfig, predict_classes
from core.features.store import load_features
from core.models.checkpoints import CHECKPOINT_FORMAT, load_workspace_model, model_from_checkpoint, torch_load
from core.models.registry import build_model
from core.progress import ProgressFn, null_progress
from core.serialize import to_plain
from core.study.analysis import StudyResult, analyse_study
from core.study.artifacts import default_study_name, study_files
from core.study.plots import correlation_heatmap, robustness_scatter
from core.study.specs import ModelSpec, parse_model_specs
from core.workspace import Workspace

__all__ = ["StudyConfig", "run_study"]


@dataclass(kw_only=True)
class StudyConfig:
    """dataset, ranking_model (its audit's ranking of ``split`` orders the images), models (spec strings,
    see `core.study.specs`), name (default ``<dataset>__<ranking_model>__<split>``). Gap options: k, max_k,
    n_boot, seed. Prediction options: image_size (None = images as stored, they must share one size; e.g.
    224 for photos: resize 256 + centre crop), batch_size, num_workers (None = from the cores), amp,
    device. include_ranking_model: evaluate the ranking model too (first). class_names_file: one readable
    class name per line in class order, for clip-zeroshot prompts (default: the dataset's class names; an
    ImageNet folder's names are wnids, so give e.g. a file of the 1,000 ImageNet class names)."""

    dataset: str
    ranking_model: str
    models: list[str] = field(default_factory=list)
    split: str = "val"
    name: str | None = None
    include_ranking_model: bool = True
    class_names_file: str | None = None
    k: int | None = None
    max_k: int = 100
    n_boot: int = 1000
    seed: int = 0
    image_size: int | None = None
    batch_size: int = 256
    num_workers: int | None = None
    amp: str = "auto"
    device: str = "auto"

    def validate(self) -> "StudyConfig":
        if not self.models and not self.include_ranking_model:
            raise SpurAuditError("the study needs models: --models a,b,c or --models-file FILE")
        GapConfig(k=self.k, max_k=self.max_k, n_boot=self.n_boot, seed=self.seed).validate()
        self.pipeline().validate()
        return self

    def pipeline(self) -> PipelineConfig:
        return PipelineConfig(image_size=self.image_size, batch_size=self.batch_size, num_workers=self.num_workers,
                              amp=self.amp)


def _class_names(ws: Workspace, dataset: str, path: str | None, num_classes: int) -> list[str]:
    if path is None:
        return list(ws.get_dataset(dataset).class_names)
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpurAuditError(f"class names file {path!r} not found; write one class name per line, in class order")
    names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(names) != num_classes:
        raise SpurAuditError(f"class names file {path!r} has {len(names)} names; the dataset has {num_classes} classes")
    return names


def _build(ws: Workspace, spec: ModelSpec, dataset: str, num_classes: int, class_names_file: str | None = None):
    if spec.source == "workspace":
        return load_workspace_model(ws, spec.name, device="cpu")
    if spec.checkpoint and Path(spec.checkpoint).expanduser().is_file():
        ckpt = torch_load(Path(spec.checkpoint).expanduser())
        if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:   # a SpurAudit model file
            if str(ckpt.get("arch")) != spec.arch:
                raise SpurAuditError(f"{spec.checkpoint!r} holds a {ckpt.get('arch')!r} model, not {spec.arch!r}; "
                                     f"write {ckpt.get('arch')}@{spec.checkpoint}")
            return model_from_checkpoint(ckpt, device="cpu", source=repr(spec.checkpoint))
    kwargs = {}
    if spec.arch.startswith("clip-zeroshot:"):
        kwargs["class_names"] = _class_names(ws, dataset, class_names_file, num_classes)
    return build_model(spec.arch, num_classes=num_classes, pretrained=spec.checkpoint, **kwargs)


def _stored_preds(ws: Workspace, spec: ModelSpec, dataset: str, split: str, n: int) -> np.ndarray | None:
    """The predictions from the feature store's logits, when this workspace model has them for the split."""
    if spec.source != "workspace":
        return None
    try:
        fs = load_features(ws, dataset, spec.name, split)
    except SpurAuditError:
        return None
    return fs.preds() if fs.n == n else None


def _dataset_for(ws: Workspace, dataset: str, split: str, image_size: int | None):
    man = load_manifest(ws, dataset).split(split)
    if len(man) == 0:
        raise SpurAuditError(f"split {split!r} of dataset {dataset!r} is empty; pick another with --split")
    return man.to_dataset() if image_size is None else PhotoDataset.from_manifest(man, image_size=image_size)


def run_study(ws: Workspace, config: StudyConfig | dict, *, progress: ProgressFn | None = None) -> dict:
    """Run (or resume) the study; returns its summary (study.json's content, plus ``name``)."""
    cfg = config if isinstance(config, StudyConfig) else config_from_mapping(StudyConfig, config, what="study")
    cfg.validate()
    progress = progress or null_progress
    name = cfg.name or default_study_name(cfg.dataset, cfg.ranking_model, cfg.split)
    files = study_files(name)
    ranking = load_rankings(ws, cfg.dataset, cfg.ranking_model, cfg.split)
    n = len(ranking.labels)
    known = [m.name for m in ws.list_models()]
    texts = ([cfg.ranking_model] if cfg.include_ranking_model and cfg.ranking_model not in cfg.models else []) \
        + list(cfg.models)
    specs = parse_model_specs(texts, workspace_models=known)
    state = ws.read_json(files.state, None) or {}
    inputs = [cfg.dataset, cfg.ranking_model, cfg.split, n, cfg.image_size, cfg.class_names_file]
    if state.get("ranking") not in (None, inputs):
        state = {}   # another ranking or other inputs (image size, class names): cached predictions do not apply
    done = dict(state.get("models") or {})   # identity -> predictions rel
    state = {"ranking": inputs, "models": done, "config": asdict(cfg)}
    data = None
    preds: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for i, spec in enumerate(specs):
        frac0, frac1 = 0.9 * i / len(specs), 0.9 * (i + 1) / len(specs)
        ident = spec.identity()
        rel = done.get(ident)
        if rel and ws.path(rel).is_file():
            preds[spec.label] = np.asarray(ws.open_npy(rel, mmap=False), dtype=np.int64)
            sources[spec.label] = "resumed"
            progress(frac1, f"{spec.label}: predictions from the previous run")
            continue
        stored = _stored_preds(ws, spec, cfg.dataset, cfg.split, n)
        if stored is not None:
            p, sources[spec.label] = stored, "feature store logits"
        else:
            model = _build(ws, spec, cfg.dataset, ranking.num_classes, cfg.class_names_file)
            if int(model.num_classes) != ranking.num_classes:
                raise SpurAuditError(f"model {spec.label!r} has {model.num_classes} outputs, the dataset "
                                     f"{ranking.num_classes} classes; the study needs classifiers of the same classes")
            data = data if data is not None else _dataset_for(ws, cfg.dataset, cfg.split, cfg.image_size)
            try:
                p = predict_classes(model, data, config=cfg.pipeline(), device=cfg.device,
                                    progress=lambda f, m, a=frac0, b=frac1, lab=spec.label: progress(a + (b - a) * f,
                                                                                                     f"{lab}: {m}"))
            except RuntimeError as exc:
                if "equal size" in str(exc) or "same size" in str(exc):
                    raise SpurAuditError(f"the images of {cfg.dataset}/{cfg.split} differ in size; pass --image-size "
                                         "224 (image_size=224) to decode, resize and crop them") from None
                raise
            sources[spec.label] = "predicted (logits only)"
            del model
        rel = files.pred(len(done))
        ws.save_npy(rel, p.astype(np.int32))
        done[ident] = rel
        ws.write_json(files.state, state)     # committed: a restart resumes after this model
        preds[spec.label] = p
        progress(frac1, f"{spec.label}: predictions saved")
    result = analyse_study(ranking, preds, config=GapConfig(k=cfg.k, max_k=cfg.max_k, n_boot=cfg.n_boot,
                                                            seed=cfg.seed))
    summary = _save(ws, files, cfg, specs, sources, result, ranking_classes=ranking.num_classes)
    mp = summary["mean_pairwise_pearson"]
    progress(1.0, f"study {name}: {len(specs)} models, mean pairwise Pearson "
                  f"{'undefined' if mp is None else format(mp, '.3f')}")
    return {"name": name, **summary}


def _nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _save(ws: Workspace, files, cfg: StudyConfig, specs: list[ModelSpec], sources: dict[str, str],
          result: StudyResult, *, ranking_classes: int) -> dict:
    models = result.models.copy()
    models.insert(1, "spec", [s.text for s in specs])
    models.insert(2, "source", [sources[s.label] for s in specs])
    ws.write_text(files.models, models.to_csv(index=False))
    ws.write_text(files.per_class, result.per_class.to_csv(index=False))
    ws.write_text(files.correlation, result.correlation.to_csv())
    ws.write_text(files.scatter, pio.to_json(robustness_scatter(models, result.fit)))
    ws.write_text(files.heatmap, pio.to_json(correlation_heatmap(result.correlation)))
    summary = _nan_to_none(to_plain({
        "config": asdict(cfg), "n_classes": ranking_classes, **result.summary(),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "models": models.to_dict(orient="records"),
        "correlation": {"models": list(result.correlation.columns), "pearson": result.correlation.values.tolist(),
                        "spearman": result.spearman.values.tolist()},
        "conventions": {"x": "acc(highest spuriosity)", "y": "acc(lowest spuriosity)",
                        "gap": "acc(high) - acc(low), > 0 = relies on the spurious cue",
                        "effective_robustness": "acc(low) minus the fitted line at acc(high)"}}))
    ws.write_json(files.summary, summary)
    return summary
