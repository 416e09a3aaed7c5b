"""The demo encoder: a small CNN adversarially trained (L2-PGD) on unbiased digits-on-textures with
two heads (digit and texture), so that its features hold both the object and the background, as a
robust ImageNet backbone holds objects and backgrounds (seed 002's setting).

- `DemoEncoderConfig`: architecture + training hyper-parameters (one dataclass).
- `DemoEncoder`: ``normalize -> encoder (conv stack, spatial map (B, D, 8, 8)) -> GAP -> heads``.
  ``feature_map(x)`` is the last conv layer post-ReLU (channel j <-> feature j), ``features(x)`` its
  global average (B, D), ``digit_head`` / ``texture_head`` are plain ``nn.Linear``.
- `train_demo_encoder`: fresh composites every epoch (new texture crops, positions and sizes for the
  same 4,000 training digits, texture uniform: rho = 0.1), loss = CE(digit) + CE(texture) on L2-PGD
  adversarial examples of that joint loss.
- `save_demo_encoder` / `load_demo_encoder`: fp16 weights + JSON config; the shipped copy lives in
  ``assets/demo_encoder/`` (`load_shipped_encoder`).
- `unbiased_eval_set`: the val digits composited on uniform textures (eval crop region, fixed seed).
- `intervention_scores`: ground truth for a feature by intervention: spurious when swapping the
  background moves its activation more than removing the digit.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.data.mnist_source import load_mnist_digits
from core.data.synthetic.textures import TextureComposer, assign_biases
from core.device import resolve_device
from core.errors import SpurAuditError
from core.models.attacks import l2_pgd
from core.models.audit_model import AuditModel
from core.models.registry import register_model
from core.progress import ProgressFn, null_progress

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo_encoder"
WEIGHTS_NAME = "encoder.pt"
CONFIG_NAME = "config.json"


@dataclass
class DemoEncoderConfig:
    """Architecture and training recipe of the demo encoder."""

    input_pool: int = 2            # average-pool factor applied to the (normalised) input first
    widths: tuple[int, ...] = (24, 48, 96, 128)
    pools: tuple[int, ...] = (2, 2, 1, 1)   # max-pool factor after each conv block (1 = none)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    eps: float = 0.5               # L2 radius of the PGD attack (images in [0, 1], 3x64x64)
    pgd_steps: int = 2
    adv_warmup_epochs: int = 6     # clean epochs before adversarial training starts
    texture_weight: float = 1.0    # weight of the texture CE
    pool_rho: float = 0.1          # texture<->digit correlation of the training pool (0.1 = uniform)
    seed: int = 0
    n_train: int | None = None     # training digits (None = all 4,000; smaller for tests)

    def validate(self) -> None:
        if len(self.widths) != len(self.pools) or not self.widths:
            raise SpurAuditError("widths and pools must be non-empty and of equal length")
        if any(int(p) not in (1, 2) for p in self.pools):
            raise SpurAuditError(f"pools must be 1 (none) or 2 (2x2 max-pool), got {self.pools}")
        if self.epochs < 1 or self.batch_size < 2:
            raise SpurAuditError("epochs must be >= 1 and batch_size >= 2")
        if self.n_train is not None and self.n_train < self.batch_size:
            raise SpurAuditError(f"n_train ({self.n_train}) must be >= batch_size ({self.batch_size})")
        if self.eps < 0 or self.pgd_steps < 0:
            raise SpurAuditError("eps and pgd_steps must be >= 0 (0 = standard training)")


class _Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.4, 0.4]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_stack(widths: tuple[int, ...], pools: tuple[int, ...], in_ch: int = 3) -> nn.Sequential:
    """3x3 stride-1 conv + BN + ReLU blocks, each followed by a 2x2 max-pool where ``pools`` says 2.
    The output is the spatial feature map (B, widths[-1], H / prod(pools), W / prod(pools))."""
    layers: list[nn.Module] = []
    c = in_ch
    for w, p in zip(widths, pools):
        layers += [nn.Conv2d(c, int(w), 3, 1, 1, bias=False), nn.BatchNorm2d(int(w)), nn.ReLU(inplace=False)]
        if int(p) == 2:
            layers.append(nn.MaxPool2d(2))
        c = int(w)
    return nn.Sequential(*layers)


class DemoEncoder(nn.Module):
    """Multi-task encoder: images (B, 3, H, W) float in [0, 1] -> digit logits (B, 10) and texture
    logits (B, 10). ``feature_map`` (B, D, H/8, W/8), ``features`` (B, D), D = widths[-1]."""

    def __init__(self, config: DemoEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or DemoEncoderConfig()
        self.config.validate()
        self.normalize = _Normalize()
        stack = conv_stack(tuple(self.config.widths), tuple(self.config.pools))
        if int(self.config.input_pool) > 1:
            stack = nn.Sequential(nn.AvgPool2d(int(self.config.input_pool)), *stack)
        self.encoder = stack
        self.feature_dim = int(self.config.widths[-1])
        self.digit_head = nn.Linear(self.feature_dim, 10)
        self.texture_head = nn.Linear(self.feature_dim, 10)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (B, D, h, w) -> (B, D)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.digit_head(f), self.texture_head(f)


def joint_l2_pgd(model: DemoEncoder, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, *, eps: float,
                 steps: int, texture_weight: float = 1.0) -> torch.Tensor:
    """`core.models.attacks.l2_pgd` on the joint loss CE(digit) + w * CE(texture), with BN in eval mode
    while attacking (its statistics untouched; the mode is restored): ``steps`` steps of size
    2.5 * eps / steps, projected onto the eps-ball and clamped to [0, 1], starting at ``x``.
    Returns detached adversarial images, same shape as ``x``."""
    def joint_loss(adv: torch.Tensor) -> torch.Tensor:
        d_logits, t_logits = model(adv)
        return F.cross_entropy(d_logits, y) + texture_weight * F.cross_entropy(t_logits, t)

    was_training = model.training
    model.eval()
    try:
        return l2_pgd(joint_loss, x, eps=eps, steps=steps)
    finally:
        model.train(was_training)


def unbiased_eval_set(*, n: int | None = None, seed: int = 0, split: str = "val",
                      composer=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """The ``split`` digits (first ``n`` if given) on uniformly drawn textures (rho = 0.1, exact),
    crops from the eval region, fixed ``seed``. Returns images (N, 3, 64, 64) float32, digit labels
    (N,) int64, texture labels (N,) int64 and masks (N, 64, 64) bool."""
    digits = load_mnist_digits(seed=seed)
    imgs, labels = digits.images[split], digits.labels[split]
    if n is not None:
        imgs, labels = imgs[:n], labels[:n]
    composer = composer or TextureComposer()
    rng = np.random.default_rng([seed, 99])
    biases = assign_biases(labels, 0.1, rng)
    x, m = composer.compose(imgs, biases, rng=rng, region="eval")
    return torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(biases), m


@torch.no_grad()
def evaluate_encoder(model: DemoEncoder, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, *,
                     batch_size: int = 256, device: str | torch.device = "cpu") -> dict[str, float]:
    """Digit and texture accuracy (fractions in [0, 1]) of both heads on (x, y, t)."""
    dev = resolve_device(device)
    model.eval().to(dev)
    dc = tc = 0
    for i in range(0, len(x), batch_size):
        d, tt = model(x[i:i + batch_size].to(dev))
        dc += int((d.argmax(1).cpu() == y[i:i + batch_size]).sum())
        tc += int((tt.argmax(1).cpu() == t[i:i + batch_size]).sum())
    return {"digit_accuracy": dc / len(x), "texture_accuracy": tc / len(x)}


def train_demo_encoder(config: DemoEncoderConfig | None = None, *, device: str | torch.device = "auto",
                       progress: ProgressFn | None = None, eval_n: int = 500,
                       ) -> tuple[DemoEncoder, dict]:
    """Train the demo encoder (see module docstring). Returns the model (eval mode, on CPU) and a
    metrics dict: digit/texture accuracy on `unbiased_eval_set` (first ``eval_n`` val digits) plus a
    per-epoch history."""
    config = config or DemoEncoderConfig()
    config.validate()
    progress = progress or null_progress
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    digits = load_mnist_digits(seed=config.seed)
    tr_x, tr_y = digits.images["train"], digits.labels["train"]
    if config.n_train is not None:
        tr_x, tr_y = tr_x[:config.n_train], tr_y[:config.n_train]
    composer = TextureComposer()
    ex, ey, et, _ = unbiased_eval_set(n=eval_n, seed=config.seed, composer=composer)
    model = DemoEncoder(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(tr_y) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps,
                                                pct_start=0.05)
    history: list[dict] = []
    rng = np.random.default_rng([config.seed, 1])
    for epoch in range(config.epochs):
        biases = assign_biases(tr_y, config.pool_rho, rng)
        x_np, _ = composer.compose(tr_x, biases, rng=rng, region="train")  # fresh composites
        x_all = torch.from_numpy(x_np)
        y_all = torch.from_numpy(tr_y)
        t_all = torch.from_numpy(biases)
        perm = torch.from_numpy(rng.permutation(len(tr_y)))
        adv = epoch >= config.adv_warmup_epochs
        # ramp eps over the first adversarial epochs
        eps = config.eps * min(1.0, (epoch - config.adv_warmup_epochs + 1) / 3) if adv else 0.0
        model.train()
        loss_sum = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * config.batch_size:(s + 1) * config.batch_size]
            xb, yb, tb = x_all[idx].to(dev), y_all[idx].to(dev), t_all[idx].to(dev)
            if adv:
                xb = joint_l2_pgd(model, xb, yb, tb, eps=eps, steps=config.pgd_steps,
                                  texture_weight=config.texture_weight)
            d_logits, t_logits = model(xb)
            loss = F.cross_entropy(d_logits, yb) + config.texture_weight * F.cross_entropy(t_logits, tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            progress((epoch * steps_per_epoch + s + 1) / total_steps, f"epoch {epoch + 1}/{config.epochs}")
        m = evaluate_encoder(model, ex, ey, et, device=dev)
        m.update(epoch=epoch + 1, loss=loss_sum / steps_per_epoch, eps=eps)
        history.append(m)
        progress((epoch + 1) / config.epochs,
                 f"epoch {epoch + 1}: loss {m['loss']:.3f} digit {m['digit_accuracy']:.3f} "
                 f"texture {m['texture_accuracy']:.3f}")
    model = model.cpu().eval()
    final = evaluate_encoder(model, ex, ey, et)
    return model, {**final, "eval_n": int(len(ey)), "history": history}


SLICE_N = 100  # val digits whose accuracy is recorded for the load test

#: The audited demo model's linear head recipe (``ProbeConfig(**DEMO_HEAD)``: SGD momentum 0.9,
#: batch 128, 20 epochs at lr 1e-3, no validation selection), as in ``benchmarks/audit_quality.py``.
#: With lr 1e-2 (the reference head recipe) the 4,000-image head also picks up the digit features from
#: the 5 % conflicting images and is much less biased (spurious gap ~17 instead of ~70 points).
DEMO_HEAD: dict = {"lr": 1e-3, "epochs": 20}


def save_demo_encoder(model: DemoEncoder, out_dir: str | Path, *, metrics: dict, command: str) -> Path:
    """Write ``encoder.pt`` (state dict, parameters in fp16) and ``config.json`` (architecture, recipe, metrics,
    reproducing command) to ``out_dir`` (an asset folder, not a workspace). The metrics gain
    ``slice_digit_accuracy`` / ``slice_texture_accuracy``: the fp16 weights as saved, on the first
    `SLICE_N` digits of `unbiased_eval_set`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {name for name, _ in model.named_parameters()}
    # parameters in fp16 (half the size); buffers (normalisation constants, BN statistics) stay fp32
    sd = {k: (v.half() if k in params and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(sd, out / WEIGHTS_NAME)
    reloaded = DemoEncoder(model.config)
    reloaded.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()})
    sx, sy, st, _ = unbiased_eval_set(n=SLICE_N, seed=model.config.seed)
    sm = evaluate_encoder(reloaded, sx, sy, st)
    metrics = {**metrics, "slice_n": SLICE_N, "slice_digit_accuracy": sm["digit_accuracy"],
               "slice_texture_accuracy": sm["texture_accuracy"]}
    cfg = asdict(model.config)
    (out / CONFIG_NAME).write_text(json.dumps({"arch": "demo_cnn", "config": cfg, "metrics": metrics,
                                               "command": command}, indent=2))
    return out / WEIGHTS_NAME


