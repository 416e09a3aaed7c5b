"""Build a small populated workspace for the dashboard tests with the real `core` APIs.

Colored MNIST (colour = planted cue, 2 % conflicting, a few hundred digits), a small CNN trained for a
few epochs, features of every split, a second smaller CNN (test features only), human labels (each class's top feature spurious, its second core;
class 9 without any spurious feature), one machine suggestion, the saved audit (discovery, rankings,
gaps), core crops and sensitivity, the HTML report, and one real debias-and-compare run (head tuning)
through the "compare" job function plus one single-method run ("mitigate"). Seeded, CPU-only, built
once per test session (`shared_workspace`).
"""
from __future__ import annotations

from pathlib import Path

DATASET = "cmnist"
MODEL = "cnn"
SECOND_MODEL = "cnn-small"
NO_SPURIOUS_CLASS = 9

_SHARED: dict[str, dict] = {}


def build_populated_workspace(root: Path, *, with_run: bool = True) -> dict:
    """Create the workspace at ``root``; returns facts the tests assert on."""
    import torch

    from core.audit.artifacts import load_discovery
    from core.audit.labels import add_answers
    from core.audit.pipeline import run_core_crops, run_discovery, run_sensitivity
    from core.data import build_dataset, load_manifest
    from core.features.extract import extract_splits
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.models.train import TrainConfig, train_model
    from core.report import run_audit, write_report
    from core.workspace import Workspace

    torch.set_num_threads(1)
    ws = Workspace(root)
    build_dataset(ws, "colored-mnist", DATASET, seed=0, conflict=0.02, n_train=400, n_val=100, n_test=200)
    manifest = load_manifest(ws, DATASET)
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=len(manifest.class_names), widths=(8, 16, 32))
    result = train_model(model, manifest.split("train").to_dataset(),
                         config=TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=0),
                         val=manifest.split("val").to_dataset(), device="cpu")
    save_workspace_model(ws, MODEL, result.model.cpu(), dataset=DATASET,
                         metrics={"val_accuracy": result.best_val_accuracy})
    extract_splits(ws, DATASET, MODEL, "all", batch_size=256, device="cpu")

    top = run_discovery(ws, DATASET, MODEL, split="train", device="cpu").top_features     # (K, k)
    rows = []
    for c in range(top.shape[0]):
        if c != NO_SPURIOUS_CLASS:
            rows.append({"class_index": c, "feature": int(top[c, 0]), "answer": "spurious_background",
                         "annotator": "fixture", "source": "human"})
        rows.append({"class_index": c, "feature": int(top[c, 1]), "answer": "core",
                     "annotator": "fixture", "source": "human"})
    add_answers(ws, DATASET, MODEL, rows)
    # a machine suggestion, shown separately on the features page
    ws.add_labels([{"dataset": DATASET, "model": MODEL, "class_index": 0, "feature": int(top[0, 2]),
                    "answer": "spurious_object", "source": "sam_iou", "score": 0.12}])
    run_audit(ws, DATASET, MODEL, label_source="existing", eval_split="test", report=False, extract=False,
              device="cpu")
    _second_model(ws, manifest)
    run_core_crops(ws, DATASET, MODEL, split="test", device="cpu")
    run_sensitivity(ws, DATASET, MODEL, split="test", mask_from="core", max_images=100, device="cpu")
    report = write_report(ws, DATASET, MODEL, split="test", max_classes=4, n_images=3, device="cpu")
    facts = {"root": str(ws.root), "dataset": DATASET, "model": MODEL,
             "top_features": load_discovery(ws, DATASET, MODEL).top_features.tolist(),
             "num_classes": int(top.shape[0]), "report": str(report), "runs": []}
    if with_run:
        facts["runs"] = _mitigation_runs(ws)
    return facts


def _second_model(ws, manifest) -> None:
    """A second, smaller CNN (1 epoch) with test-split features, for the gaps page's model comparison."""
    import torch

    from core.features.extract import extract_to_workspace
    from core.models.checkpoints import save_workspace_model
    from core.models.registry import build_model
    from core.models.train import TrainConfig, train_model

    torch.manual_seed(1)
    model = build_model("small_cnn", num_classes=len(manifest.class_names), widths=(4, 8, 16))
    result = train_model(model, manifest.split("train").to_dataset(),
                         config=TrainConfig(epochs=1, batch_size=64, lr=3e-3, seed=1), device="cpu")
    save_workspace_model(ws, SECOND_MODEL, result.model.cpu(), dataset=DATASET)
    extract_to_workspace(ws, DATASET, SECOND_MODEL, "test", device="cpu")


def _mitigation_runs(ws) -> list[int]:
    """Run a small debias-and-compare in-process through the same job function the mitigate page
    launches ("compare": low-spuriosity head tuning, 2 epochs, 20 images per class), so the run record,
    its comparison table and figure are real, and one single-method "mitigate" run (head tuning, 1
    epoch) as the CLI records them; returns [compare run id, single run id]."""
    from core.jobs import load_job_kinds

    params = {"dataset": DATASET, "model": MODEL, "methods": ["head-tuning"], "seeds": [0], "device": "cpu",
              "configs": {"head-tuning": {"epochs": 2, "k_per_class": 20}}}
    kinds = load_job_kinds()
    out = kinds["compare"](ws, params, lambda f, m="": None)
    single = kinds["mitigate"](ws, {"dataset": DATASET, "model": MODEL, "method": "head-tuning",
                                    "device": "cpu", "config": {"epochs": 1, "k_per_class": 20}},
                               lambda f, m="": None)
    return [int(out["run_id"]), int(single["run_id"])]


def shared_workspace(tmp_path_factory) -> dict:
    """Build the populated workspace once per pytest session (shared by the AppTest and e2e tests)."""
    if "facts" not in _SHARED:
        root = tmp_path_factory.mktemp("dashboard_ws") / "ws"
        _SHARED["facts"] = build_populated_workspace(root)
    return _SHARED["facts"]
