"""Job adapters of the audit (`core/audit/jobs.py`): params -> dataclass -> one call."""
import re

import pytest

from core.errors import SpurAuditError
from core.workspace import Workspace
from tests.audit.audited_workspace import build_audited_workspace


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return build_audited_workspace(tmp_path_factory.mktemp("ws"))


def test_job_kinds(audited):
    from core.jobs import load_job_kinds

    ws, _ = audited
    kinds = load_job_kinds()
    seen = []
    out = kinds["report"](ws, {"dataset": "tex", "model": "cnn", "split": "val", "max_classes": 1},
                          lambda f, m: seen.append(f))
    assert out["report_rel"] == "reports/tex__cnn.html" and seen and max(seen) == 1.0
    res = kinds["audit-step"](ws, {"step": "gaps", "dataset": "tex", "model": "cnn", "split": "val"},
                              lambda f, m: None)
    assert "cnn" in res["pooled"] and res["run_id"] >= 1


@pytest.mark.parametrize("kind, params, message", [
    ("audit", {"model": "m"}, "audit job needs params['dataset']"),
    ("audit", {"dataset": "d", "model": "m", "label_sorce": "auto"}, "label_sorce"),
    ("audit", {"dataset": "d", "model": "m", "k": "five"}, "expects an integer"),
    ("audit-step", {"step": "nope", "dataset": "d", "model": "m"}, "audit step"),
    ("audit-step", {"step": "rank", "model": "m"}, "needs params['dataset'] and params['model']"),
    ("audit-step", {"step": "gaps", "dataset": "d", "model": "m"}, "audit step 'gaps' needs params['split']"),
    ("audit-step", {"step": "crops", "dataset": "d", "model": "m", "split": "val", "fraction": 0.5}, "fraction"),
    ("report", {"dataset": "d", "model": "m"}, "report job needs params['split']"),
])
def test_bad_params_are_refused_before_any_work(kind, params, message, tmp_path):
    from core.jobs import load_job_kinds

    ws = Workspace(tmp_path / "w")
    with pytest.raises(SpurAuditError, match=re.escape(message)):
        load_job_kinds()[kind](ws, params, lambda f, m="": None)
    assert ws.list_runs() == []


def test_every_step_has_an_entry_and_the_dashboard_params_are_accepted():
    from core.audit.jobs import AUDIT_STEPS, AuditStepJob
    from core.config import config_from_mapping

    assert set(AUDIT_STEPS) == {"discover", "masks", "rank", "gaps", "crops", "sensitivity", "report"}
    # what the crops page sends for both of its steps (mask_from too), plus the device jobs.submit adds
    for step in ("crops", "sensitivity"):
        job = config_from_mapping(AuditStepJob, {"step": step, "dataset": "d", "model": "m", "split": "val",
                                                 "mask_from": "spurious", "device": "cpu"})
        assert (job.step, job.split, job.mask_from, job.device) == (step, "val", "spurious", "cpu")