def load_demo_encoder(path: str | Path = ASSET_DIR, *, device: str | torch.device = "cpu") -> tuple[DemoEncoder, dict]:
    """Load an encoder saved by `save_demo_encoder` (fp16 weights cast back to fp32).
    Returns the model (eval mode) and the parsed config.json."""
    folder = Path(path)
    wpath, cpath = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not wpath.exists() or not cpath.exists():
        raise SpurAuditError(f"no demo encoder in {folder} (need {WEIGHTS_NAME} and {CONFIG_NAME}); "
                             "train one with `python benchmarks/audit_quality.py --train-encoder DIR`")
    meta = json.loads(cpath.read_text())
    known = {f.name for f in fields(DemoEncoderConfig)}
    raw = {k: v for k, v in dict(meta["config"]).items() if k in known}
    for k in ("widths", "pools"):
        raw[k] = tuple(raw[k])
    model = DemoEncoder(DemoEncoderConfig(**raw))
    sd = torch.load(wpath, map_location="cpu", weights_only=True)
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()})
    return model.to(resolve_device(device)).eval(), meta


def load_shipped_encoder(*, device: str | torch.device = "cpu") -> tuple[DemoEncoder, dict]:
    """The encoder shipped in ``assets/demo_encoder/``."""
    return load_demo_encoder(ASSET_DIR, device=device)


