"""Salient ImageNet mask import at scale: scan + match, then decode, map and store, on a generated copy.

Writes a wnid ImageFolder of JPEGs (``core.data.synthetic.photo_folder``) and, in Salient ImageNet's
released layout, ``<wnid>/feature_<j>/cams/<image stem>.jpeg`` soft masks (224 x 224 grey JPEGs, a Gaussian
blob) for ``--features`` features per class over ``--per-feature`` of its images; adds the dataset to a
workspace and times `core.audit.label_import.preview_label_import` (folder listing and matching, nothing
decoded) and `run_label_import` (each mask decoded, its image's header read, mapped to the centre square,
resized to 64 px, stored), then reports masks/s and the **projection** (linear in the mask count, from
this run's per-mask costs) to Salient ImageNet's 5,000 pairs x 65 images = 325,000 masks.

    python benchmarks/salient_masks.py [--quick] [--json] [--classes 40] [--features 5] [--per-feature 20]
        [--out benchmarks/results/salient_masks.json]

``--quick``: 4 classes x 2 features x 5 images (< 30 s); results are written only by full runs or ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._results import write_result  # noqa: E402
from core.audit.label_import import LabelImportConfig, preview_label_import, run_label_import  # noqa: E402
from core.data import add_dataset_from, load_manifest  # noqa: E402
from core.data.synthetic.photo_folder import write_photo_folder  # noqa: E402
from core.workspace import Workspace  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "salient_masks.json"
SALIENT_MASKS = 5_000 * 65


def _write_masks(root: Path, ws: Workspace, features: int, per_feature: int) -> int:
    man = load_manifest(ws, "imnet")
    train = man.split("train").df
    yy, xx = np.mgrid[0:224, 0:224]
    n = 0
    for c, wnid in enumerate(man.class_names):
        stems = sorted(Path(p).stem for p in train.path[train.label == c])
        for j in range(features):
            folder = root / wnid / f"feature_{100 + j}" / "cams"
            folder.mkdir(parents=True, exist_ok=True)
            (folder.parent / "images").mkdir(exist_ok=True)
            blob = np.exp(-(((xx - 40 - 30 * j) / 40.0) ** 2 + ((yy - 112) / 40.0) ** 2))
            img = Image.fromarray((255 * blob).astype(np.uint8))
            for stem in stems[:per_feature]:
                img.save(folder / f"{stem}.jpeg", quality=90)
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 classes x 2 features x 5 images (< 30 s)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--features", type=int, default=5)
    ap.add_argument("--per-feature", type=int, default=20)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--out", default=None, help=f"results JSON (full runs default to {RESULTS.relative_to(REPO)})")
    args = ap.parse_args(argv)
    if args.quick:
        args.classes, args.features, args.per_feature = 4, 2, 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        # per class: per_feature train images (+ the test split the loader carves out of train/)
        write_photo_folder(tmp / "imagenet" / "train", n_images=args.classes * (args.per_feature + 8),
                           n_classes=args.classes, min_side=64, max_side=160, seed=0)
        ws = Workspace(tmp / "ws")
        add_dataset_from(ws, "imnet", "imagefolder", tmp / "imagenet")
        ws.add_model("robust", dataset="imnet", arch="robust-resnet50", checkpoint_rel="models/robust/model.pt",
                     config={}, metrics={})           # a record only: the import never loads the model
        n_masks = _write_masks(tmp / "salient", ws, args.features, args.per_feature)
        generate_s = time.perf_counter() - t0
        cfg = LabelImportConfig(dataset="imnet", model="robust", format="salient-imagenet",
                                masks=str(tmp / "salient"), mask_side=args.side)
        t0 = time.perf_counter()
        preview = preview_label_import(ws, cfg)
        preview_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = run_label_import(ws, cfg)
        import_s = time.perf_counter() - t0
    masks = out["masks"]
    per_mask_import = import_s / max(masks["stored"], 1)
    per_file_scan = preview_s / max(preview["masks"]["files"], 1)
    result = {
        "benchmark": "salient_masks", "quick": bool(args.quick),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "disk": "local temp folder"},
        "data": {"classes": args.classes, "features_per_class": args.features, "images_per_feature": args.per_feature,
                 "mask_files": n_masks, "mask_px": "224 x 224 grey JPEG", "images_px": [64, 160],
                 "generate_s": round(generate_s, 2)},
        "side": args.side,
        "preview_s": round(preview_s, 3), "matched": preview["masks"]["matched"],
        "import_s": round(import_s, 3), "stored": masks["stored"], "unreadable": masks["unreadable"],
        "mismatched": masks["mismatched"], "masks_per_s": round(masks["stored"] / import_s, 1),
        "artifact_bytes": masks["bytes"],
        "projection_325k_masks": {
            "note": "PROJECTION: linear in the mask count from this run's per-mask costs, not a measurement",
            "masks": SALIENT_MASKS, "preview_s": round(per_file_scan * SALIENT_MASKS, 1),
            "import_minutes": round(per_mask_import * SALIENT_MASKS / 60, 1),
            "artifact_gb": round(SALIENT_MASKS * args.side * args.side / 1e9, 2)},
    }
    if write_result(result, args.out or (None if args.quick else RESULTS), as_json=args.json):
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
