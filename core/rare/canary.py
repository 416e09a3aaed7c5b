"""Canary audit: how many stray patterned images does *your* training recipe need to learn a shortcut?

For a workspace dataset and a training recipe — taken from a workspace model's saved config
(architecture, model options, `TrainConfig`: epochs, optimizer, lr, ...) or given — insert a pattern
(one of the seven named ones, or the user's own patch: a PNG with alpha, a position and a scale) into
n training images of a target class, train with the recipe, and measure the spurious score on the
test split. Counts are tried in increasing order, every seed of one n before the next; the answer is
the smallest n whose score is significantly above the n = 0 models' (Welch's t-test over seeds,
p < ``alpha``), and with ``stop_early`` the audit stops there. It runs through the sweep engine
(`core.rare.sweep`), so it is one resumable workspace run (method ``rare-canary``).

The counts are tested one after the other without a multiple-comparison correction: with many counts
and a loose ``alpha`` a small n can come out significant by chance; more seeds make the answer firmer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from core.config import config_fields, config_from_mapping
from core.errors import SpurAuditError, check_choice
from core.models.train import TrainConfig
from core.progress import ProgressFn
from core.rare.artifacts import CANARY_METHOD, run_rel
from core.rare.inject import PATCH, PATTERNS, PatchSpec
from core.rare.score import welch_p
from core.rare.stats import canary_verdict
from core.rare.sweep import NO_REGULARISER, SweepConfig, check_sweep, run_sweep
from core.serialize import to_plain

_RECIPE_SKIP = ("seed", "num_workers")     # set by each cell / irrelevant to the result


@dataclass
class CanaryConfig:
    """Options of `run_canary`.

    dataset: the workspace dataset (train / val / test splits). model: a workspace model whose saved
    recipe is reused (its architecture, model options and training options); else ``arch`` (default
    small_cnn) with ``model_kwargs``. train: `TrainConfig` options that override the recipe (e.g.
    ``{"epochs": 5}``). augment_shift: random translation by up to k pixels during training.
    train_val: give training the val split (the best-epoch weights are kept, as ``model train`` does).
    pattern: one of the seven named patterns or ``"patch"`` with ``patch`` (`PatchSpec`). target: the
    class whose training images get the pattern. counts: the n to try (0 is always added). seeds: at
    least two (the t-test needs them). stop_early: stop at the first significant n. n_train: subsample
    the training split (quick looks). membership: also run the membership attack per cell.
    """

    dataset: str = ""
    model: str | None = None
    arch: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    augment_shift: int = 0
    train_val: bool = True
    pattern: str = "s3"
    patch: PatchSpec | None = None
    target: int = 0
    counts: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int | None = None
    alpha: float = 0.05
    threshold: float = 0.1
    stop_early: bool = True
    membership: bool = False
    device: str = "auto"
    resume: bool = True
    resume_run: int | None = None
    name: str = ""

    def validate(self) -> "CanaryConfig":
        if not self.dataset:
            raise SpurAuditError("a canary audit needs a workspace dataset (e.g. --dataset cmnist)")
        check_choice("pattern", self.pattern, PATTERNS + (PATCH,))
        if self.pattern == PATCH and self.patch is None:
            raise SpurAuditError("pattern 'patch' needs the patch image: give patch={path, position, scale} "
                                 "(CLI: --patch logo.png)")
        if self.patch is not None:
            self.patch.validate()
        if len(set(self.seeds)) < 2:
            raise SpurAuditError("a canary audit needs at least two seeds (the t-test compares seeds)")
        if self.model is None and self.arch is None:
            self.arch = "small_cnn"
        return self


@dataclass
class CanaryResult:
    """``learned_n``: the smallest n significantly above n = 0 (None: none of the counts tried).
    ``per_n``: mean ± s.e.m. and p per n. ``recipe``: what was trained."""

    run_id: int
    learned_n: int | None
    per_n: list[dict]
    baseline_mean: float | None
    recipe: dict
    stopped_early: bool
    verdict: dict
    table: pd.DataFrame
    summary: dict


def canary_recipe(ws: Any, cfg: CanaryConfig) -> dict:
    """``{arch, model_kwargs, train, source}``: the recipe of ``cfg.model`` (its saved config) or the
    given one, with ``cfg.train`` / ``cfg.model_kwargs`` on top."""
    train: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    source = "given"
    arch = cfg.arch
    if cfg.model:
        rec = ws.get_model(cfg.model)
        saved = dict(rec.config or {})
        arch = cfg.arch or rec.arch
        kwargs = {k: v for k, v in dict(saved.get("model_config") or {}).items()
                  if k not in ("in_channels", "input_size")}          # filled from the data
        fields = config_fields(TrainConfig)
        train = {k: v for k, v in dict(saved.get("train") or {}).items() if k in fields and k not in _RECIPE_SKIP}
        source = f"model {cfg.model!r}" + ("" if saved.get("train") else " (no saved training options: TrainConfig defaults)")
    kwargs.update(dict(cfg.model_kwargs or {}))
    train.update({k: v for k, v in dict(cfg.train or {}).items() if k not in _RECIPE_SKIP})
    config_from_mapping(TrainConfig, train, what="canary training")        # bad options fail here
    return {"arch": arch or "small_cnn", "model_kwargs": kwargs, "train": train, "source": source}


def canary_sweep_config(ws: Any, cfg: CanaryConfig) -> tuple[SweepConfig, dict]:
    """The `SweepConfig` a canary audit runs (one pattern, one optimizer, no extra regulariser,
    count-major) and the recipe dict."""
    recipe = canary_recipe(ws, cfg)
    defaults = TrainConfig()
    train = dict(recipe["train"])
    optimizer = train.pop("optimizer", defaults.optimizer)
    epochs = int(train.pop("epochs", defaults.epochs))
    batch = int(train.pop("batch_size", defaults.batch_size))
    momentum = float(train.pop("momentum", defaults.momentum))
    train.setdefault("lr", defaults.lr)
    sweep = SweepConfig(data="workspace", dataset=cfg.dataset, n_train=cfg.n_train, patterns=(cfg.pattern,),
                        patch=cfg.patch, counts=tuple(cfg.counts), optimizers=(optimizer,),
                        regularisers=(NO_REGULARISER,), seeds=tuple(cfg.seeds), target=cfg.target,
                        arch=recipe["arch"], model_kwargs=recipe["model_kwargs"], epochs=epochs, batch_size=batch,
                        momentum=momentum, train=train, augment_shift=cfg.augment_shift, train_val=cfg.train_val,
                        threshold=cfg.threshold, membership=cfg.membership, alpha=cfg.alpha, device=cfg.device,
                        resume=cfg.resume, resume_run=cfg.resume_run, name=cfg.name, order="count")
    return sweep.validate(), recipe


def check_canary(ws: Any, config: CanaryConfig | dict) -> CanaryConfig:
    """Validate a canary audit before launching it: options, recipe (the model exists, its training
    options are valid) and data (class size, patch size). Trains nothing."""
    if isinstance(config, dict):
        config = config_from_mapping(CanaryConfig, config, what="canary")
    cfg = config.validate()
    sweep, _ = canary_sweep_config(ws, cfg)
    check_sweep(ws, sweep)
    return cfg


def run_canary(ws: Any, config: CanaryConfig | dict, *, progress: ProgressFn | None = None) -> CanaryResult:
    """Run (or continue) a canary audit; returns a `CanaryResult` (also saved with the run: the
    verdict is ``summary["canary"]`` of `core.rare.artifacts.load_rare_run`)."""
    if isinstance(config, dict):
        config = config_from_mapping(CanaryConfig, config, what="canary")
    cfg = config.validate()
    sweep, recipe = canary_sweep_config(ws, cfg)
    pattern, alpha = cfg.pattern, cfg.alpha

    def stop(table: pd.DataFrame, n: int) -> bool:
        if not cfg.stop_early:
            return False
        now, base = table[(table.n == n) & (table.pattern == pattern)], table[(table.n == 0) & (table.pattern == pattern)]
        if len(now) < 2 or len(base) < 2:
            return False
        _, p = welch_p(now.score.to_numpy(), base.score.to_numpy())
        return bool(p < alpha and now.score.mean() > base.score.mean())

    res = run_sweep(ws, sweep, method=CANARY_METHOD, stop=stop, progress=progress,
                    extra_params={"canary": to_plain(asdict(cfg)), "recipe": to_plain(recipe)})
    verdict = canary_verdict(res.summary, pattern=pattern)
    verdict.update(recipe=to_plain(recipe), dataset=cfg.dataset, target=cfg.target, stopped_early=res.stopped_early,
                   patch=to_plain(asdict(cfg.patch)) if cfg.patch is not None else None)
    summary = {**res.summary, "canary": verdict}
    ws.write_json(f"{run_rel(res.run_id)}/summary.json", to_plain(summary, nan_as_none=True))
    ws.update_run(res.run_id, metrics={"learned_n": verdict["learned_n"], "largest_n_tried": verdict["largest_n_tried"]})
    return CanaryResult(run_id=res.run_id, learned_n=verdict["learned_n"], per_n=verdict["per_n"],
                        baseline_mean=verdict["baseline_mean"], recipe=recipe, stopped_early=res.stopped_early,
                        verdict=verdict, table=res.table, summary=summary)


__all__ = ["CanaryConfig", "CanaryResult", "run_canary", "check_canary", "canary_recipe", "canary_sweep_config"]
