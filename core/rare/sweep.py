"""The rare-pattern sweep: patterns × n × optimizer × regulariser × seed, one resumable workspace run.

Each *cell* trains one model: the clean model of an (optimizer, regulariser, seed) (n = 0, scored with
every pattern of the sweep) or the model with ``pattern`` added to ``n`` training images of class
``target`` (seeded choice; the random patterns use the seed's noise image, as the reference does).
A cell measures, on the test split (and on val, for choosing settings without looking at test):

* the spurious score (fraction of non-target images whose target probability rises by more than
  ``threshold`` = 0.1 when the pattern is added) and the accuracy;
* membership inference (when ``membership``): a shadow model trained with the same recipe on half of
  the training set, the attack fitted on its members vs non-members, applied to the cell's model on its
  true members (the training set as trained, patterned images included) and true non-members (val +
  test); AUROC over all members, over the patterned members and over the clean members of the target
  class, each against all non-members;
* deletion (for n in ``deletion_counts``, regulariser "none"): the score and accuracy after incremental
  retraining without the patterned images and after first-order group-influence removal (LiSSA).

Regularisers are strings: ``none``, ``wd=5e-4`` (weight decay), ``clip=1`` (global gradient-norm
clipping), ``noise=0.1`` (Gaussian input noise σ), or combinations joined by ``+``
(``wd=5e-4+noise=0.1``); they set `core.models.train.TrainConfig` fields on top of the recipe.

Every finished cell is saved at once (``runs/<id>/cells/<key>.json``, atomic). Starting the same sweep
again (same settings; device and the resume options do not count) continues the newest run with that
fingerprint — a stopped one goes on where it stopped, a finished one is just read back: the cells
already saved are never trained again (``resume=False`` starts a new run that trains every cell). A
sweep whose grid differs (more seeds, other counts or patterns) but whose cell settings (data, model,
recipe, measures) are the same reuses the cells other runs already finished (`cell_fingerprint`),
also while those runs go on in another process, and their shadow models. The tidy table and the
statistics (`core.rare.stats.summarise`) are written when the sweep ends.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from core.config import config_fields, config_from_mapping
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.models.batches import predict_logits
from core.models.optim import OPTIMIZERS
from core.models.registry import build_model
from core.models.train import TrainConfig, train_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.rare.artifacts import METHODS, SWEEP_METHOD, cell_rel, finished_cells, run_rel, shadow_rel
from core.rare.data import DATA_CHOICES, RareData, load_rare_data
from core.rare.inject import PATCH, PATTERNS, PatchPattern, PatchSpec, inject, pattern_l2_norm
from core.rare.membership import evaluate_attack, fit_attack
from core.rare.score import spurious_score
from core.rare.stats import records, summarise
from core.rare.unlearn import LissaConfig, group_influence_removal, incremental_retraining
from core.serialize import to_plain

REGULARISER_KEYS = {"wd": "weight_decay", "clip": "grad_clip", "noise": "input_noise_std"}
NO_REGULARISER = "none"
ORDERS = ("seed", "count")
_RESUME_FIELDS = ("device", "resume", "resume_run", "name")
# fields that choose which cells a sweep has, not what a cell computes (a cell of another run with the same
# remaining settings can be reused)
_GRID_FIELDS = ("patterns", "counts", "optimizers", "regularisers", "seeds", "deletion_counts", "deletion_patterns",
                "order", "alpha", "level")
_DELETION_KEYS = ("score_after_retraining", "acc_after_retraining", "score_after_influence", "acc_after_influence")


# --------------------------------------------------------------------------------------------------
# regulariser strings
# --------------------------------------------------------------------------------------------------
def parse_regulariser(text: str) -> dict[str, float]:
    """``"none"`` -> {}; ``"wd=5e-4+noise=0.1"`` -> {"weight_decay": 5e-4, "input_noise_std": 0.1}."""
    text = str(text).strip().lower()
    if text in ("", NO_REGULARISER):
        return {}
    out: dict[str, float] = {}
    for part in text.split("+"):
        key, sep, value = part.strip().partition("=")
        if not sep or key.strip() not in REGULARISER_KEYS:
            raise SpurAuditError(f"bad regulariser {text!r}: write none, wd=V, clip=V, noise=V or a combination "
                                 "joined by '+' (e.g. wd=5e-4+noise=0.1)")
        try:
            v = float(value)
        except ValueError:
            raise SpurAuditError(f"regulariser {part.strip()!r} needs a number after '='") from None
        if not (math.isfinite(v) and v > 0):
            raise SpurAuditError(f"regulariser {part.strip()!r} needs a positive value (leave it out to turn it off)")
        out[REGULARISER_KEYS[key.strip()]] = v
    return out


def regulariser_label(text: str) -> str:
    """The canonical spelling of a regulariser string (``"noise=.10+wd=5e-4"`` -> ``"wd=0.0005+noise=0.1"``)."""
    options = parse_regulariser(text)
    if not options:
        return NO_REGULARISER
    short = {v: k for k, v in REGULARISER_KEYS.items()}
    return "+".join(f"{short[k]}={options[k]:g}" for k in REGULARISER_KEYS.values() if k in options)


def _slug(text: str) -> str:
    return text.replace("=", "-").replace("+", "_")


# --------------------------------------------------------------------------------------------------
# config and cells
# --------------------------------------------------------------------------------------------------
@dataclass
class SweepConfig:
    """Options of `run_sweep` (defaults: the reference's recipe on the 4,000 MNIST training digits).

    Data: ``data`` one of mnist | digits | colored-mnist | workspace (then ``dataset`` names it);
    ``n_train`` subsamples the training split; ``conflict`` is colored MNIST's training conflict.
    Grid: ``patterns`` (the seven named ones and/or ``"patch"`` with ``patch``), ``counts`` (0 — the clean
    baseline — is always added), ``optimizers`` (sgd, adam), ``regularisers`` (see the module
    docstring), ``seeds``; ``target`` class. Model: ``arch`` (mlp, small_cnn or any registry
    architecture; 1-channel images are repeated to 3 channels for the others) with ``model_kwargs``
    (mlp default: three hidden layers of 256, the reference's LargeMLP). Training: ``epochs``,
    ``batch_size``, ``lr_sgd`` (with ``momentum``) / ``lr_adam``, ``train`` (any other `TrainConfig`
    option; an ``lr`` there applies to every optimizer), ``augment_shift`` (random translation by up to
    k pixels, zero fill), ``train_val`` (give train_model the val split: best-epoch weights, early
    stopping). Measures: ``threshold`` of Δ, ``membership``, ``deletion_counts`` / ``deletion_patterns``
    (empty = all) / ``deletion_epochs`` / ``lissa_*``, ``alpha`` of the tests, ``level`` of the
    "n needed to reach a score" statistic. Run: ``device``, ``resume`` (continue the newest run with
    the same settings — a stopped one goes on, a finished one is read back — and reuse the cells of runs
    with the same cell settings), ``resume_run`` (continue that run id), ``name`` (a label), ``order``
    (cells seed-major, or count-major for early stopping).
    """

    data: str = "mnist"
    dataset: str | None = None
    n_train: int | None = None
    conflict: float = 0.01
    patterns: tuple[str, ...] = PATTERNS
    patch: PatchSpec | None = None
    counts: tuple[int, ...] = (0, 1, 3, 5, 10, 20, 100)
    optimizers: tuple[str, ...] = ("sgd",)
    regularisers: tuple[str, ...] = (NO_REGULARISER,)
    seeds: tuple[int, ...] = (0, 1, 2)
    target: int = 0
    arch: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 70
    batch_size: int = 128
    lr_sgd: float = 0.01
    lr_adam: float = 0.001
    momentum: float = 0.9
    train: dict[str, Any] = field(default_factory=dict)
    augment_shift: int = 0
    train_val: bool = False
    threshold: float = 0.1
    membership: bool = True
    deletion_counts: tuple[int, ...] = ()
    deletion_patterns: tuple[str, ...] = ()
    deletion_epochs: int = 20
    lissa_iterations: int = 100
    lissa_scale: float = 50.0
    lissa_damping: float = 0.01
    alpha: float = 0.05
    level: float = 0.1
    device: str = "auto"
    resume: bool = True
    resume_run: int | None = None
    name: str = ""
    order: str = "seed"

    def validate(self) -> "SweepConfig":
        """Check every option (`SpurAuditError` naming the first bad one); normalises the grid (counts
        sorted with 0 added, regularisers in canonical spelling, duplicates dropped). Returns self."""
        check_choice("rare data", self.data, DATA_CHOICES)
        if self.data == "workspace" and not self.dataset:
            raise SpurAuditError("data 'workspace' needs the dataset name (e.g. --dataset cmnist)")
        if self.n_train is not None and self.n_train < 10:
            raise SpurAuditError(f"n_train must be at least 10 (or None for all), got {self.n_train}")
        if not self.patterns:
            raise SpurAuditError(f"give at least one pattern ({', '.join(PATTERNS)} or patch)")
        for p in self.patterns:
            check_choice("pattern", p, PATTERNS + (PATCH,))
        if PATCH in self.patterns and self.patch is None:
            raise SpurAuditError("pattern 'patch' needs a patch image: give patch={path, position, scale}")
        if self.patch is not None:
            self.patch.validate()
        self.patterns = tuple(dict.fromkeys(self.patterns))
        if any(int(n) < 0 for n in self.counts):
            raise SpurAuditError(f"counts must be >= 0, got {list(self.counts)}")
        self.counts = tuple(sorted({0, *(int(n) for n in self.counts)}))
        if len(self.counts) < 2:
            raise SpurAuditError("give at least one count n > 0 (0, the clean baseline, is always added)")
        if not self.optimizers:
            raise SpurAuditError("give at least one optimizer (sgd, adam)")
        for o in self.optimizers:
            check_choice("optimizer", o, OPTIMIZERS)
        self.optimizers = tuple(dict.fromkeys(self.optimizers))
        if not self.regularisers:
            raise SpurAuditError("give at least one regulariser (none, wd=V, clip=V, noise=V)")
        self.regularisers = tuple(dict.fromkeys(regulariser_label(r) for r in self.regularisers))
        if not self.seeds or any(int(s) < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise SpurAuditError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.target < 0:
            raise SpurAuditError(f"target must be a class index >= 0, got {self.target}")
        if not isinstance(self.arch, str) or not self.arch:
            raise SpurAuditError("arch must be a model name (mlp, small_cnn, resnet18, ...)")
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size),
                            ("deletion_epochs", self.deletion_epochs), ("lissa_iterations", self.lissa_iterations)):
            if int(value) < 1:
                raise SpurAuditError(f"{name} must be >= 1, got {value}")
        if self.augment_shift < 0:
            raise SpurAuditError(f"augment_shift must be >= 0 pixels, got {self.augment_shift}")
        for name, value in (("threshold", self.threshold), ("alpha", self.alpha), ("level", self.level)):
            if not 0 < value < 1:
                raise SpurAuditError(f"{name} must be in (0, 1), got {value}")
        bad = [n for n in self.deletion_counts if n not in self.counts or n == 0]
        if bad:
            raise SpurAuditError(f"deletion_counts {bad} must be counts n > 0 of the sweep ({list(self.counts)})")
        for p in self.deletion_patterns:
            check_choice("deletion pattern", p, self.patterns)
        check_choice("cell order", self.order, ORDERS)
        for opt in self.optimizers:            # the recipe must make a valid TrainConfig for every optimizer
            base_train_config(self, opt, NO_REGULARISER, 0)
        return self


@dataclass(frozen=True)
class Cell:
    """One model to train: ``pattern`` "" with n = 0 is the clean model of (optimizer, regulariser, seed)."""

    pattern: str
    n: int
    optimizer: str
    regulariser: str
    seed: int

    @property
    def key(self) -> str:
        what = f"{self.pattern}-{self.n}" if self.n else "clean-0"
        return f"{self.optimizer}__{_slug(self.regulariser)}__seed{self.seed}__{what}"


def sweep_cells(cfg: SweepConfig) -> list[Cell]:
    """The cells of a sweep in run order: seed-major (every setting of seed 0, then seed 1, ...) or,
    with ``order="count"``, count-major (every seed of n = 0, then of the next n, ...)."""
    counts = [n for n in cfg.counts if n > 0]
    settings = [(o, r) for o in cfg.optimizers for r in cfg.regularisers]
    if cfg.order == "count":
        cells = [Cell("", 0, o, r, s) for s in cfg.seeds for o, r in settings]
        for n in counts:
            cells += [Cell(p, n, o, r, s) for p in cfg.patterns for s in cfg.seeds for o, r in settings]
        return cells
    cells = []
    for s in cfg.seeds:
        for o, r in settings:
            cells.append(Cell("", 0, o, r, s))
            cells += [Cell(p, n, o, r, s) for p in cfg.patterns for n in counts]
    return cells


def sweep_fingerprint(cfg: SweepConfig, method: str = SWEEP_METHOD) -> str:
    """A hash of everything that changes a cell's result (not the device or the resume options)."""
    plain = {k: v for k, v in to_plain(asdict(cfg)).items() if k not in _RESUME_FIELDS}
    plain["method"] = method
    return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def cell_fingerprint(cfg: SweepConfig) -> str:
    """A hash of the settings that decide what one cell computes (data, model, recipe, measures) — not
    the grid; two runs with the same cell fingerprint can share their finished cells."""
    plain = {k: v for k, v in to_plain(asdict(cfg)).items() if k not in _RESUME_FIELDS + _GRID_FIELDS}
    return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def base_train_config(cfg: SweepConfig, optimizer: str, regulariser: str, seed: int) -> TrainConfig:
    """The `TrainConfig` of one cell: the recipe (epochs, batch, lr of the optimizer, ``train``
    options), the regulariser's options on top, the cell's seed."""
    values: dict[str, Any] = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "momentum": cfg.momentum,
                              "lr": cfg.lr_sgd if optimizer == "sgd" else cfg.lr_adam}
    values.update(dict(cfg.train or {}))
    values.update({"optimizer": optimizer, **parse_regulariser(regulariser), "seed": int(seed)})
    return config_from_mapping(TrainConfig, values, what="training")


@dataclass
class SweepResult:
    """What `run_sweep` returns: the run id, the tidy table, the statistics, how many cells were
    trained now, how many were already saved in this run and how many were reused from another run
    with the same cell settings, the final status, and whether ``stop`` ended it early."""

    run_id: int
    table: pd.DataFrame
    summary: dict
    cells_run: int
    cells_skipped: int
    cells_total: int
    status: str = "done"
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    cells_reused: int = 0


# --------------------------------------------------------------------------------------------------
# training helpers
# --------------------------------------------------------------------------------------------------
class _ShiftedImages(Dataset):
    """(x, y) with x randomly translated by up to ``k`` pixels (zero fill), drawn per item."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, k: int) -> None:
        self.x, self.y = x, y
        self.crop = v2.RandomCrop(tuple(x.shape[-2:]), padding=int(k), fill=0)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.crop(self.x[i]), self.y[i]


def _model_kwargs(cfg: SweepConfig, data: RareData) -> dict[str, Any]:
    kwargs = dict(cfg.model_kwargs or {})
    c, h, w = data.image_shape
    if cfg.arch == "mlp":
        kwargs.setdefault("hidden", [256, 256, 256])
        kwargs["input_size"] = [c, h, w]
    elif cfg.arch == "small_cnn":
        kwargs["in_channels"] = c
    return kwargs


@torch.no_grad()
def _probs(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    logits, _ = predict_logits(model, TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), device=device)
    return torch.softmax(logits.float(), dim=1).numpy()


class _Runner:
    """Trains and measures the cells of one sweep run (holds the data, the patterns, the attacks)."""

    def __init__(self, ws: Any, cfg: SweepConfig, data: RareData, run_id: int, device: torch.device,
                 patch: PatchPattern | None, donor_runs: list[int] | None = None) -> None:
        self.ws, self.cfg, self.data, self.run_id, self.device = ws, cfg, data, run_id, device
        self.donor_runs = list(donor_runs or [])
        self.kwargs = _model_kwargs(cfg, data)
        self.patterns: dict[str, Any] = {p: (patch if p == PATCH else p) for p in cfg.patterns}
        self.attacks: dict[str, Any] = {}
        self.nonmember_x = torch.cat([data.x["val"], data.x["test"]])
        self.nonmember_y = torch.cat([data.y["val"], data.y["test"]]).numpy()
        order = torch.randperm(len(data.y["train"]), generator=torch.Generator().manual_seed(4242))
        half = len(order) // 2
        self.shadow_in, self.shadow_out = order[:half].sort().values, order[half:].sort().values

    # ---------------------------------------------------------------- models
    def build(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(int(seed))          # the same initial weights for every cell of a seed
        return build_model(self.cfg.arch, num_classes=self.data.num_classes, **self.kwargs)

    def fit(self, x: torch.Tensor, y: torch.Tensor, tc: TrainConfig, seed: int, progress: ProgressFn):
        train = _ShiftedImages(x, y, self.cfg.augment_shift) if self.cfg.augment_shift else TensorDataset(x, y)
        val = TensorDataset(self.data.x["val"], self.data.y["val"]) if self.cfg.train_val else None
        return train_model(self.build(seed), train, config=tc, val=val, device=self.device, progress=progress)

    def accuracy(self, model: torch.nn.Module, split: str) -> float:
        probs = _probs(model, self.data.x[split], self.device)
        return float((probs.argmax(1) == self.data.y[split].numpy()).mean())

    def score(self, model: torch.nn.Module, pattern: str, split: str, seed: int) -> float:
        return spurious_score(model, self.data.x[split], self.data.y[split], pattern=self.patterns[pattern],
                              target=self.cfg.target, threshold=self.cfg.threshold, noise_seed=seed,
                              device=self.device)

    # ---------------------------------------------------------------- membership
    def attack(self, cell: Cell, tc: TrainConfig, progress: ProgressFn):
        key = f"shadow__{cell.optimizer}__{_slug(cell.regulariser)}__seed{cell.seed}"
        if key in self.attacks:
            return self.attacks[key]
        rel_in, rel_out = shadow_rel(self.run_id, key, "in"), shadow_rel(self.run_id, key, "out")
        y = self.data.y["train"]
        for run in [self.run_id] + self.donor_runs:      # this run's shadow, or one a run with these settings saved
            src_in, src_out = shadow_rel(run, key, "in"), shadow_rel(run, key, "out")
            if self.ws.path(src_in).is_file() and self.ws.path(src_out).is_file():
                p_in, p_out = self.ws.open_npy(src_in, mmap=False), self.ws.open_npy(src_out, mmap=False)
                break
        else:
            x = self.data.x["train"]
            shadow = self.fit(x[self.shadow_in], y[self.shadow_in], replace(tc, seed=tc.seed + 1000),
                              cell.seed + 1000, progress).model
            p_in, p_out = _probs(shadow, x[self.shadow_in], self.device), _probs(shadow, x[self.shadow_out], self.device)
            self.ws.save_npy(rel_in, p_in.astype(np.float32))
            self.ws.save_npy(rel_out, p_out.astype(np.float32))
        attack = fit_attack((p_in, y[self.shadow_in].numpy()), (p_out, y[self.shadow_out].numpy()), seed=cell.seed)
        self.attacks[key] = attack
        return attack

    def membership(self, model: torch.nn.Module, x_train: torch.Tensor, chosen: torch.Tensor, attack) -> dict:
        y = self.data.y["train"].numpy()
        patterned = np.zeros(len(y), dtype=bool)
        patterned[chosen.numpy()] = True
        clean_target = (y == self.cfg.target) & ~patterned
        res = evaluate_attack(attack, (_probs(model, x_train, self.device), y),
                              (_probs(model, self.nonmember_x, self.device), self.nonmember_y),
                              member_groups={"patterned": patterned, "clean": clean_target})
        return {"mia_accuracy": res.accuracy, "mia_auroc": res.auroc,
                "mia_auroc_patterned": res.member_auroc["patterned"], "mia_auroc_clean": res.member_auroc["clean"],
                "mia_flagged_patterned": res.member_accuracy["patterned"],
                "mia_flagged_clean": res.member_accuracy["clean"]}

    # ---------------------------------------------------------------- deletion
    def deletion(self, model, x_train, chosen, tc: TrainConfig, cell: Cell, progress: ProgressFn) -> tuple[dict, list[str]]:
        y = self.data.y["train"]
        out, notes = {}, []
        retrained = incremental_retraining(model, x_train, y, chosen, epochs=self.cfg.deletion_epochs, config=tc,
                                           seed=cell.seed + 1, device=self.device,
                                           progress=sub_progress(progress, 0.0, 0.8))
        out["score_after_retraining"] = self.score(retrained, cell.pattern, "test", cell.seed)
        out["acc_after_retraining"] = self.accuracy(retrained, "test")
        lissa = LissaConfig(iterations=self.cfg.lissa_iterations, scale=self.cfg.lissa_scale,
                            damping=self.cfg.lissa_damping, seed=cell.seed)
        try:
            influenced = group_influence_removal(model, x_train, y, chosen, config=lissa, device=self.device,
                                                 progress=sub_progress(progress, 0.8, 1.0))
        except SpurAuditError as exc:          # LiSSA diverged: recorded, the cell still counts
            notes.append(f"group influence: {exc}")
            out["score_after_influence"], out["acc_after_influence"] = None, None
        else:
            out["score_after_influence"] = self.score(influenced, cell.pattern, "test", cell.seed)
            out["acc_after_influence"] = self.accuracy(influenced, "test")
        return out, notes

    # ---------------------------------------------------------------- one cell
    def run_cell(self, cell: Cell, progress: ProgressFn) -> dict:
        cfg, data = self.cfg, self.data
        start = time.perf_counter()
        tc = base_train_config(cfg, cell.optimizer, cell.regulariser, cell.seed)
        x, y = data.x["train"], data.y["train"]
        if cell.n:
            x, chosen = inject(x, y, pattern=self.patterns[cell.pattern], n=cell.n, target=cfg.target,
                               seed=cell.seed, noise_seed=cell.seed)
        else:
            chosen = torch.zeros(0, dtype=torch.long)
        attack = self.attack(cell, tc, sub_progress(progress, 0.0, 0.3)) if cfg.membership else None
        result = self.fit(x, y, tc, cell.seed, sub_progress(progress, 0.3, 0.8))
        model = result.model
        common = {"data": data.name, "arch": cfg.arch, "target": cfg.target, "optimizer": cell.optimizer,
                  "regulariser": cell.regulariser, "seed": cell.seed, "n": cell.n,
                  "test_accuracy": self.accuracy(model, "test"), "val_accuracy": self.accuracy(model, "val")}
        if attack is not None:
            common.update(self.membership(model, x, chosen, attack))
        if not cell.n:
            for key in ("mia_auroc_patterned", "mia_flagged_patterned"):
                common[key] = None
        notes: list[str] = []
        extra: dict[str, Any] = {}
        if _needs_deletion(cfg, cell):
            extra, notes = self.deletion(model, x, chosen, tc, cell, sub_progress(progress, 0.85, 1.0))
        rows = []
        for pattern in (cfg.patterns if cell.n == 0 else (cell.pattern,)):
            rows.append({"pattern": pattern, **common, "score": self.score(model, pattern, "test", cell.seed),
                         "val_score": self.score(model, pattern, "val", cell.seed), **extra})
        progress(1.0, f"cell {cell.key} done")
        return {"key": cell.key, "cell": asdict(cell), "rows": rows, "chosen": chosen.tolist(),
                "train": result.summary(), "seconds": round(time.perf_counter() - start, 3), "notes": notes}


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------
def _check_data(cfg: SweepConfig, data: RareData, patch: PatchPattern | None) -> None:
    if cfg.target >= data.num_classes:
        raise SpurAuditError(f"target class {cfg.target} does not exist; {data.name} has classes 0..{data.num_classes - 1}")
    have = data.class_count(cfg.target)
    if max(cfg.counts) > have:
        raise SpurAuditError(f"n = {max(cfg.counts)} is larger than class {cfg.target} of {data.name} "
                             f"({have} training images); use counts up to {have}")
    if patch is not None:
        _, h, w = data.image_shape
        patch.origin(h, w)                     # a patch larger than the image raises here


def check_sweep(ws: Any, config: SweepConfig | dict) -> SweepConfig:
    """Validate a sweep before launching it (the dashboard's form, a job's params): the options, then
    the data (the class is large enough for every n, the patch fits the images). Loads the data; trains
    nothing. Returns the validated config; raises `SpurAuditError` naming the problem."""
    if isinstance(config, dict):
        config = config_from_mapping(SweepConfig, config, what="rare sweep")
    cfg = config.validate()
    data = load_rare_data(cfg.data, ws=ws, dataset=cfg.dataset, n_train=cfg.n_train, conflict=cfg.conflict)
    patch = PatchPattern(cfg.patch, root=getattr(ws, "root", None)) if PATCH in cfg.patterns else None
    _check_data(cfg, data, patch)
    return cfg


def _find_resumable(ws: Any, fingerprint: str, method: str) -> int | None:
    """The newest run of ``method`` with these settings (finished or not), or None."""
    for run in reversed(ws.list_runs(method=method)):
        if run.params.get("fingerprint") == fingerprint:
            return run.id
    return None


def _needs_deletion(cfg: SweepConfig, cell: Cell) -> bool:
    return (cell.n in cfg.deletion_counts and cell.regulariser == NO_REGULARISER
            and (not cfg.deletion_patterns or cell.pattern in cfg.deletion_patterns))


def _donor_runs(ws: Any, cfg: SweepConfig, run_id: int) -> list[int]:
    """Ids of the other rare-pattern runs with the same cell fingerprint, newest first (their finished
    cells and shadow models can be reused)."""
    fields = set(config_fields(SweepConfig))
    fp = cell_fingerprint(cfg)
    out = []
    for run in sorted((r for m in METHODS for r in ws.list_runs(method=m)), key=lambda r: -r.id):
        if run.id == run_id:
            continue
        stored = {k: v for k, v in dict(run.params.get("config") or {}).items() if k in fields}
        try:
            other = config_from_mapping(SweepConfig, stored, what="stored sweep")
        except SpurAuditError:
            continue
        if cell_fingerprint(other) == fp:
            out.append(run.id)
    return out


def _donor_cell(ws: Any, runs: list[int], cell: Cell, cfg: SweepConfig) -> dict | None:
    """The first finished record of ``cell`` among ``runs`` that fits this sweep (`_reusable`)."""
    for run in runs:
        path = ws.path(cell_rel(run, cell.key))
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fitted = _reusable(record, cell, cfg, run)
        if fitted is not None:
            return fitted
    return None


def _reusable(record: dict, cell: Cell, cfg: SweepConfig, donor: int) -> dict | None:
    """``record`` (a finished cell of run ``donor``) fitted to this sweep, or None when it lacks what this
    sweep measures (a pattern's score on the clean model, the deletion results)."""
    by_pattern = {r.get("pattern"): r for r in record.get("rows") or []}
    wanted = cfg.patterns if cell.n == 0 else (cell.pattern,)
    needs_deletion = _needs_deletion(cfg, cell)
    rows = []
    for p in wanted:
        if p not in by_pattern:
            return None
        row = dict(by_pattern[p])
        if needs_deletion and "score_after_retraining" not in row:
            return None
        if not needs_deletion:
            for key in _DELETION_KEYS:
                row.pop(key, None)
        rows.append(row)
    return {**record, "rows": rows, "reused_from_run": donor}


def _norms(cfg: SweepConfig, data: RareData, patterns: dict[str, Any]) -> dict[str, float]:
    x = data.x["train"][data.y["train"] == cfg.target]
    return {p: float(np.mean([pattern_l2_norm(x, obj, noise_seed=s) for s in cfg.seeds]))
            for p, obj in patterns.items()}


def run_sweep(ws: Any, config: SweepConfig | dict | None = None, *, progress: ProgressFn | None = None,
              method: str = SWEEP_METHOD, stop: Callable[[pd.DataFrame, int], bool] | None = None,
              extra_params: dict | None = None, data: RareData | None = None) -> SweepResult:
    """Run (or continue) a sweep in workspace ``ws``; returns a `SweepResult`.

    ``config``: a `SweepConfig` or a mapping of its fields (`core.config.config_from_mapping`).
    ``stop(table, n)``: with ``order="count"``, called after every seed of count n has finished; True
    ends the sweep there (a canary audit stops at the first significant n). ``method``: the run's
    method ("rare-sweep", or "rare-canary" from `core.rare.canary`); ``extra_params`` go into the run's
    params; ``data`` skips loading (tests).
    The run is recorded at once (``ws.add_run``); a failure or a cancel marks it failed / cancelled
    (its finished cells are kept for the next start).
    """
    progress = progress or null_progress
    if config is None or isinstance(config, dict):
        config = config_from_mapping(SweepConfig, config or {}, what="rare sweep")
    cfg = config.validate()
    device = resolve_device(cfg.device)
    if data is None:
        data = load_rare_data(cfg.data, ws=ws, dataset=cfg.dataset, n_train=cfg.n_train, conflict=cfg.conflict,
                              progress=sub_progress(progress, 0.0, 0.02))
    if cfg.arch not in ("mlp", "small_cnn"):
        data = data.as_rgb()
    runner_patch = PatchPattern(cfg.patch, root=getattr(ws, "root", None)) if PATCH in cfg.patterns else None
    _check_data(cfg, data, runner_patch)
    fingerprint = sweep_fingerprint(cfg, method)
    plain_cfg = to_plain(asdict(cfg))
    run_id = None
    if cfg.resume_run is not None:
        run = ws.get_run(int(cfg.resume_run))
        if run.method != method or run.params.get("fingerprint") != fingerprint:
            raise SpurAuditError(f"run {cfg.resume_run} is not a {method} run with these settings; continue it with "
                                 "its own settings, or start a new sweep")
        run_id = run.id
    elif cfg.resume:
        run_id = _find_resumable(ws, fingerprint, method)
    cells = sweep_cells(cfg)
    resumed = run_id is not None
    if run_id is None:
        run_id = ws.add_run(method=method, dataset=data.name, model=cfg.arch,
                            params={"config": plain_cfg, "fingerprint": fingerprint, **dict(extra_params or {})})
    else:
        ws.update_run(run_id, status="running", error="")
    rel = run_rel(run_id)
    try:
        ws.write_json(f"{rel}/config.json", {**plain_cfg, "fingerprint": fingerprint, "method": method,
                                             "data_sizes": data.sizes(), "data_source": data.source})
        donor_runs = _donor_runs(ws, cfg, run_id) if cfg.resume else []
        runner = _Runner(ws, cfg, data, run_id, device, runner_patch, donor_runs)
        norms = _norms(cfg, data, runner.patterns)
        ws.write_json(f"{rel}/norms.json", norms)
        done = finished_cells(ws, run_id)
        skipped = sum(1 for c in cells if c.key in done)
        reused = 0
        ws.update_run(run_id, metrics={"cells_total": len(cells), "cells_done": skipped, "notes": data.notes})
        ran, stopped = 0, False
        todo = [c for c in cells if c.key not in done]
        base = 0.02
        for i, cell in enumerate(cells):
            if cell.key not in done and cfg.resume:
                # a run with the same cell settings (possibly going on in another process) may have it
                runner.donor_runs = _donor_runs(ws, cfg, run_id)
                record = _donor_cell(ws, runner.donor_runs, cell, cfg)
                if record is not None:
                    ws.write_json(cell_rel(run_id, cell.key), record)
                    done[cell.key] = record
                    reused += 1
            if cell.key not in done:
                k = ran
                part = sub_progress(progress, base + (1 - base) * 0.97 * min(k / max(len(todo), 1), 1.0),
                                    base + (1 - base) * 0.97 * min((k + 1) / max(len(todo), 1), 1.0))
                what = "clean model" if not cell.n else f"{cell.pattern} n={cell.n}"
                part(0.0, f"cell {skipped + reused + k + 1}/{len(cells)}: {what}, {cell.optimizer}, {cell.regulariser}, "
                          f"seed {cell.seed}")
                record = runner.run_cell(cell, part)
                ws.write_json(cell_rel(run_id, cell.key), to_plain(record, nan_as_none=True))
                done[cell.key] = record
                ran += 1
                ws.update_run(run_id, metrics={"cells_done": len(done)})
            last_of_count = i + 1 == len(cells) or cells[i + 1].n != cell.n
            if stop is not None and cfg.order == "count" and last_of_count and cell.n > 0:
                table = pd.DataFrame([r for c in cells[:i + 1] for r in done[c.key]["rows"]])
                if stop(table, cell.n):
                    stopped = True
                    break
        finished = [c for c in cells if c.key in done]
        table = pd.DataFrame([r for c in finished for r in done[c.key]["rows"]])
        summary = summarise(table, norms=norms, alpha=cfg.alpha, level=cfg.level)
        notes = list(data.notes) + [n for c in finished for n in done[c.key].get("notes", [])]
        ws.write_json(f"{rel}/table.json", records(table))
        ws.write_json(f"{rel}/summary.json", summary)
        metrics = {"cells_done": len(finished), "cells_total": len(cells), "stopped_early": stopped,
                   "resumed": resumed, "cells_run_last_start": ran, "cells_reused": reused,
                   "reused_from_runs": sorted({done[c.key].get("reused_from_run") for c in finished
                                               if done[c.key].get("reused_from_run") is not None}), "notes": notes[:50],
                   "headline": _headline(summary)}
        ws.update_run(run_id, status="done", metrics=to_plain(metrics, nan_as_none=True),
                      artifacts={"table": f"{rel}/table.json", "summary": f"{rel}/summary.json",
                                 "config": f"{rel}/config.json"})
        progress(1.0, f"{method} run {run_id} done ({ran} cells trained, {skipped} already saved, "
                      f"{reused} reused from other runs)")
        return SweepResult(run_id=run_id, table=table, summary=summary, cells_run=ran, cells_skipped=skipped,
                           cells_total=len(cells), status="done", stopped_early=stopped, notes=notes,
                           cells_reused=reused)
    except BaseException as exc:
        cancelled = isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "JobCancelled"
        ws.update_run(run_id, status="cancelled" if cancelled else "failed", error=f"{type(exc).__name__}: {exc}")
        raise


def _headline(summary: dict) -> dict:
    """A few numbers for the runs table: per pattern (first optimizer/regulariser) the score at the
    largest n and the smallest significant n."""
    out = {}
    for row in summary.get("patterns", []):
        if row.get("regulariser") != NO_REGULARISER:
            continue
        key = f"{row['pattern']}/{row['optimizer']}"
        out[key] = {"max_score": row.get("max_score"), "smallest_significant_n": row.get("smallest_significant_n"),
                    "spearman_n_score": row.get("spearman_n_score"), "l2_norm": row.get("l2_norm")}
    return out


__all__ = ["SweepConfig", "SweepResult", "Cell", "run_sweep", "check_sweep", "sweep_cells", "sweep_fingerprint",
           "cell_fingerprint",
           "parse_regulariser", "regulariser_label", "base_train_config", "REGULARISER_KEYS"]
