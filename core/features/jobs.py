"""Job kinds of the features package: ``extract`` (params -> `ExtractJob` -> `extract_splits`) and
``labelling-assets`` (params -> `LabellingAssetsJob` -> `core.audit.assets.render_labelling_assets`)."""
from __future__ import annotations

from dataclasses import dataclass

from core.audit.assets import LabellingAssetsConfig, render_labelling_assets
from core.config import config_from_mapping
from core.features.extract import ExtractConfig, extract_splits
from core.progress import ProgressFn
from core.workspace import Workspace


@dataclass(kw_only=True)
class ExtractJob(ExtractConfig):
    """Params of job kind "extract": the dataset, the model, ``split`` ("all" or a split name) and the
    `ExtractConfig` options (batch_size, chunk_size, num_workers, device, amp)."""

    dataset: str
    model: str
    split: str = "all"
    image_size: int | None = None   # photo pipeline (issue 14): decode/resize/crop in the workers


def extract_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Extract features of every requested split; returns the feature-set records as dicts."""
    job = config_from_mapping(ExtractJob, params, what="extract job")
    records = extract_splits(ws, job.dataset, job.model, job.split, batch_size=job.batch_size, device=job.device,
                             num_workers=job.num_workers, chunk_size=job.chunk_size, amp=job.amp,
                             image_size=job.image_size, channels_last=job.channels_last, compile=job.compile,
                             progress=progress)
    return {"feature_sets": [{"dataset": r.dataset, "model": r.model, "split": r.split, "n": r.n, "dim": r.dim,
                              "num_classes": r.num_classes} for r in records]}


# --- issue 12: job kind "labelling-assets" (core.audit.assets) ------------------------------------
@dataclass(kw_only=True)
class LabellingAssetsJob(LabellingAssetsConfig):
    """Params of job kind "labelling-assets": the dataset, the model and `LabellingAssetsConfig`."""

    dataset: str
    model: str


def labelling_assets_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Render overlays and feature attacks of the top features into the workspace cache."""
    job = config_from_mapping(LabellingAssetsJob, params, what="labelling-assets job")
    config = config_from_mapping(LabellingAssetsConfig, {k: v for k, v in vars(job).items()
                                                         if k not in ("dataset", "model")}, what="labelling assets")
    return render_labelling_assets(ws, job.dataset, job.model, config, progress=progress)


JOB_KINDS = {"extract": extract_job, "labelling-assets": labelling_assets_job}
