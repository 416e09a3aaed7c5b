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


def test_crops_class_view_shows_the_cropped_images(populated):
    """The class view draws the saved crop boxes of the current class (image with its box | the crop)."""
    from core.audit.artifacts import load_crops  # noqa: PLC0415
    from core.workspace import Workspace  # noqa: PLC0415

    crops = load_crops(Workspace(populated["root"], create=False), populated["dataset"], populated["model"])
    at = open_app(populated["root"], "crops")
    assert not at.exception
    c = int(at.session_state["sa_class"])
    mine = [r for r in crops["images"] if r["class_index"] == c]
    images = at.get("image")
    assert len(images) == min(12, len(mine)) > 0
