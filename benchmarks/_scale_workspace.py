"""An ImageNet-shaped workspace for scale benchmarks and tests: 1,000 classes (999 × 12 small PNGs plus
one class of 1,300), fabricated float16 feature memmaps for a few models, 5,000 labelled (class,
feature) pairs, and the audit's saved discovery, rankings and gaps.

Nothing here is trained: the images are small random PNGs (for thumbnails), each model is a random-init
`small_cnn` whose last width is the feature dimension (so activation maps and feature attacks run on a
real model), and the features and logits are drawn with a planted structure so that the audit has
something to find:

* class c has a core feature ``2c mod D`` and a spurious feature ``2c + 1 mod D`` (the head weights of
  every model put weight on both, so discovery ranks them on top);
* every image carries a latent cue strength s ~ N(0, 1); its spurious activation grows with s and the
  probability that a model classifies it correctly is ``sigmoid(a + b·s)`` (a and b per model), so the
  spurious gap is positive for every class and differs between models.

`build_scale_workspace` returns a dict describing what it made. Typical cost on 2 CPU cores: ~10 s for
the images and import, a few seconds for features, ~20-40 s for discovery, rankings and gaps.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.audit.gaps import GapConfig
from core.audit.pipeline import run_discovery, run_gaps, run_rankings
from core.data import add_dataset_from, load_manifest
from core.features.store import FEATURE_DTYPE, FEATURES_FILE, LABELS_FILE, LOGIT_DTYPE, LOGITS_FILE
from core.models import build_model, save_workspace_model
from core.workspace import Workspace

DATASET = "imagenet-shaped"
ANSWERS = ("core", "spurious_background")


def _write_images(folder: Path, counts: list[int], rng: np.random.Generator, size: int) -> None:
    """An ImageFolder: ``folder/c0042/img_0007.png`` (random colour fields, one hue per class)."""
    for c, n in enumerate(counts):
        d = folder / f"c{c:04d}"
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        for i in range(n):
            pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(d / f"img_{i:04d}.png", compress_level=1)


def _fabricate(labels: np.ndarray, dim: int, num_classes: int, rng: np.random.Generator, *,
               acc_base: float, cue_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float16, logits (N, K) float32) with the planted core/spurious structure."""
    n = len(labels)
    feats = np.abs(rng.normal(0, 0.3, size=(n, dim))).astype(np.float32)        # (N, D) background activity
    cue = rng.normal(0, 1, size=n)                                                # (N,) latent cue strength
    rows = np.arange(n)
    feats[rows, (2 * labels) % dim] += 2.0 + rng.normal(0, 0.3, size=n)           # core feature
    feats[rows, (2 * labels + 1) % dim] += np.maximum(0.0, 1.5 + cue)             # spurious feature
    p_correct = 1.0 / (1.0 + np.exp(-(acc_base + cue_weight * cue)))
    correct = rng.random(n) < p_correct
    wrong = (labels + rng.integers(1, num_classes, size=n)) % num_classes
    pred = np.where(correct, labels, wrong)
    logits = rng.normal(0, 1, size=(n, num_classes)).astype(np.float32)           # (N, K)
    logits[rows, pred] += 8.0
    return feats.astype(FEATURE_DTYPE), logits.astype(LOGIT_DTYPE)


def _model(ws: Workspace, name: str, *, dim: int, num_classes: int) -> None:
    """A random-init small CNN with last width ``dim`` whose head weights the planted features."""
    torch.manual_seed(abs(hash(name)) % 2**31)
    model = build_model("small_cnn", num_classes=num_classes, widths=[16, 32, dim])
    with torch.no_grad():
        w = torch.zeros(num_classes, dim)
        c = torch.arange(num_classes)
        w[c, (2 * c) % dim] = 1.0
        w[c, (2 * c + 1) % dim] = 0.8
        model.head.weight.copy_(w + 0.01 * torch.randn(num_classes, dim))
    save_workspace_model(ws, name, model, dataset=DATASET, config={"fabricated": True}, replace=True)


