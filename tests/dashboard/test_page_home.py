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
