"""Job kinds of the models package: ``train`` (params -> `TrainJob` -> `train_workspace_model`) and
``model-register`` (params -> `RegisterJob` -> build the architecture with the checkpoint, register it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.models.workspace_models import register_checkpoint, train_workspace_model
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


@dataclass(kw_only=True)
class RegisterJob:
    """Params of job kind "model-register": the model ``name``, the ``dataset`` it is for (its class
    count is the head's unless ``num_classes`` is given), the registry ``arch`` (``timm:<name>``,
    ``clip:<name>``, ``robust-resnet50``, ...) and the ``checkpoint`` path (None = the architecture's
    default weights, e.g. random init)."""

    name: str = ""
    dataset: str = ""
    arch: str = ""
    checkpoint: str | None = None
    num_classes: int | None = None
    head_classes: str | None = None
    replace: bool = False
    device: str = "auto"

    def validate(self) -> None:
        for key in ("name", "dataset", "arch"):
            if not getattr(self, key):
                raise SpurAuditError(f"model-register job needs params[{key!r}]")


def register_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Build ``arch`` with the checkpoint's weights and register it (`register_checkpoint`)."""
    job = config_from_mapping(RegisterJob, params, what="model-register job")
    progress(0.1, f"loading {job.arch}")
    return register_checkpoint(ws, job.name, dataset=job.dataset, arch=job.arch, checkpoint=job.checkpoint,
                               num_classes=job.num_classes, head_classes=job.head_classes,
                               replace=job.replace)


JOB_KINDS = {"train": train_job, "model-register": register_job}
