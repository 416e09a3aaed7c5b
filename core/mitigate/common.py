"""Shared plumbing of every mitigation method (ERM, JTT, MRM, DCWP, head tuning, FFW, ...).

* `MitigationData`: the in-memory splits a method trains and is evaluated on (CPU tensors).
* `MitigationResult`: what every ``run_xxx`` function returns (model, params, metrics, history).
* `METHODS` / `register_method`: the registry ``name -> run function``. Every run function has the
  signature ``run_xxx(data, *, base_model, config, seed=0, device="auto", progress=None)``.
* `evaluate_model`: group accuracies (`core.mitigate.metrics.evaluate_predictions`) plus bias
  decodability of the penultimate features.
* Training helpers on in-memory tensors (no DataLoader, no per-iteration disk reads):
  `IndexSampler` (uniform or weighted batches of row indices), `oversample_weights`,
  `lambda_up_for_fraction`, `ValSelector` (best checkpoint by a validation metric), `fit`
  (a generic Adam loop with validation selection), `fresh_copy` (same architecture, re-initialised).
* Saving a (possibly pruned) model with its binary masks: `core.models.checkpoints.export_masked_model`.

Model selection uses the validation split only; the test split is evaluated once, at the end, for
reporting (`finish_result`). No function here reads test labels before that.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.config import config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.models.optim import OPTIMIZERS, make_optimizer
from core.metrics import bias_decodability, evaluate_predictions
from core.mitigate.metrics import model_outputs, peak_rss_mb
from core.progress import ProgressFn, null_progress

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
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
    def from_manifest(cls, manifest, *, progress: ProgressFn | None = None) -> "MitigationData":
        """Load every split of a `core.data.manifest.Manifest` into memory.

        Uses ``manifest.split(name).load_tensors()``, ``.bias`` and ``.aligned``; splits without rows
        become None. Raises `SpurAuditError` without a train split.
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
                   bias_names=None if bias_names is None else [str(b) for b in bias_names])


# ---------------------------------------------------------------------------------------------
# results and the method registry
# ---------------------------------------------------------------------------------------------
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


RunFn = Callable[..., MitigationResult]
METHODS: dict[str, RunFn] = {}


def register_method(name: str) -> Callable[[RunFn], RunFn]:
    """Decorator adding a run function to `METHODS` under ``name`` (a later registration replaces)."""

    def deco(fn: RunFn) -> RunFn:
        METHODS[name] = fn
        return fn

    return deco


def get_method(name: str) -> RunFn:
    """The run function registered as ``name`` (imports the method modules on first use).

    The returned callable also accepts ``config`` as a plain mapping (from the CLI's ``--set``, a job's
    JSON params or the dashboard): it is turned into the method's config dataclass, nested dataclass
    fields from nested mappings, and unknown keys raise `SpurAuditError` listing the valid ones.
    """
    import functools

    _import_method_modules()
    check_choice("mitigation method", name, list(METHODS))
    fn = METHODS[name]

    @functools.wraps(fn)
    def run(data, *, config=None, **kwargs):
        return fn(data, config=coerce_config(fn, config, method=name), **kwargs)

    return run


def _config_class(fn: RunFn) -> type | None:
    """The dataclass named in ``fn``'s ``config`` annotation (``XConfig | None`` -> XConfig)."""
    import typing
    from dataclasses import is_dataclass

    try:
        hint = typing.get_type_hints(fn).get("config")
    except Exception:  # unresolvable annotations: leave the config as given
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and is_dataclass(candidate):
            return candidate
    return None


def coerce_config(fn: RunFn, config: Any, *, method: str = "") -> Any:
    """A mapping config -> the dataclass ``fn`` expects (via its ``from_dict`` when it has one)."""
    from dataclasses import is_dataclass

    if config is None or is_dataclass(config) or not isinstance(config, dict):
        return config
    cls = _config_class(fn)
    if cls is None:
        return config
    return config_from_mapping(cls, dict(config), what=method)


