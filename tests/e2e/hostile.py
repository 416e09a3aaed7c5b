"""A workspace whose user-supplied strings are all hostile Markdown/HTML (issue 15 item 5).

Every class name carries every payload kind (a Markdown image and link to an outside host, a raw
``<img>``, a bare URL and a ``www.`` host that GFM would auto-link, an e-mail address, a ``<script>``,
Streamlit's ``:red[...]`` and ``$math$``), so whichever class a page shows by default, all payloads are
on screen. Dataset, model, annotator and note names carry the payloads their character rules allow
(a dataset/model name names a folder: no ``/ : < >``). Built with the real `core` APIs through a CSV
import (class names from ``class_names=``), then trained, extracted, discovered, labelled, audited,
cropped, reported and mitigated like the shared populated workspace, only smaller.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

EVIL_HOST = "evil.example.invalid"
#: the dataset and model names: Markdown image/link syntax to a relative URL (no ':' or '/' allowed)
DATASET = "inj ![d](d.png) [x](www.evil.example.invalid) __b__"
MODEL = "m ![m](m.png) _i_ www.evil.example.invalid"
ANNOTATOR = f"ann ![a](http://{EVIL_HOST}/a.png)"
NOTE = f"note <img src=http://{EVIL_HOST}/n.png> http://{EVIL_HOST}/n [n](http://{EVIL_HOST}/n2)"
NUM_CLASSES = 10


def class_name(c: int) -> str:
    return (f"c{c} ![px](http://{EVIL_HOST}/c{c}.png) <img src=\"http://{EVIL_HOST}/i{c}.png\"> "
            f"[link](http://{EVIL_HOST}/l{c}) http://{EVIL_HOST}/u{c}.png www.{EVIL_HOST}/w{c} "
            f"x{c}@{EVIL_HOST} :red[R{c}] $x^{c}$ <script>window.INJ={c}</script>")


CLASS_NAMES = [class_name(c) for c in range(NUM_CLASSES)]


def build_hostile_workspace(root: Path, scratch: Path) -> dict:
    """Create the workspace at ``root`` (images built under ``scratch``); returns facts for the test."""
    import torch

    from core.audit.artifacts import load_discovery
    from core.audit.labels import add_answers
    from core.audit.pipeline import run_core_crops, run_discovery, run_sensitivity
    from core.data import add_dataset_from, build_dataset, load_manifest
    from core.features.extract import extract_splits
    from core.jobs import load_job_kinds
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.models.train import TrainConfig, train_model
    from core.report import run_audit, write_report
    from core.workspace import Workspace

    torch.set_num_threads(1)
    source_ws = Workspace(scratch)
    build_dataset(source_ws, "colored-mnist", "src", seed=0, conflict=0.05, n_train=300, n_val=100, n_test=200)
    source = load_manifest(source_ws, "src")
    csv_path = Path(source.root) / "hostile.csv"
    pd.DataFrame({"path": source.df["path"], "label": source.df["label"], "bias": source.df["bias"],
                  "split": source.df["split"]}).to_csv(csv_path, index=False)

    ws = Workspace(root)
    add_dataset_from(ws, DATASET, "csv", csv_path, bias_col="bias", split_col="split", class_names=CLASS_NAMES)
    manifest = load_manifest(ws, DATASET)
    assert manifest.class_names == CLASS_NAMES
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=NUM_CLASSES, widths=(8, 16, 32))
    result = train_model(model, manifest.split("train").to_dataset(),
                         config=TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=0), device="cpu")
    save_workspace_model(ws, MODEL, result.model.cpu(), dataset=DATASET)
    extract_splits(ws, DATASET, MODEL, "all", batch_size=256, device="cpu")
    top = run_discovery(ws, DATASET, MODEL, split="train", device="cpu").top_features
    rows = []
    for c in range(NUM_CLASSES):
        rows.append({"class_index": c, "feature": int(top[c, 0]), "answer": "spurious_background",
                     "annotator": ANNOTATOR, "source": "human", "note": NOTE})
        rows.append({"class_index": c, "feature": int(top[c, 1]), "answer": "core",
                     "annotator": ANNOTATOR, "source": "human", "note": NOTE})
    add_answers(ws, DATASET, MODEL, rows)
    ws.add_labels([{"dataset": DATASET, "model": MODEL, "class_index": 0, "feature": int(top[0, 2]),
                    "answer": "spurious_object", "source": "sam_iou", "score": 0.2, "note": NOTE}])
    run_audit(ws, DATASET, MODEL, label_source="existing", eval_split="test", report=False, extract=False,
              device="cpu")
    run_core_crops(ws, DATASET, MODEL, split="test", device="cpu")
    run_sensitivity(ws, DATASET, MODEL, split="test", mask_from="core", max_images=60, device="cpu")
    write_report(ws, DATASET, MODEL, split="test", max_classes=4, n_images=2, device="cpu")
    kinds = load_job_kinds()
    kinds["compare"](ws, {"dataset": DATASET, "model": MODEL, "methods": ["head-tuning"], "seeds": [0],
                          "device": "cpu", "configs": {"head-tuning": {"epochs": 1, "k_per_class": 10}}},
                     lambda f, m="": None)
    return {"root": str(ws.root), "top_features": load_discovery(ws, DATASET, MODEL).top_features.tolist()}
