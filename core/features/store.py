"""The feature store: memory-mapped feature/logit arrays of a (dataset, model, split).

Layout in the workspace: ``features/<dataset>/<model>/<split>/`` holding

* ``features.npy`` — (N, D) float16, penultimate features (``model.features(x)``),
* ``logits.npy``   — (N, K) float32, ``model.forward_head(features)``,
* ``labels.npy``   — (N,) int64, the labels the dataset yielded (-1 when it yielded none),

rows aligned with ``manifest.split(split)`` (ascending ``sample_id``). Arrays are opened with
``mmap_mode="r"`` so ImageNet-sized stores never have to fit in RAM; consumers stream per class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data import load_manifest
from core.errors import SpurAuditError
from core.workspace import FeatureSetRecord, Workspace

FEATURES_FILE = "features.npy"
LOGITS_FILE = "logits.npy"
LABELS_FILE = "labels.npy"
FEATURE_DTYPE = np.float16
LOGIT_DTYPE = np.float32
LABEL_DTYPE = np.int64
#: array name -> (file name, dtype) of a stored feature set (the order extraction writes them in)
ARRAY_FILES: dict[str, tuple[str, Any]] = {"features": (FEATURES_FILE, FEATURE_DTYPE),
                                           "logits": (LOGITS_FILE, LOGIT_DTYPE),
                                           "labels": (LABELS_FILE, LABEL_DTYPE)}


def has_feature_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds all three arrays of a feature set."""
    return all((Path(folder) / fname).exists() for fname, _ in ARRAY_FILES.values())


@dataclass
class FeatureSet:
    """Extracted features of one (dataset, model, split).

    ``features``: (N, D) float16 read-only memmap; ``logits``: (N, K) float32 read-only memmap;
    ``labels``: (N,) int64 (-1 = unknown). Row i is ``manifest.split(split)`` row i.
    """

    dataset: str
    model: str
    split: str
    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    record: FeatureSetRecord | None = None
    _ws: Workspace | None = field(default=None, repr=False)
    _manifest: Any = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def preds(self, *, chunk: int = 65536) -> np.ndarray:
        """(N,) int64 argmax of the logits, computed in chunks (bounded memory)."""
        out = np.empty(self.n, dtype=np.int64)
        for start in range(0, self.n, chunk):
            out[start:start + chunk] = np.asarray(self.logits[start:start + chunk]).argmax(axis=1)
        return out

    def accuracy(self) -> float:
        """Top-1 accuracy of the stored logits against ``labels`` (rows with label -1 ignored)."""
        known = self.labels >= 0
        if not known.any():
            raise SpurAuditError("this feature set has no labels; extract from a dataset that yields labels")
        return float((self.preds()[known] == self.labels[known]).mean())

    def class_rows(self, class_index: int) -> np.ndarray:
        """(n_c,) int64 row indices of class ``class_index`` (by label)."""
        return np.flatnonzero(self.labels == int(class_index))

    @property
    def manifest(self) -> Any:
        """The dataset's ``Manifest.split(split)`` (loaded lazily; rows align with the arrays)."""
        if self._manifest is None:
            if self._ws is None:
                raise SpurAuditError("this feature set was not loaded from a workspace; it has no manifest")
            manifest = load_manifest(self._ws, self.dataset).split(self.split)
            if len(manifest) != self.n:
                raise SpurAuditError(
                    f"the manifest split {self.split!r} of {self.dataset!r} has {len(manifest)} rows but the "
                    f"features have {self.n}; the dataset changed since extraction — re-run "
                    f"`python -m core extract --dataset {self.dataset} --model {self.model} --split {self.split}`")
            self._manifest = manifest
        return self._manifest


def load_features(ws: Workspace, dataset: str, model: str, split: str) -> FeatureSet:
    """Open the stored features of (dataset, model, split) as memmaps.

    Raises `SpurAuditError` (naming the extract command) when they were never extracted or files
    are missing/inconsistent with the record."""
    rec = ws.get_feature_set(dataset, model, split)
    features = ws.open_npy(rec.features_rel or rec.features_path)
    logits = ws.open_npy(rec.logits_rel or rec.logits_path)
    labels_path = rec.features_path.parent / LABELS_FILE
    if labels_path.exists():
        labels = np.asarray(ws.open_npy(labels_path, mmap=False), dtype=np.int64)
    else:
        labels = np.full(rec.n, -1, dtype=np.int64)
    if features.shape != (rec.n, rec.dim) or logits.shape != (rec.n, rec.num_classes) or labels.shape != (rec.n,):
        raise SpurAuditError(
            f"stored features of {dataset}/{model}/{split} have shapes {features.shape}, {logits.shape}, "
            f"{labels.shape} but the record says n={rec.n}, dim={rec.dim}, K={rec.num_classes}; re-extract with "
            f"`python -m core extract --dataset {dataset} --model {model} --split {split}`")
    return FeatureSet(dataset=dataset, model=model, split=split, features=features, logits=logits, labels=labels,
                      record=rec, _ws=ws)
