"""Datasets: the `Manifest` sample table, loaders for data on disk, synthetic builders, and the
workspace-facing functions that save and register them.

Workspace layout of a dataset ``<name>`` (all writes through `core.workspace.Workspace`):

- ``datasets/<name>/manifest.parquet`` (+ the images for built datasets, + ``skipped.csv`` when rows
  were skipped, + ``cache/tensors-<key>.npy``: decoded uint8 images written by ``load_tensors``).
- Added datasets keep their images where they are: the record's ``root`` is the user's folder
  (stored absolute when outside the workspace).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data.loaders import LOADERS, get_loader
from core.data.manifest import Manifest
from core.data.synthetic import BUILDERS, get_builder
from core.errors import SpurAuditError, check_call_options
from core.progress import ProgressFn, null_progress, sub_progress
from core.serialize import to_plain
from core.workspace import DatasetRecord, Workspace, check_name

MANIFEST_NAME = "manifest.parquet"
SKIPPED_NAME = "skipped.csv"
SYNTHETIC_KINDS = tuple(BUILDERS)   # colored-mnist, biased-mnist, multi-color-mnist, digits-on-textures
SOURCES = tuple(LOADERS)            # imagefolder, csv, waterbirds, celeba, disent
#: arguments build_dataset / add_dataset_from pass to a builder or loader themselves (not user options)
_FILLED_IN = ("out_dir", "path", "seed", "progress", "skip_bad")


def dataset_dir(name: str) -> str:
    """Workspace-relative folder of dataset ``name``."""
    return f"datasets/{name}"


class WorkspaceTensorCache:
    """Caches decoded uint8 image arrays of a manifest (or split) in ``datasets/<name>/cache/``.

    The key hashes the rows' sample ids and paths, the resize target and the manifest file's
    modification time, so a changed manifest never reads a stale array.
    """

    def __init__(self, ws: Workspace, name: str, manifest_path: Path) -> None:
        self.ws = ws
        self.folder = f"{dataset_dir(name)}/cache"
        try:
            self.stamp = str(Path(manifest_path).stat().st_mtime_ns)
        except OSError:
            self.stamp = "0"

    def key(self, manifest: Manifest, hw: tuple[int, int] | None) -> str:
        h = hashlib.sha1()
        h.update(self.stamp.encode())
        h.update(repr(hw).encode())
        h.update(manifest.df["sample_id"].to_numpy().tobytes())
        h.update("\n".join(manifest.df["path"].astype(str)).encode())
        return h.hexdigest()[:20]

    def _rel(self, key: str) -> str:
        return f"{self.folder}/tensors-{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        if not self.ws.path(self._rel(key)).is_file():
            return None
        try:
            return self.ws.open_npy(self._rel(key), mmap=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        if self.ws.read_only:  # a cache: on a read-only workspace images are decoded each time
            return
        self.ws.save_npy(self._rel(key), array)


def load_manifest(ws: Workspace, dataset_name: str) -> Manifest:
    """The `Manifest` of a registered dataset (root = the record's root). ``load_tensors`` on it and
    its splits caches decoded images in the workspace."""
    rec = ws.get_dataset(dataset_name)
    manifest = Manifest.load(rec.manifest_path, root=rec.root)
    manifest._tensor_cache = WorkspaceTensorCache(ws, dataset_name, rec.manifest_path)
    return manifest


def _check_new_name(ws: Workspace, name: str, replace: bool) -> None:
    check_name("dataset", name)
    if ws.has_dataset(name) and not replace:
        raise SpurAuditError(f"dataset {name!r} already exists in {ws.root}; pick another --name or pass "
                             "replace=True (--replace)")


def build_dataset(ws: Workspace, kind: str, name: str, *, seed: int = 0, progress: ProgressFn | None = None,
                  replace: bool = False, **params: Any) -> DatasetRecord:
    """Build a synthetic dataset ``kind`` (see `core.data.synthetic.BUILDERS`) as ``datasets/<name>/``
    and register it. ``params`` go to the builder (e.g. ``conflict=0.01`` for colored-mnist,
    ``rho=0.99`` for biased-mnist, ``n_train=...``); the record's params hold them plus the seed and
    the realised conflicting fractions."""
    builder = get_builder(kind)
    check_call_options(f"builder {kind!r}", builder, params, unlisted=_FILLED_IN)
    _check_new_name(ws, name, replace)
    progress = progress or null_progress
    rel = dataset_dir(name)
    with ws.atomic_dir(rel) as tmp:
        manifest = builder(tmp, seed=seed, progress=sub_progress(progress, 0.0, 0.98), **params)
        if not (tmp / MANIFEST_NAME).is_file():
            manifest.save(tmp / MANIFEST_NAME)
    record_params = {"kind": kind, "seed": seed, **{k: to_plain(v) for k, v in params.items()},
                     "conflict_fraction": manifest.attrs.get("conflict_fraction") or _conflict_fraction(manifest),
                     "split_sizes": {s: int((manifest.df["split"] == s).sum()) for s in manifest.splits()}}
    if "conflict_fraction_by_bias" in manifest.attrs:
        record_params["conflict_fraction_by_bias"] = manifest.attrs["conflict_fraction_by_bias"]
    rec = ws.add_dataset(name, manifest_rel=f"{rel}/{MANIFEST_NAME}", root_rel=rel, source=kind,
                         params=record_params, class_names=manifest.class_names,
                         bias_columns=manifest.bias_columns, replace=replace)
    progress(1.0, f"dataset {name!r} ready")
    return rec


def add_dataset_from(ws: Workspace, name: str, source: str, path: str | Path, *, skip_bad: bool = False,
                     replace: bool = False, progress: ProgressFn | None = None, **options: Any) -> DatasetRecord:
    """Load a dataset the user has on disk with loader ``source`` (imagefolder, csv, waterbirds, celeba,
    disent; ``options`` go to it, e.g. ``label_col=`` or ``target=``), save its manifest as
    ``datasets/<name>/manifest.parquet`` and register it (images stay at ``path``).

    With ``skip_bad=True`` bad rows are skipped and written to ``datasets/<name>/skipped.csv``; the
    record's params list how many (``skipped``)."""
    loader = get_loader(source)
    check_call_options(f"loader {source!r}", loader, options, unlisted=_FILLED_IN)
    _check_new_name(ws, name, replace)
    manifest = loader(path, skip_bad=skip_bad, progress=progress, **options)
    rel = dataset_dir(name)
    with ws.atomic_path(f"{rel}/{MANIFEST_NAME}") as tmp:
        manifest.save(tmp)
    skipped_rel = f"{rel}/{SKIPPED_NAME}"
    if manifest.skipped:
        ws.write_text(skipped_rel, pd.DataFrame(manifest.skipped, columns=["sample_id", "path", "label", "reason"])
                      .to_csv(index=False))
    elif ws.path(skipped_rel).exists():
        ws.remove_path(skipped_rel)
    params = {"source": source, "path": str(Path(path).expanduser().resolve()), "skip_bad": skip_bad,
              **{k: to_plain(v) for k, v in options.items()}, "skipped": len(manifest.skipped),
              "split_sizes": {s: int((manifest.df["split"] == s).sum()) for s in manifest.splits()}}
    for key in ("split_note", "aligned_rule", "conflict_fraction"):
        if key in manifest.attrs:
            params[key] = manifest.attrs[key]
    return ws.add_dataset(name, manifest_rel=f"{rel}/{MANIFEST_NAME}", root_rel=str(manifest.root), source=source,
                          params=params, class_names=manifest.class_names, bias_columns=manifest.bias_columns,
                          replace=replace)


def _conflict_fraction(manifest: Manifest) -> dict:
    """Realised ``{split: fraction of rows with aligned == False}`` (rows with unknown alignment left out)."""
    return {s: info["conflict_fraction"] for s, info in manifest.summary()["splits"].items()
            if "conflict_fraction" in info}


__all__ = ["Manifest", "load_manifest", "build_dataset", "add_dataset_from", "dataset_dir",
           "SYNTHETIC_KINDS", "SOURCES", "MANIFEST_NAME", "SKIPPED_NAME"]
