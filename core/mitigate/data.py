"""What every mitigation method reads and returns.

* `MitigationData`: the in-memory train/val/test splits a method trains and is evaluated on (CPU
  tensors), with further bias attributes in the declared field ``extra_bias``.
* `SplitTensors`: one split's tensors (``MitigationData.split``).
* `MitigationResult`: what every ``run_xxx`` function returns (model, params, metrics, history, extra),
  and `params_dict`, the JSON-able params of a config dataclass.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress

SPLITS = ("train", "val", "test")

#: further bias attributes: attribute name -> {split -> (N_split,) int64 bias values, −1 = unknown}
ExtraBias = dict[str, dict[str, torch.Tensor]]


class SplitTensors(NamedTuple):
    """One split: x float32 (N, C, H, W) in [0, 1]; y int64 (N,); bias int64 (N,) (−1 unknown);
    aligned bool (N,) (False where unknown)."""

    x: torch.Tensor
    y: torch.Tensor
    bias: torch.Tensor
    aligned: torch.Tensor

    @property
    def has_bias(self) -> bool:
        """True when at least one sample has a known bias value."""
        return bool((self.bias >= 0).any())


def _check_split(name: str, x, y, bias, aligned) -> tuple[torch.Tensor, ...]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise SpurAuditError(f"x_{name} must be a float tensor (N, C, H, W), got "
                             f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    n = x.shape[0]
    if n == 0:
        raise SpurAuditError(f"split {name!r} is empty; give it at least one sample or pass None")
    x = x.float()
    y = torch.as_tensor(y).long().reshape(-1)
    if len(y) != n:
        raise SpurAuditError(f"y_{name} has {len(y)} entries but x_{name} has {n} images")
    if bias is None:
        bias = torch.full((n,), -1, dtype=torch.long)
    bias = torch.as_tensor(bias).long().reshape(-1)
    if len(bias) != n:
        raise SpurAuditError(f"bias_{name} has {len(bias)} entries but x_{name} has {n} images")
    if aligned is None:
        aligned = (bias >= 0) & (bias == y)   # the synthetic datasets' convention (class k <-> bias k)
    aligned = torch.as_tensor(aligned).bool().reshape(-1)
    if len(aligned) != n:
        raise SpurAuditError(f"aligned_{name} has {len(aligned)} entries but x_{name} has {n} images")
    return x, y, bias, aligned


@dataclass
class MitigationData:
    """In-memory train/val/test splits for mitigation runs (all tensors on CPU).

    x_*: float32 (N, C, H, W) in [0, 1]; y_*: int64 (N,) classes 0..K-1; bias_*: int64 (N,) bias
    value (−1 = unknown; None -> all unknown); aligned_*: bool (N,) bias-aligned flags (None ->
    ``bias == y`` where bias is known). Val and test may be None (then nothing can be selected on
    validation and test metrics are absent).

    extra_bias: further bias attributes beside ``bias_*``, attribute name -> {split -> (N,) int64}
    (e.g. multi-color-mnist's ``{"bias_right": {"train": ..., "val": ..., "test": ...}}``); FFW hides
    every attribute (`core.mitigate.ffw.bias_labels`). Empty by default.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    bias_train: torch.Tensor | None = None
    aligned_train: torch.Tensor | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    bias_val: torch.Tensor | None = None
    aligned_val: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    bias_test: torch.Tensor | None = None
    aligned_test: torch.Tensor | None = None
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    bias_names: list[str] | None = None
    extra_bias: ExtraBias = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in SPLITS:
            x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
            if x is None:
                if name == "train":
                    raise SpurAuditError("x_train is required")
                if y is not None:
                    raise SpurAuditError(f"y_{name} given without x_{name}")
                continue
            if y is None:
                raise SpurAuditError(f"x_{name} given without y_{name}; pass the labels too")
            x, y, b, a = _check_split(name, x, y, getattr(self, f"bias_{name}"), getattr(self, f"aligned_{name}"))
            setattr(self, f"x_{name}", x)
            setattr(self, f"y_{name}", y)
            setattr(self, f"bias_{name}", b)
            setattr(self, f"aligned_{name}", a)
        top = max(int(getattr(self, f"y_{s}").max()) for s in SPLITS if getattr(self, f"y_{s}") is not None) + 1
        if int(self.y_train.min()) < 0:
            raise SpurAuditError("class labels must be >= 0")
        if not self.num_classes:
            self.num_classes = len(self.class_names) or top
        if top > self.num_classes:
            raise SpurAuditError(f"labels go up to {top - 1} but num_classes is {self.num_classes}")
        if not self.class_names:
            self.class_names = [str(k) for k in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise SpurAuditError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.extra_bias = dict(self.extra_bias or {})

    # -- access ---------------------------------------------------------------------------------
    def has_split(self, name: str) -> bool:
        check_choice("split", name, SPLITS)
        return getattr(self, f"x_{name}") is not None

    def split(self, name: str) -> SplitTensors:
        """The tensors of one split; `SpurAuditError` when it is absent."""
        check_choice("split", name, SPLITS)
        if not self.has_split(name):
            raise SpurAuditError(f"this MitigationData has no {name!r} split; build it from a manifest with "
                                 f"a {name} split or pass x_{name}/y_{name}")
        return SplitTensors(*(getattr(self, f"{k}_{name}") for k in ("x", "y", "bias", "aligned")))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def conflict_fraction(self) -> float | None:
        """Fraction of bias-conflicting training samples (None without bias labels)."""
        tr = self.split("train")
        known = tr.bias >= 0
        if not bool(known.any()):
            return None
        return float((~tr.aligned[known]).float().mean())

    def without_test_labels(self) -> "MitigationData":
        """A copy whose test labels/bias are shuffled (used to prove selection never reads them)."""
        out = copy.copy(self)
        if self.has_split("test"):
            g = torch.Generator().manual_seed(12345)
            perm = torch.randperm(len(self.y_test), generator=g)
            out.y_test, out.bias_test, out.aligned_test = self.y_test[perm], self.bias_test[perm], self.aligned_test[perm]
        return out

    @classmethod
    def from_manifest(cls, manifest, *, extra_bias: bool = False,
                      progress: ProgressFn | None = None) -> "MitigationData":
        """Load every split of a `core.data.manifest.Manifest` into memory.

        Uses ``manifest.split(name).load_tensors()``, ``.bias`` and ``.aligned``; splits without rows
        become None. With ``extra_bias=True`` every further bias column of the manifest
        (``manifest.bias_columns`` other than ``bias`` and other than the column ``bias`` mirrors) becomes
        an entry of ``extra_bias``. Raises `SpurAuditError` without a train split.
        """
        progress = progress or null_progress
        kwargs: dict[str, Any] = {}
        present = [s for s in SPLITS if (manifest.df["split"] == s).any()]
        if "train" not in present:
            raise SpurAuditError("the manifest has no 'train' rows; mitigation needs a training split")
        for i, name in enumerate(present):
            sub = manifest.split(name)
            progress(i / len(present), f"loading {name} ({len(sub)} images)")
            x, y = sub.load_tensors()
            bias = sub.bias
            aligned = sub.aligned
            kwargs[f"x_{name}"], kwargs[f"y_{name}"] = x, y
            kwargs[f"bias_{name}"] = None if bias is None else torch.from_numpy(bias.copy())
            kwargs[f"aligned_{name}"] = None if aligned is None else torch.from_numpy(aligned.copy())
        attrs = getattr(manifest, "attrs", {}) or {}
        bias_names = attrs.get("bias_value_names")
        if bias_names is None and manifest.bias is not None and (manifest.bias >= 0).any():
            bias_names = [str(v) for v in range(int(manifest.bias.max()) + 1)]
        progress(1.0, "data loaded")
        return cls(**kwargs, num_classes=manifest.num_classes, class_names=list(manifest.class_names),
                   bias_names=None if bias_names is None else [str(b) for b in bias_names],
                   extra_bias=manifest_extra_bias(manifest, present) if extra_bias else {})


def manifest_extra_bias(manifest, splits: "list[str] | tuple[str, ...]") -> ExtraBias:
    """The further bias columns of ``manifest`` as ``{column: {split: (N,) int64}}`` for ``splits``;
    a column equal to ``bias`` (e.g. ``bias_left`` on multi-color-mnist, which ``bias`` mirrors) is
    the same attribute and left out."""
    extra: ExtraBias = {}
    main = manifest.bias
    for col in getattr(manifest, "bias_columns", None) or []:
        if col == "bias" or col not in manifest.df.columns:
            continue
        values = manifest.bias_values(col)
        if main is not None and np.array_equal(values, main):
            continue
        extra[col] = {split: torch.from_numpy(manifest.split(split).bias_values(col).copy()) for split in splits}
    return extra


@dataclass
class MitigationResult:
    """One mitigation run.

    method: registry name; model: the final `AuditModel` (possibly with fixed masks, see
    `core.models.gates.apply_masks`); params: the config as a dict (+ seed); metrics:
    ``{"val": {...}, "test": {...}, "sparsity": float|None, "wall_time_s", "peak_rss_mb",
    "mining": {...} (when mining ran), "selected_iteration": int|None, ...}``; history: one dict per
    evaluation (iteration, stage, val metrics — never test); extra: method-specific artifacts
    (e.g. the mined index set, masks).
    """

    method: str
    model: nn.Module
    params: dict
    metrics: dict
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def params_dict(config: Any, **more: Any) -> dict:
    """A JSON-able dict of a config dataclass (or mapping) plus extra entries (seed, ...)."""
    out = asdict(config) if is_dataclass(config) else dict(config or {})
    out.update(more)
    return out


__all__ = ["SPLITS", "ExtraBias", "SplitTensors", "MitigationData", "manifest_extra_bias", "MitigationResult",
           "params_dict"]