def _labels(ws: Workspace, model: str, top: np.ndarray, rng: np.random.Generator, n_pairs: int) -> int:
    """``n_pairs`` answers over the discovered (class, feature) pairs: the planted spurious feature
    answered spurious, the rest core; about 60 % of classes by a person, 30 % by machine only, the
    rest unlabelled."""
    rows = []
    K, k = top.shape
    for c in range(K):
        who = rng.random()
        if who > 0.9:
            continue
        source = "human" if who < 0.6 else "masks"
        for j in top[c]:
            j = int(j)
            answer = "spurious_background" if j == (2 * c + 1) % ws.get_feature_set(DATASET, model, "train").dim \
                else "core"
            rows.append({"dataset": DATASET, "model": model, "class_index": c, "feature": j, "answer": answer,
                         "annotator": "ana" if source == "human" else "masks", "source": source,
                         "score": None if source == "human" else float(rng.random())})
            if len(rows) >= n_pairs:
                return ws.add_labels(rows)
    return ws.add_labels(rows)


def build_scale_workspace(root: str | Path, *, num_classes: int = 1000, per_class: int = 12, big_class: int = 1300,
                          dim: int = 512, models: int = 3, n_labels: int = 5000, image_size: int = 32,
                          k: int = 5, seed: int = 0) -> dict[str, Any]:
    """Build the workspace under ``root`` (images in ``root/images``); returns what was made and the
    seconds each step took. Class 0 has ``big_class`` images, the others ``per_class`` each; splits
    are drawn by the ImageFolder loader (val/test fractions 0.25 each)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    counts = [big_class] + [per_class] * (num_classes - 1)
    _write_images(root / "images", counts, rng, image_size)
    ws = Workspace(root / "ws")
    add_dataset_from(ws, DATASET, "imagefolder", root / "images", val_fraction=0.25, test_fraction=0.25,
                     replace=True)
    timings["images_and_import_s"] = time.perf_counter() - t

    t = time.perf_counter()
    manifest = load_manifest(ws, DATASET)
    names = [f"model-{i}" for i in range(models)]
    for i, name in enumerate(names):
        _model(ws, name, dim=dim, num_classes=num_classes)
        for split in manifest.splits():
            labels = manifest.split(split).labels
            feats, logits = _fabricate(labels, dim, num_classes, rng, acc_base=0.5 + 0.5 * i,
                                       cue_weight=1.5 - 0.4 * i)
            base = ws.feature_dir(DATASET, name, split)
            ws.save_npy(f"{base}/{FEATURES_FILE}", feats)
            ws.save_npy(f"{base}/{LOGITS_FILE}", logits)
            ws.save_npy(f"{base}/{LABELS_FILE}", labels.astype(np.int64))
            ws.add_feature_set(dataset=DATASET, model=name, split=split, features_rel=f"{base}/{FEATURES_FILE}",
                               logits_rel=f"{base}/{LOGITS_FILE}", n=len(labels), dim=dim, num_classes=num_classes)
    timings["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    main = names[0]
    disc = run_discovery(ws, DATASET, main, split="train")
    n_written = _labels(ws, main, disc.top_features, rng, n_labels)
    for split in ("train", "val"):
        run_rankings(ws, DATASET, main, split=split)
    run_gaps(ws, DATASET, main, split="val", models=names[1:], config=GapConfig())
    timings["audit_s"] = time.perf_counter() - t
    return {"workspace": str(ws.root), "dataset": DATASET, "models": names, "num_classes": num_classes,
            "images": int(sum(counts)), "dim": dim, "labels": n_written, "k": k, "timings": timings}


if __name__ == "__main__":  # pragma: no cover - a manual helper: python benchmarks/_scale_workspace.py DIR
    import json
    import sys

    print(json.dumps(build_scale_workspace(sys.argv[1] if len(sys.argv) > 1 else "/tmp/scale-ws"), indent=2))