# ---------------------------------------------------------------------------------------------
# the encoder as an AuditModel (registry arch "demo_cnn")
# ---------------------------------------------------------------------------------------------
NORM_MEAN = (0.4, 0.4, 0.4)
NORM_STD = (0.25, 0.25, 0.25)


@register_model("demo_cnn")
def build_demo_cnn(*, num_classes: int, pretrained: str | Path | None = None,
                   input_pool: int = 2, widths: tuple[int, ...] = DemoEncoderConfig.widths,
                   pools: tuple[int, ...] = DemoEncoderConfig.pools) -> AuditModel:
    """Registry builder for arch ``demo_cnn``: the demo encoder's conv stack + a fresh linear head.

    ``pretrained``: a folder written by `save_demo_encoder` (``"shipped"`` = ``assets/demo_encoder``);
    its encoder weights are copied in (the head stays freshly initialised). The `AuditModel`'s
    ``feature_map`` is (B, widths[-1], 8, 8) for 64x64 inputs.
    """
    cfg = DemoEncoderConfig(input_pool=int(input_pool), widths=tuple(int(w) for w in widths),
                            pools=tuple(int(p) for p in pools))
    cfg.validate()
    if pretrained is not None:
        folder = ASSET_DIR if str(pretrained) == "shipped" else Path(pretrained)
        enc, _ = load_demo_encoder(folder)
        if (tuple(enc.config.widths), tuple(enc.config.pools), enc.config.input_pool) != \
                (cfg.widths, cfg.pools, cfg.input_pool):
            cfg = enc.config  # the checkpoint's architecture wins
    else:
        enc = DemoEncoder(cfg)
    config = {"input_pool": int(cfg.input_pool), "widths": [int(w) for w in cfg.widths],
              "pools": [int(p) for p in cfg.pools]}
    model = AuditModel(arch="demo_cnn", config=config, encoder=DemoEncoder(cfg).encoder,
                       feature_dim=int(cfg.widths[-1]), num_classes=int(num_classes), mean=NORM_MEAN,
                       std=NORM_STD, has_spatial_map=True)
    if pretrained is not None:
        model.encoder.load_state_dict(enc.encoder.state_dict())
    return model


