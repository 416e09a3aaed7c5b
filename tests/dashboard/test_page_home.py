"""Home page (AppTest): the empty-workspace message, and the summary of the populated workspace."""
from __future__ import annotations

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET, MODEL


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("home", empty_workspace)


def test_home_summarises_the_workspace(populated):
    at = open_app(populated["root"])
    from core.workspace import Workspace

    summary = Workspace(populated["root"]).summary()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Datasets"] == "1" and metrics["Models"] == "2"
    assert metrics["Feature sets"] == str(summary["feature_sets"]) == "4"
    assert metrics["Labels"] == str(summary["labels"])
    assert "What to do next" in texts(at.subheader)
    assert at.selectbox(key="sa_dataset").value == DATASET
    assert at.selectbox(key="sa_model").value == MODEL


def test_audit_gap_records_are_not_counted_as_runs(populated):
    """Issue 12: the audit's gap records (method audit-gaps) are not "Runs" sending the user to Mitigate."""
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    runs = ws.list_runs()
    gap_records = [r for r in runs if r.method == "audit-gaps"]
    assert gap_records
    at = open_app(populated["root"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Runs"] == str(len(runs) - len(gap_records))
    assert f"{len(gap_records)} audit gap record(s)" in texts(at.caption)