def check_config(method: str, config: Mapping[str, Any] | None) -> None:
    """Raise `SpurAuditError` now if ``config`` is not a valid config of ``method`` (unknown keys,
    out-of-range values), so a bad option fails before any data is loaded or run recorded."""
    fn = get_method(method)
    if config:
        coerce_config(fn, dict(config), method=method)


def _import_method_modules() -> None:
    import importlib

    for mod in ("core.mitigate.baselines", "core.mitigate.dcwp", "core.mitigate.head_tuning", "core.mitigate.ffw"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a method module not written (yet) simply registers nothing
            if exc.name != mod:
                raise


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
def selection_key(metrics: dict) -> float:
    """The validation score a run maximises: unbiased accuracy when bias labels exist, else accuracy."""
    value = metrics.get("unbiased_accuracy")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = metrics["accuracy"]
    return float(value)


def evaluate_model(model: nn.Module, data: MitigationData, split: str, *, device: "str | torch.device" = "auto",
                   decodability: bool = True, batch_size: int = 512) -> dict:
    """Metrics of ``model`` (an `AuditModel`) on one split.

    Returns `evaluate_predictions` keys (``accuracy``, ``unbiased_accuracy``, ``aligned_accuracy``,
    ``conflicting_accuracy``, ``worst_group_accuracy``, ``n_groups``, ``n``) plus
    ``bias_decodability`` (cross-validated accuracy of a standardized linear probe reading the bias
    from the penultimate features; only when ``decodability`` and ≥ 2 bias values are known).
    """
    sp = data.split(split)
    logits, feats = model_outputs(model, sp.x, batch_size=batch_size, device=device)
    pred = logits.argmax(1)
    has_bias = sp.has_bias
    out = evaluate_predictions(pred, sp.y.numpy(), bias=sp.bias.numpy() if has_bias else None,
                               aligned=sp.aligned.numpy() if has_bias else None)
    if decodability and has_bias:
        known = sp.bias.numpy() >= 0
        if len(np.unique(sp.bias.numpy()[known])) >= 2:
            out["bias_decodability"] = bias_decodability(feats, sp.bias.numpy())
    return out


@torch.no_grad()
def quick_val_metrics(model: nn.Module, data: MitigationData, *, device: torch.device,
                      batch_size: int = 1000) -> dict:
    """Validation group accuracies (no decodability probe); used for checkpoint selection."""
    return evaluate_model(model, data, "val", device=device, decodability=False, batch_size=batch_size)


def finish_result(*, method: str, model: nn.Module, data: MitigationData, params: dict, device: torch.device,
                  started: float, history: list[dict], extra: dict | None = None, sparsity: float | None = None,
                  mining: dict | None = None, selected_iteration: int | None = None,
                  decodability: bool = True, progress: ProgressFn | None = None) -> MitigationResult:
    """Evaluate the selected model on val and (once, for reporting) on test and pack the result."""
    progress = progress or null_progress
    wall = time.perf_counter() - started  # training cost; evaluation is not counted
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if data.has_split(split):
            progress(0.5 if split == "val" else 0.9, f"evaluating on {split}")
            metrics[split] = evaluate_model(model, data, split, device=device, decodability=decodability)
    metrics["sparsity"] = sparsity
    metrics["wall_time_s"] = wall
    metrics["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if mining is not None:
        metrics["mining"] = mining
    metrics["selected_iteration"] = selected_iteration
    progress(1.0, f"{method} done")
    return MitigationResult(method=method, model=model, params=params, metrics=metrics, history=history,
                            extra=extra or {})


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
def oversample_weights(n: int, mined: torch.Tensor | np.ndarray, lambda_up: float) -> torch.Tensor:
    """Per-sample sampling weights, float64 (n,): ``lambda_up`` for mined samples, 1 for the rest.

    ``mined``: bool mask (n,) or int indices. With these weights a sampler draws each mined sample
    ``lambda_up`` times as often as each other sample (in expectation).
    """
    if lambda_up <= 0:
        raise SpurAuditError(f"lambda_up must be > 0 (1 = no oversampling), got {lambda_up}")
    mask = _as_mask(n, mined)
    w = torch.ones(n, dtype=torch.float64)
    w[mask] = float(lambda_up)
    return w


def _as_mask(n: int, mined) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mined) if not isinstance(mined, torch.Tensor) else mined)
    if t.dtype == torch.bool:
        if t.numel() != n:
            raise SpurAuditError(f"mined mask has {t.numel()} entries for {n} samples")
        return t.reshape(-1).clone()
    idx = t.long().reshape(-1)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise SpurAuditError(f"mined indices must lie in [0, {n}), got range [{int(idx.min())}, {int(idx.max())}]")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return mask


