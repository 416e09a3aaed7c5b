"""Job kind of the models package: ``train`` (`core.models.train.train_workspace_model`)."""
from __future__ import annotations

from typing import Any

from core.errors import SpurAuditError
from core.models.train import train_workspace_model
from core.progress import ProgressFn
from core.workspace import Workspace


def train_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "train": params ``name, dataset, arch, config (TrainConfig fields), pretrained,
    model_kwargs, image_size, device, replace`` -> the dict of `train_workspace_model` (no history)."""
    p: dict[str, Any] = dict(params)
    for key in ("name", "dataset"):
        if not p.get(key):
            raise SpurAuditError(f"train job needs params[{key!r}]")
    out = train_workspace_model(ws, p["name"], dataset=p["dataset"], arch=p.get("arch", "small_cnn"),
                                config=p.get("config"), pretrained=p.get("pretrained"),
                                model_kwargs=p.get("model_kwargs"), image_size=p.get("image_size"),
                                device=p.get("device", "auto"), replace=bool(p.get("replace", False)),
                                progress=progress)
    out.pop("history", None)
    return out


JOB_KINDS = {"train": train_job}
