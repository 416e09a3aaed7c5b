"""The representation before and after a mitigation run (the DCWP paper's figure; issue 12): the
penultimate features of the audited model and of the run's model on the same (subsampled) images of
a split, each projected to 2-D (`core.features.projection`), saved as ``runs/<id>/embedding_<split>.json``
through the workspace. Long work (two forward passes): the ``embedding`` job runs it; the Embeddings
page only reads the file (`load_run_embedding`)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from core.data import load_manifest
from core.device import resolve_device
from core.errors import SpurAuditError
from core.features.projection import project, subsample
from core.models.checkpoints import load_masked_model, load_workspace_model
from core.progress import ProgressFn, null_progress
from core.workspace import Workspace

__all__ = ["embedding_rel", "run_embedding", "load_run_embedding", "runs_with_models"]


def embedding_rel(run_id: int, split: str) -> str:
    return f"runs/{int(run_id)}/embedding_{split}.json"


def runs_with_models(ws: Workspace, dataset: str, model: str) -> list:
    """Finished runs of (dataset, model) that saved a model (single-method mitigation runs)."""
    return [r for r in ws.list_runs(dataset=dataset, model=model, status="done")
            if (r.artifacts or {}).get("model")]


@torch.no_grad()
def _features(net, ds, device, batch_size: int = 256) -> np.ndarray:
    out = []
    for x, *_ in DataLoader(ds, batch_size=batch_size):
        out.append(net.features(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def run_embedding(ws: Workspace, run_id: int, *, split: str = "test", max_points: int = 3000, method: str = "pca",
                  seed: int = 0, device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Compute and save the before/after projection of run ``run_id`` on ``split``; returns it."""
    progress = progress or null_progress
    run = ws.get_run(int(run_id))
    rel = (run.artifacts or {}).get("model")
    if not rel:
        raise SpurAuditError(f"run #{run.id} ({run.method}) saved no model, so it has no representation to show; "
                             "pick a single-method mitigation run")
    manifest = load_manifest(ws, run.dataset)
    if split not in manifest.splits():
        raise SpurAuditError(f"dataset {run.dataset!r} has no split {split!r}; choose one of {manifest.splits()}")
    part = manifest.split(split)
    rows = subsample(part.labels, int(max_points), seed=seed)
    dev = resolve_device(device)
    ds = Subset(part.to_dataset(), rows.tolist())
    progress(0.05, "features before")
    before = _features(load_workspace_model(ws, run.model, device=dev).eval(), ds, dev)
    progress(0.45, "features after")
    after_model = load_masked_model(ws.load_torch(rel), device=dev).eval()
    after = _features(after_model, ds, dev)
    progress(0.85, "projecting")
    idx = np.arange(len(rows))
    pb = project(before, idx, method=method, seed=seed)
    pa = project(after, idx, method=method, seed=seed)
    out = {"run_id": int(run.id), "method": run.method, "split": split, "projection": method,
           "rows": rows.tolist(), "n_total": int(len(part.labels)),
           "before": pb.xy.round(5).tolist(), "after": pa.xy.round(5).tolist()}
    ws.write_json(embedding_rel(run.id, split), out)
    progress(1.0, "embedding saved")
    return {k: out[k] for k in ("run_id", "split", "projection", "n_total")} | {"points": len(rows)}


def load_run_embedding(ws: Workspace, run_id: int, split: str) -> dict | None:
    """The saved before/after projection of a run (None when never computed)."""
    return ws.read_json(embedding_rel(run_id, split))
