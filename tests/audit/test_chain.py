"""The audit chain (job kind "audit-chain", `core.audit.chain`): every step recorded in order, a second
run reuses them, a new label reruns rank and what follows, a failing step is named with its error; with
CLIP and SAM weight files, their machine labels are recorded, stored and shown."""

import pytest
import torch

from core.audit.artifacts import load_chain_state, load_summary
from core.audit.labels import add_answers
from core.concepts.jobs import audit_chain_job
from core.data import build_dataset
from core.errors import SpurAuditError
from core.models.checkpoints import save_workspace_model
from core.models.registry import build_model
from core.workspace import Workspace
from tests.audit.audited_workspace import unaudited_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return unaudited_workspace(tmp_path_factory.mktemp("ws"))


def _statuses(ws):
    return {s["step"]: s["status"] for s in load_chain_state(ws, "tex", "cnn")["steps"]}


def test_chain_runs_reuses_and_reruns_after_a_label(ws):
    seen = []
    params = {"dataset": "tex", "model": "cnn", "k": 2, "device": "cpu"}
    out = audit_chain_job(ws, params, lambda f, m="": seen.append((f, m)))
    assert _statuses(ws) == dict.fromkeys(["extract", "discover", "labels", "rank", "gaps", "report"], "done")
    assert {fs.split for fs in ws.list_feature_sets("tex", "cnn")} == {"train", "val", "test"}
    assert out["report"].endswith("tex__cnn.html") and load_summary(ws, "tex", "cnn")["eval_split"] == "val"
    assert any("[3/6] labels" in m for _, m in seen) and seen[-1][0] == 1.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    labels = load_chain_state(ws, "tex", "cnn")["steps"][2]["result"]
    assert labels["masks"] > 0                                   # the dataset's object masks labelled features
    again = audit_chain_job(ws, params, lambda f, m="": None)
    assert set(_statuses(ws).values()) == {"reused"}
    assert again["pooled_gap"] == out["pooled_gap"] and again["report"] == out["report"]
    add_answers(ws, "tex", "cnn", [dict(class_index=0, feature=1, answer="spurious_background", annotator="ana")])
    audit_chain_job(ws, params, lambda f, m="": None)
    assert _statuses(ws) == {"extract": "reused", "discover": "reused", "labels": "reused", "rank": "done",
                             "gaps": "done", "report": "done"}


def test_failed_step_is_named(ws):
    with pytest.raises(SpurAuditError):
        audit_chain_job(ws, {"dataset": "tex", "model": "cnn", "k": 2, "eval_split": "nope", "device": "cpu"},
                        lambda f, m="": None)
    state = load_chain_state(ws, "tex", "cnn")
    assert state["status"] == "failed" and state["failed_step"] == "rank"
    failed = [s for s in state["steps"] if s["status"] == "failed"]
    assert [s["step"] for s in failed] == ["rank"] and "nope" in failed[0]["error"]


def test_chain_options_are_checked(ws):
    with pytest.raises(SpurAuditError, match="k .* at least 1"):
        audit_chain_job(ws, {"dataset": "tex", "model": "cnn", "k": 0}, lambda f, m="": None)
    with pytest.raises(SpurAuditError, match="SAM checkpoint .*does not exist"):
        audit_chain_job(ws, {"dataset": "tex", "model": "cnn", "k": 2, "device": "cpu",
                             "sam_checkpoint": "/nonexistent/sam_vit_b.pth"}, lambda f, m="": None)


@pytest.fixture(scope="module")
def tiny_weight_files(tmp_path_factory):
    """A tiny random-init CLIP (open_clip config ``spuraudit-tiny-clip``) and a tiny random-init SAM
    (``vit_tiny_test``), each saved as a weights FILE, as a user's downloaded weights would be."""
    import open_clip

    from core.concepts.sam import SamConfig, SamSegmenter
    from tests.concepts.tiny_clip import register_tiny_clip

    folder = tmp_path_factory.mktemp("weights")
    register_tiny_clip(folder)
    torch.manual_seed(0)
    clip_file = folder / "tiny_clip.pt"
    torch.save(open_clip.create_model("spuraudit-tiny-clip", pretrained=None).state_dict(), clip_file)
    sam_file = folder / "sam_tiny.pth"
    torch.save(SamSegmenter(SamConfig(model_type="vit_tiny_test"), device="cpu").model.state_dict(), sam_file)
    return {"clip": str(clip_file), "sam": str(sam_file)}


def test_chain_with_clip_and_sam_weight_files(tmp_path, tiny_weight_files):
    """The audit chain with a CLIP weights file and a SAM checkpoint file: the labels step records the
    CLIP and SAM-IoU label counts, those labels (sources clip / sam_iou) are in the workspace beside
    the mask labels, and the Features page shows them. Random-init tiny models: this checks the
    plumbing (files loaded, labellers wired, results recorded and shown), not CLIP's or SAM's semantics."""
    from tests.dashboard.app_helpers import open_app

    torch.manual_seed(0)
    ws = Workspace(tmp_path / "ws")
    build_dataset(ws, "digits-on-textures", "tex", n_train=40, n_val=20, n_test=10, size=32,
                  digit_size=(16, 24), rho=0.95)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 8, 8)), dataset="tex")
    params = {"dataset": "tex", "model": "cnn", "k": 2, "device": "cpu", "report": False,
              "clip_model": "spuraudit-tiny-clip", "clip_weights": tiny_weight_files["clip"],
              "concepts": ["a brick wall", "grass"],
              "sam_type": "vit_tiny_test", "sam_checkpoint": tiny_weight_files["sam"]}
    audit_chain_job(ws, params, lambda f, m="": None)
    state = load_chain_state(ws, "tex", "cnn")
    assert state["status"] == "done"
    counts = next(s for s in state["steps"] if s["step"] == "labels")["result"]
    labels = ws.labels("tex", "cnn")
    by_source = labels.source.value_counts().to_dict()
    assert counts["clip"] == by_source["clip"] == 20                  # 10 classes x k = 2, one suggestion each
    assert counts["sam_iou"] == by_source["sam_iou"] > 0
    assert counts["masks"] == by_source["masks"] > 0
    clip_rows = labels[labels.source == "clip"]
    assert set(clip_rows.answer) <= {"core", "spurious_background"} and clip_rows.score.notna().all()
    assert "closest concept: " in clip_rows.note.iloc[0]
    # the labeller fingerprints hold the weight files: a rerun with the same files reuses the step
    audit_chain_job(ws, params, lambda f, m="": None)
    assert _statuses_of(ws)["labels"] == "reused"

    at = open_app(str(ws.root), "features")
    shown = set()
    for frame in at.dataframe:
        if "source" in frame.value.columns:
            shown |= set(frame.value["source"])
    assert {"clip", "sam_iou"} <= shown, shown
    assert not at.exception


def _statuses_of(ws):
    return {s["step"]: s["status"] for s in load_chain_state(ws, "tex", "cnn")["steps"]}