def as_audit_model(encoder: DemoEncoder, *, num_classes: int = 10, head: str | None = None) -> AuditModel:
    """An `AuditModel` (arch ``demo_cnn``) sharing nothing with ``encoder`` but its weights (copied).
    ``head="digit"`` / ``"texture"`` copies that head in; None leaves a fresh head."""
    model = build_demo_cnn(num_classes=num_classes, input_pool=encoder.config.input_pool,
                           widths=tuple(encoder.config.widths), pools=tuple(encoder.config.pools))
    model.encoder.load_state_dict(encoder.encoder.state_dict())
    if head is not None:
        check = {"digit": encoder.digit_head, "texture": encoder.texture_head}
        if head not in check:
            raise SpurAuditError(f"unknown head {head!r}; valid choices: digit, texture")
        model.head.load_state_dict(check[head].state_dict())
    return model.eval()




# ---------------------------------------------------------------------------------------------
# ground truth by intervention
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _pooled(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def intervention_effects(model: nn.Module, digits: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                         composer=None, region: str = "eval") -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """How much each feature moves under two interventions, per class.

    For the digits of class c (uint8 (N, 28, 28), ``labels`` (N,)) composited on texture c (the
    bias-aligned background, seeded): ``swap`` = mean |f(x) - f(x with the texture swapped for another
    one, the digit unchanged in size and place)|, ``remove`` = mean |f(x) - f(x without the digit, the
    same background)|, both (D,) float arrays, from ``model.features`` (B, D).
    Returns {c: (swap, remove)}.
    """
    composer = composer or TextureComposer()
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    model.eval()
    for c in np.unique(labels):
        d = digits[labels == c]
        n = len(d)
        own = np.full(n, int(c))
        other = np.array([(int(c) + 1 + (i % 9)) % 10 for i in range(n)])   # the 9 others in turn
        s = seed * 1000 + int(c)
        # same seed -> same digit size/position and crop draws; only the texture (or the ink) differs
        x, _ = composer.compose(d, own, rng=np.random.default_rng(s), region=region)
        x_swap, _ = composer.compose(d, other, rng=np.random.default_rng(s), region=region)
        x_none, _ = composer.compose(np.zeros_like(d), own, rng=np.random.default_rng(s), region=region)
        f = _pooled(model, torch.from_numpy(x))
        swap = (f - _pooled(model, torch.from_numpy(x_swap))).abs().mean(0).numpy()
        remove = (f - _pooled(model, torch.from_numpy(x_none))).abs().mean(0).numpy()
        out[int(c)] = (swap, remove)
    return out


def intervention_labels(effects: dict[int, tuple[np.ndarray, np.ndarray]], top_features: np.ndarray
                        ) -> list[dict]:
    """Ground-truth kind of each (class, top feature): ``spurious_background`` when swapping the
    background moves the feature more than removing the digit, else ``core``. Rows carry
    class_index, feature, answer, swap, remove."""
    rows = []
    for c in range(top_features.shape[0]):
        swap, remove = effects[c]
        for j in top_features[c]:
            j = int(j)
            kind = "spurious_background" if swap[j] > remove[j] else "core"
            rows.append(dict(class_index=c, feature=j, answer=kind, swap=float(swap[j]),
                             remove=float(remove[j])))
    return rows
