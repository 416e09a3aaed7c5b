"""Gaps page (AppTest): the per-class chart with intervals, the table, and other models on the same ranking."""
from __future__ import annotations

import json

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import MODEL, SECOND_MODEL


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("gaps", empty_workspace)


def test_gaps_page_draws_the_chart_and_the_table(populated):
    at = open_app(populated["root"], "gaps")
    assert at.selectbox(key="gaps_split").value == "test"
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    bars = spec["data"][0]
    assert bars["type"] == "bar" and len(bars["x"]) == populated["num_classes"] - 1    # class 9 unranked
    assert "error_y" in bars
    assert {m.label for m in at.metric} == {"Pooled gap", "Interval", "Ranked classes"}
    assert "Not ranked (no spurious feature): 9" in texts(at.caption)
    table = at.dataframe[0].value
    assert {"class_index", "gap", "ci_low", "ci_high", "negative"} <= set(table.columns)
    # the second model, evaluated on the same ranking
    assert at.multiselect(key="gaps_models").value == [SECOND_MODEL]
    models = at.dataframe[1].value
    assert list(models["model"]) == [MODEL, SECOND_MODEL]
    assert models["pooled gap"].notna().all() and "gap 0" in models.columns
