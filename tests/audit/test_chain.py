"""The audit chain (job kind "audit-chain", `core.audit.chain`): every step recorded in order, a second
run reuses them, a new label reruns rank and what follows, a failing step is named with its error."""
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


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    build_dataset(ws, "digits-on-textures", "tex", n_train=60, n_val=40, n_test=20, size=32,
                  digit_size=(16, 24), rho=0.95)
    save_workspace_model(ws, "cnn", build_model("small_cnn", num_classes=10, widths=(8, 8, 8)), dataset="tex")
    return ws


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
