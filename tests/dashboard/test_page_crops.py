"""Crops & sensitivity page (AppTest): the saved core-crop and sensitivity results."""
from __future__ import annotations

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("crops", empty_workspace)


def test_crops_page_shows_saved_results(populated):
    at = open_app(populated["root"], "crops")
    labels = {m.label for m in at.metric}
    assert {"Accuracy before", "Accuracy after crop", "Images"} <= labels
    assert "Feature sensitivity" in texts(at.subheader)
    assert len(at.get("plotly_chart")) >= 1
