"""Job kind of the models package: ``train`` (params -> `TrainJob` -> `train_workspace_model`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.models.workspace_models import train_workspace_model
from core.progress import ProgressFn
from core.workspace import Workspace


@dataclass(kw_only=True)
class TrainJob:
    """Params of job kind "train": the new model's ``name``, the ``dataset`` it trains on, the registry
    ``arch`` and its ``model_kwargs``, ``config`` (a mapping of `TrainConfig` fields, checked by
    `train_workspace_model`), ``pretrained``, ``image_size``, ``device`` and ``replace``."""

    name: str = ""
    dataset: str = ""
    arch: str = "small_cnn"
    config: dict[str, Any] | None = None
    pretrained: str | None = None
    model_kwargs: dict[str, Any] | None = None
    image_size: int | None = None
    device: str = "auto"
    replace: bool = False

    def validate(self) -> None:
        for key in ("name", "dataset"):
            if not getattr(self, key):
                raise SpurAuditError(f"train job needs params[{key!r}]")


def train_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Train and register the model; returns the dict of `train_workspace_model` without its history."""
    job = config_from_mapping(TrainJob, params, what="train job")
    out = train_workspace_model(ws, job.name, dataset=job.dataset, arch=job.arch, config=job.config,
                                pretrained=job.pretrained, model_kwargs=job.model_kwargs, image_size=job.image_size,
                                device=job.device, replace=job.replace, progress=progress)
    out.pop("history", None)
    return out


JOB_KINDS = {"train": train_job}
