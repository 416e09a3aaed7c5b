"""Digits on textures: a real MNIST digit (the object, the class) composited onto a crop of a real
texture (the background, the bias), with the exact object mask of every image.

Ten texture-like images that ``scikit-image`` ships without download serve as backgrounds
(`TEXTURE_NAMES`). Class ``c`` is correlated with texture ``c``: within every split a fraction ``rho``
of class ``c`` gets texture ``c`` (exact counts, ``round(rho * n_c)``), the rest is dealt evenly over
the other nine textures. Crops for the training split come from the left part of every texture and
crops for val/test from the disjoint right part (`TextureBank.regions`).

Composite (all in [0, 1] float): the texture crop is rescaled to a reduced contrast range
``[bg_low, bg_high]`` (default [0.05, 0.6]); the digit (28x28 MNIST ink, resized to ``s x s`` with
``s`` uniform in ``digit_size``) is drawn in white at a random position:
``image = (1 - alpha) * background + alpha * 1.0`` with ``alpha`` = ink / 255. The object mask is
``alpha >= mask_threshold`` (default 0.5), i.e. exactly the pixels where the digit dominates.

`TextureComposer` generates fresh composites in memory (used to train the demo encoder);
`build_digits_on_textures` writes PNG images, PNG masks and a manifest.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.data
from PIL import Image
from skimage.transform import resize

from core.data.manifest import Manifest
from core.data.mnist_source import MNIST_CLASS_NAMES, SPLITS, load_mnist_digits
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

#: The ten backgrounds (bias value ``b`` <-> ``TEXTURE_NAMES[b]``), all bundled with scikit-image.
TEXTURE_NAMES: tuple[str, ...] = (
    "brick", "grass", "gravel", "moon", "coins",
    "text", "cell", "hubble_deep_field", "immunohistochemistry", "retina",
)


@dataclass
class TextureConfig:
    """How composites look. Shared by the builder and the in-memory generator."""

    size: int = 64                              # image side (pixels)
    digit_size: tuple[int, int] = (28, 44)      # digit side, uniform integer in [lo, hi]
    bg_low: float = 0.05                        # texture rescaled to [bg_low, bg_high] (reduced contrast)
    bg_high: float = 0.6
    texture_side: int = 256                     # each texture resized so its shorter side is this
    train_fraction: float = 0.6                 # left part of each texture for train crops, rest for val/test
    mask_threshold: float = 0.5                 # mask = alpha >= threshold
    textures: tuple[str, ...] = field(default_factory=lambda: TEXTURE_NAMES)

    def validate(self) -> None:
        if self.size < 32:
            raise SpurAuditError(f"size must be >= 32 pixels, got {self.size}")
        lo, hi = self.digit_size
        if not (8 <= lo <= hi <= self.size):
            raise SpurAuditError(f"digit_size must satisfy 8 <= lo <= hi <= size ({self.size}), "
                                 f"got {self.digit_size}")
        if not (0.0 <= self.bg_low < self.bg_high <= 1.0):
            raise SpurAuditError(f"need 0 <= bg_low < bg_high <= 1, got {self.bg_low}, {self.bg_high}")
        if not (0.2 <= self.train_fraction <= 0.8):
            raise SpurAuditError(f"train_fraction must be in [0.2, 0.8], got {self.train_fraction}")
        if len(self.textures) != 10 or len(set(self.textures)) != 10:
            raise SpurAuditError(f"need exactly 10 distinct textures, got {list(self.textures)}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise SpurAuditError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")


def _load_texture(name: str, side: int) -> np.ndarray:
    """One scikit-image texture as float32 RGB (H, W, 3) in [0, 1], shorter side resized to ``side``."""
    fn = getattr(skimage.data, name, None)
    if fn is None:
        raise SpurAuditError(f"skimage.data has no image {name!r}; choose bundled ones such as "
                             f"{', '.join(TEXTURE_NAMES)}")
    img = np.asarray(fn())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    if name == "retina":  # drop the black border around the fundus
        h, w = img.shape[:2]
        img = img[int(0.3 * h): int(0.7 * h), int(0.3 * w): int(0.7 * w)]
    h, w = img.shape[:2]
    scale = side / min(h, w)
    out = resize(img, (max(side, int(round(h * scale))), max(side, int(round(w * scale)))),
                 anti_aliasing=True, preserve_range=True).astype(np.float32)
    return out


class TextureBank:
    """The ten textures, contrast-reduced, with disjoint crop regions for train and eval splits.

    ``textures[b]``: float32 (H_b, W_b, 3) in ``[bg_low, bg_high]`` (per-texture min/max stretched to
    that range, after a 1/99 percentile clip). Train crops have their left edge in the first
    ``train_fraction`` of the width; eval crops lie entirely in the rest (no pixel shared).
    """

    def __init__(self, config: TextureConfig | None = None) -> None:
        self.config = config or TextureConfig()
        self.config.validate()
        cfg = self.config
        self.textures: list[np.ndarray] = []
        for name in cfg.textures:
            t = _load_texture(name, cfg.texture_side)
            lo, hi = np.percentile(t, [1, 99])
            t = np.clip((t - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
            self.textures.append((cfg.bg_low + (cfg.bg_high - cfg.bg_low) * t).astype(np.float32))

    def regions(self, b: int, region: str) -> tuple[int, int, int, int]:
        """``(y_min, y_max, x_min, x_max)`` of allowed crop top-left corners (inclusive) of texture b."""
        h, w = self.textures[b].shape[:2]
        s = self.config.size
        cut = int(round(w * self.config.train_fraction))
        if region == "train":
            return 0, h - s, 0, cut - s
        if region == "eval":
            return 0, h - s, cut, w - s
        raise SpurAuditError(f"unknown region {region!r}; valid choices: eval, train")

    def crop(self, b: int, rng: np.random.Generator, region: str) -> np.ndarray:
        """A random (size, size, 3) crop of texture ``b`` from ``region`` ('train' or 'eval'),
        randomly flipped horizontally/vertically."""
        y0, y1, x0, x1 = self.regions(b, region)
        y = int(rng.integers(y0, y1 + 1))
        x = int(rng.integers(x0, x1 + 1))
        s = self.config.size
        c = self.textures[b][y:y + s, x:x + s]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        return c


def assign_biases(labels: np.ndarray, rho: float, rng: np.random.Generator, *,
                  num_bias: int = 10) -> np.ndarray:
    """Texture index per sample: for each class ``c`` exactly ``round(rho * n_c)`` get texture ``c``
    (bias-aligned), the others are dealt round-robin over the other ``num_bias - 1`` textures
    (counts within one of each other), then the assignment is shuffled within the class.

    ``labels``: int array (N,) in 0..9. Returns int64 (N,). ``rho = 0.1`` with 10 textures is uniform.
    """
    if not 0.0 <= rho <= 1.0:
        raise SpurAuditError(f"rho must be in [0, 1], got {rho}")
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = len(idx)
        n_al = int(round(rho * n))
        others = [b for b in range(num_bias) if b != c]
        start = int(rng.integers(len(others)))
        conflict = [others[(start + i) % len(others)] for i in range(n - n_al)]
        values = np.array([int(c)] * n_al + conflict, dtype=np.int64)
        out[idx] = values[rng.permutation(n)]
    return out


class TextureComposer:
    """Composite digits onto texture crops, in memory.

    >>> comp = TextureComposer()
    >>> x, m = comp.compose(digits, biases, rng=np.random.default_rng(0), region="train")
    ``digits``: uint8 (N, 28, 28) MNIST ink; ``biases``: int (N,) texture indices.
    Returns ``x`` float32 (N, 3, size, size) in [0, 1] and ``m`` bool (N, size, size) object masks.
    """

    def __init__(self, config: TextureConfig | None = None, *, bank: TextureBank | None = None) -> None:
        self.bank = bank or TextureBank(config)
        self.config = self.bank.config

    def compose_one(self, digit: np.ndarray, bias: int, rng: np.random.Generator, region: str
                    ) -> tuple[np.ndarray, np.ndarray]:
        """One composite: float32 (size, size, 3) image, bool (size, size) mask."""
        cfg = self.config
        s = cfg.size
        lo, hi = cfg.digit_size
        d = int(rng.integers(lo, hi + 1))
        ink = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((d, d), Image.BILINEAR)
        alpha_small = np.asarray(ink, dtype=np.float32) / 255.0
        y = int(rng.integers(0, s - d + 1))
        x = int(rng.integers(0, s - d + 1))
        alpha = np.zeros((s, s), dtype=np.float32)
        alpha[y:y + d, x:x + d] = alpha_small
        bg = self.bank.crop(int(bias), rng, region)
        img = (1.0 - alpha[..., None]) * bg + alpha[..., None] * 1.0
        return img.astype(np.float32), alpha >= cfg.mask_threshold

    def compose(self, digits: np.ndarray, biases: np.ndarray, *, rng: np.random.Generator,
                region: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Batch version of `compose_one`; see the class docstring for shapes."""
        digits = np.asarray(digits)
        if digits.ndim != 3 or digits.shape[1:] != (28, 28):
            raise SpurAuditError(f"digits must be uint8 (N, 28, 28), got shape {digits.shape}")
        if len(biases) != len(digits):
            raise SpurAuditError(f"need one bias per digit, got {len(biases)} for {len(digits)} digits")
        s = self.config.size
        xs = np.empty((len(digits), 3, s, s), dtype=np.float32)
        ms = np.empty((len(digits), s, s), dtype=bool)
        for i in range(len(digits)):
            img, m = self.compose_one(digits[i], int(biases[i]), rng, region)
            xs[i] = img.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
            ms[i] = m
        return xs, ms

    def swap_background(self, digits: np.ndarray, biases: np.ndarray, *, seed: int, region: str = "eval"
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Same digits at the same positions (same ``seed``), backgrounds drawn with new textures."""
        return self.compose(digits, biases, rng=np.random.default_rng(seed), region=region)


def _split_stats(labels: np.ndarray, biases: np.ndarray) -> dict:
    aligned = biases == labels
    per_class = {int(c): float(1.0 - aligned[labels == c].mean()) for c in np.unique(labels)}
    return {"n": int(len(labels)), "conflicting_fraction": float(1.0 - aligned.mean()),
            "conflicting_fraction_per_class": per_class}


@dataclass
class GeneratedSplit:
    """One split of digits-on-textures in memory.

    images: float32 (N, 3, size, size) in [0, 1] (quantised to 1/255 steps, exactly what the PNGs hold);
    masks: bool (N, size, size); labels, biases: int64 (N,)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    biases: np.ndarray
    source: str = ""

    @property
    def aligned(self) -> np.ndarray:
        return self.biases == self.labels


def generate_digits_on_textures(*, seed: int = 0, rho: float = 0.95, rho_eval: float = 0.5,
                                n_train: int | None = None, n_val: int | None = None,
                                n_test: int | None = None, config: TextureConfig | None = None,
                                splits: tuple[str, ...] = SPLITS, mnist_path: str | Path | None = None,
                                composer: "TextureComposer | None" = None,
                                progress: ProgressFn | None = None) -> dict[str, GeneratedSplit]:
    """The dataset `build_digits_on_textures` writes, generated in memory (same seed -> same pixels,
    masks and textures as the builder's files). Returns {split: GeneratedSplit} for ``splits``."""
    progress = progress or null_progress
    for name, r in (("rho", rho), ("rho_eval", rho_eval)):
        if not 0.0 <= float(r) <= 1.0:
            raise SpurAuditError(f"{name} must be in [0, 1], got {r}")
    for sp in splits:
        if sp not in SPLITS:
            raise SpurAuditError(f"unknown split {sp!r}; valid choices: {', '.join(SPLITS)}")
    digits = load_mnist_digits(mnist_path=mnist_path, seed=seed, n_train=n_train, n_val=n_val,
                               n_test=n_test)
    composer = composer or TextureComposer(config)
    out: dict[str, GeneratedSplit] = {}
    for k, split in enumerate(SPLITS):
        if split not in splits:
            continue
        labels = digits.labels[split]
        rng = np.random.default_rng([seed, k, 7])
        biases = assign_biases(labels, rho if split == "train" else rho_eval, rng)
        x, m = composer.compose(digits.images[split], biases, rng=rng,
                                region="train" if split == "train" else "eval")
        x = np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0  # what an 8-bit PNG stores
        out[split] = GeneratedSplit(images=x.astype(np.float32), masks=m, labels=labels.astype(np.int64),
                                    biases=biases, source=digits.source)
        progress((k + 1) / len(SPLITS), f"generated {split} ({len(labels)} images)")
    return out


def build_digits_on_textures(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None,
                             rho: float = 0.95, rho_eval: float = 0.5,
                             n_train: int | None = None, n_val: int | None = None,
                             n_test: int | None = None, size: int = 64,
                             digit_size: tuple[int, int] | None = None, bg_low: float = 0.05,
                             bg_high: float = 0.6, mnist_path: str | Path | None = None):
    """Write the digits-on-textures dataset to ``out_dir`` and return its `Manifest`.

    Layout: ``images/<split>/<sample_id>.png`` (RGB), ``masks/<split>/<sample_id>.png`` (L, 255 =
    digit), ``manifest.parquet``, ``stats.json`` (realised conflicting fraction per split and class;
    the same numbers are in ``manifest.attrs["conflict_fraction"]`` / ``["conflict_fraction_per_class"]``).
    ``rho``: fraction of each training class on its own texture; ``rho_eval`` the same for val/test
    (0.5 = half aligned, Waterbirds-style; 0.1 = unbiased). Counts are exact per class.
    ``digit_size``: (lo, hi) digit side in pixels; None = (28, 44) scaled by ``size / 64``.
    Manifest columns: label (digit), bias (texture index 0..9), aligned (bias == label),
    group = label * 10 + bias, mask_path. Deterministic given ``seed``; the pixels equal
    `generate_digits_on_textures` with the same arguments.
    """
    progress = progress or null_progress
    if digit_size is None:  # 28..44 px at 64 px, scaled with the image size
        digit_size = (max(8, round(28 * int(size) / 64)), max(8, round(44 * int(size) / 64)))
    cfg = TextureConfig(size=int(size), digit_size=tuple(int(v) for v in digit_size),
                        bg_low=float(bg_low), bg_high=float(bg_high))
    cfg.validate()
    out_dir = Path(out_dir)
    progress(0.0, "compositing digits onto textures")
    data = generate_digits_on_textures(seed=seed, rho=rho, rho_eval=rho_eval, n_train=n_train, n_val=n_val,
                                       n_test=n_test, config=cfg, mnist_path=mnist_path,
                                       progress=lambda f, m: progress(0.3 * f, m))
    rows: list[dict] = []
    stats: dict = {"rho": rho, "rho_eval": rho_eval, "textures": list(cfg.textures), "splits": {}}
    total = sum(len(g.labels) for g in data.values())
    done = 0
    sample_id = 0
    for split in SPLITS:
        g = data[split]
        stats["splits"][split] = _split_stats(g.labels, g.biases)
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(g.labels)):
            rel = f"images/{split}/{sample_id:06d}.png"
            mrel = f"masks/{split}/{sample_id:06d}.png"
            img = np.rint(g.images[i].transpose(1, 2, 0) * 255).astype(np.uint8)  # (3, H, W) -> (H, W, 3)
            Image.fromarray(img, "RGB").save(out_dir / rel)
            Image.fromarray(g.masks[i].astype(np.uint8) * 255, "L").save(out_dir / mrel)
            lab, b = int(g.labels[i]), int(g.biases[i])
            rows.append({"sample_id": sample_id, "path": rel, "label": lab, "class_name": str(lab),
                         "split": split, "bias": b, "aligned": bool(b == lab), "group": lab * 10 + b,
                         "mask_path": mrel})
            sample_id += 1
            done += 1
            if done % 250 == 0:
                progress(0.3 + 0.7 * done / total, f"{split}: wrote {i + 1}/{len(g.labels)} images")
    df = pd.DataFrame(rows)
    params = {"rho": float(rho), "rho_eval": float(rho_eval), "size": cfg.size, "digit_size": list(cfg.digit_size),
              "bg_low": cfg.bg_low, "bg_high": cfg.bg_high}
    attrs = {"kind": "digits-on-textures", "seed": int(seed), "params": params, "source": data["train"].source,
             "conflict_fraction": {s: stats["splits"][s]["conflicting_fraction"] for s in SPLITS},
             "conflict_count": {s: int(round(stats["splits"][s]["conflicting_fraction"] * stats["splits"][s]["n"]))
                                for s in SPLITS},
             "conflict_fraction_per_class": {s: stats["splits"][s]["conflicting_fraction_per_class"] for s in SPLITS},
             "split_sizes": {s: stats["splits"][s]["n"] for s in SPLITS},
             "textures": list(cfg.textures)}
    manifest = Manifest(df, root=out_dir, class_names=list(MNIST_CLASS_NAMES), bias_columns=["bias"], attrs=attrs)
    manifest.save(out_dir / "manifest.parquet")
    stats["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    stats["seed"] = seed
    stats["digit_source"] = data["train"].source
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    progress(1.0, "conflicting fraction " + ", ".join(
        f"{s} {stats['splits'][s]['conflicting_fraction']:.3f}" for s in SPLITS))
    return manifest