LAMBDA_UP_TABLE = ((0.005, 80.0), (0.01, 50.0), (0.02, 30.0), (0.05, 10.0))


def lambda_up_for_fraction(fraction: float) -> float:
    """DCWP's upweighting λ_up for a conflicting fraction (0.5/1/2/5 % -> 80/50/30/10), nearest in log."""
    if not fraction or fraction <= 0 or not math.isfinite(fraction):
        return LAMBDA_UP_TABLE[1][1]
    lf = math.log(fraction)
    return min(LAMBDA_UP_TABLE, key=lambda kv: abs(math.log(kv[0]) - lf))[1]


class IndexSampler:
    """Batches of row indices drawn in memory (no DataLoader).

    Uniform (``weights=None``): epochs of a seeded random permutation, each sample once per epoch.
    Weighted: i.i.d. draws with replacement proportional to ``weights`` (float (N,)), pre-drawn in
    chunks. ``next()`` returns int64 (batch_size,) indices.
    """

    def __init__(self, n: int, batch_size: int, *, weights: torch.Tensor | None = None, seed: int = 0,
                 chunk: int = 64) -> None:
        if n < 1:
            raise SpurAuditError("cannot sample from an empty training set")
        if batch_size < 1:
            raise SpurAuditError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size = int(n), int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
            if len(w) != n or bool((w < 0).any()) or float(w.sum()) <= 0:
                raise SpurAuditError("sampler weights must be (N,) non-negative with a positive sum")
            self.weights = w
        self.chunk = int(chunk)
        self._buffer = torch.empty(0, dtype=torch.long)

    def _refill(self) -> None:
        if self.weights is None:
            need = max(self.batch_size, 1)
            parts = [self._buffer]
            total = len(self._buffer)
            while total < need:
                perm = torch.randperm(self.n, generator=self.generator)
                parts.append(perm)
                total += len(perm)
            self._buffer = torch.cat(parts)
        else:
            draws = torch.multinomial(self.weights, self.batch_size * self.chunk, replacement=True,
                                      generator=self.generator)
            self._buffer = torch.cat([self._buffer, draws])

    def next(self) -> torch.Tensor:
        if len(self._buffer) < self.batch_size:
            self._refill()
        out, self._buffer = self._buffer[:self.batch_size], self._buffer[self.batch_size:]
        return out

    def __iter__(self):
        while True:
            yield self.next()


# ---------------------------------------------------------------------------------------------
# models and training
# ---------------------------------------------------------------------------------------------
def set_seed(seed: int) -> None:
    """Seed torch and numpy (the generators of samplers are seeded separately)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def fresh_copy(model: nn.Module, *, seed: int) -> nn.Module:
    """A deep copy of ``model`` with every parameter re-initialised (same architecture), seeded."""
    out = copy.deepcopy(model)
    torch.manual_seed(int(seed))
    for module in out.modules():
        if hasattr(module, "reset_parameters") and module is not out:
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def default_model(data: MitigationData, *, arch: str = "small_cnn", seed: int = 0) -> nn.Module:
    """A freshly initialised `AuditModel` of ``arch`` for ``data`` (used when no base model is given)."""
    from core.models.registry import build_model

    torch.manual_seed(int(seed))
    return build_model(arch, num_classes=data.num_classes)


class ValSelector:
    """Keeps the state of the best model seen so far by a validation score (higher is better).

    ``update(model, metrics, iteration)`` returns True when ``metrics`` improved on the best (strictly).
    ``restore(model)`` loads the best state back. Without a val split nothing is selected and the
    last state is kept.
    """

    def __init__(self) -> None:
        self.best_score = -math.inf
        self.best_iteration: int | None = None
        self.best_metrics: dict | None = None
        self._state: dict | None = None
        self.last_state: dict | None = None   # set by `fit`: the weights after the last step
        self.step_wall_s = 0.0   # set by `fit`: wall / process-CPU seconds spent in training steps only
        self.step_cpu_s = 0.0    # (validation evaluations excluded)

    def update(self, model: nn.Module, metrics: dict, iteration: int) -> bool:
        score = selection_key(metrics)
        if score > self.best_score:
            self.best_score, self.best_iteration, self.best_metrics = score, int(iteration), dict(metrics)
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        return False

    def restore(self, model: nn.Module) -> nn.Module:
        if self._state is not None:
            model.load_state_dict(self._state)
        return model


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy (the ``loss_fn`` `fit` uses by default)."""
    return F.cross_entropy(model(xb), yb)




def check_training_options(*, optimizer: str | None = None, augment_shift: int = 0, lr_decay=None,
                           gumbel_input: str | None = None) -> None:
    """Validate the training options shared by the method configs; raise `SpurAuditError` naming the
    bad one. ``None`` skips an option the method does not have."""
    if optimizer is not None:
        check_choice("optimizer", optimizer, OPTIMIZERS)
    if gumbel_input is not None:
        from core.models.gates import GUMBEL_INPUTS

        check_choice("gumbel_input", gumbel_input, GUMBEL_INPUTS)
    if augment_shift < 0:
        raise SpurAuditError(f"augment_shift must be >= 0 pixels, got {augment_shift}")
    if lr_decay is not None and (len(lr_decay) != 2 or int(lr_decay[0]) < 1 or not 0 < float(lr_decay[1]) <= 1):
        raise SpurAuditError(f"lr_decay must be (step_size >= 1, gamma in (0, 1]), got {lr_decay}")


def random_shift(images: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by its own random offset in [-max_shift, max_shift] pixels.

    ``images``: (B, C, H, W) float; the uncovered border is filled with zeros. Returns a new tensor of
    the same shape (the input is untouched); ``max_shift <= 0`` returns ``images`` itself. Offsets are
    drawn on the CPU from ``generator`` (seeded runs stay reproducible).
    """
    k = int(max_shift)
    if k <= 0:
        return images
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * k + 1, (2, b), generator=generator).to(images.device)   # (2, B) in [0, 2k]
    padded = F.pad(images, (k, k, k, k))                                                  # (B, C, H+2k, W+2k)
    rows = torch.arange(h, device=images.device)[None, :] + offsets[0][:, None]             # (B, H)
    cols = torch.arange(w, device=images.device)[None, :] + offsets[1][:, None]             # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chan = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def fit(model: nn.Module, data: MitigationData, *, iterations: int, batch_size: int = 256, lr: float = 1e-3,
        weight_decay: float = 0.0, sampler: IndexSampler | None = None, loss_fn: LossFn | None = None,
        params: list[nn.Parameter] | None = None, eval_every: int = 0, select: bool = True,
        lr_decay: tuple[int, float] | None = None, eval_at_start: bool = False, device: torch.device,
        seed: int = 0, stage: str = "train", optimizer: str = "adam", momentum: float = 0.9,
        on_step: Callable[[int], None] | None = None, augment_shift: int = 0,
        history: list[dict] | None = None, progress: ProgressFn | None = None) -> ValSelector:
    """Train ``model`` in place with Adam on in-memory training tensors.

    Args:
        iterations: number of mini-batch steps (>= 0).
        sampler: where batch indices come from (default: uniform epochs, seeded with ``seed``).
        loss_fn: ``loss_fn(model, xb, yb, idx) -> scalar`` (default cross-entropy).
        params: what to optimise (default: every parameter with ``requires_grad``).
        eval_every: evaluate on val every so many steps (0 = only at the end); each evaluation is
            appended to ``history`` (val metrics only).
        select: restore the best validation checkpoint at the end (when a val split exists).
        lr_decay: ``(step_size, gamma)`` of a StepLR schedule, or None.
        optimizer: "adam" or "sgd" (with ``momentum``; the DCWP reference's CMNIST setting).
        on_step: called with the step number after every optimiser step (e.g. to score samples
            along the training trajectory); it must leave the model in training mode.
        augment_shift: translate every training batch by up to this many pixels (`random_shift`);
            0 = no augmentation. Evaluation never sees augmented images.
        eval_at_start: also evaluate (and make selectable, as iteration 0) the model before training.

    Returns the `ValSelector` (``best_iteration`` = selected step, or None without val/selection;
    ``last_state`` = the state dict after the last step, before restoring the selected one).
    """
    if iterations < 0:
        raise SpurAuditError(f"iterations must be >= 0, got {iterations}")
    progress = progress or null_progress
    loss_fn = loss_fn or ce_loss_fn
    sampler = sampler or IndexSampler(data.n_train, batch_size, seed=seed)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    model.to(device)
    selector = ValSelector()
    has_val = data.has_split("val")
    if iterations == 0 or not params:
        if has_val and select:
            selector.update(model, quick_val_metrics(model, data, device=device), 0)
        return selector
    opt = make_optimizer(optimizer, params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_decay[0], gamma=lr_decay[1]) if lr_decay else None
    x_train, y_train = data.x_train, data.y_train
    on_cpu = device.type == "cpu"
    if not on_cpu:  # keep the (small) training set on the accelerator: one transfer instead of one per step
        x_train, y_train = x_train.to(device), y_train.to(device)
    every = eval_every if eval_every > 0 else iterations
    if eval_at_start and has_val:
        m0 = quick_val_metrics(model, data, device=device)
        if select:
            selector.update(model, m0, 0)
        if history is not None:
            history.append({"stage": stage, "iteration": 0, "val": m0})
    model.train()
    running = 0.0
    for step in range(1, iterations + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        idx = sampler.next()
        gidx = idx if on_cpu else idx.to(device)
        xb, yb = x_train[gidx], y_train[gidx]
        if augment_shift > 0:
            xb = random_shift(xb, augment_shift, generator=sampler.generator)
        loss = loss_fn(model, xb, yb, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if on_step is not None:
            on_step(step)
        running += float(loss.detach())
        selector.step_wall_s += time.perf_counter() - w0
        selector.step_cpu_s += time.process_time() - c0
        if step % every == 0 or step == iterations:
            entry: dict[str, Any] = {"stage": stage, "iteration": step, "train_loss": running / every}
            running = 0.0
            if has_val:
                m = quick_val_metrics(model, data, device=device)
                entry["val"] = m
                if select:
                    selector.update(model, m, step)
                model.train()
            if history is not None:
                history.append(entry)
            progress(step / iterations, f"{stage} {step}/{iterations} loss {entry['train_loss']:.3f}")
    selector.last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if select and has_val:
        selector.restore(model)
    model.eval()
    return selector


# ---------------------------------------------------------------------------------------------
# saving pruned models
# ---------------------------------------------------------------------------------------------
def params_dict(config: Any, **more: Any) -> dict:
    """A JSON-able dict of a config dataclass plus extra entries (seed, ...)."""
    from dataclasses import asdict, is_dataclass

    out = asdict(config) if is_dataclass(config) else dict(config or {})
    out.update(more)
    return out
