"""Rankings page (AppTest): paginated grids, unranked classes, and the saved ranking of large splits."""
from __future__ import annotations

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("rankings", empty_workspace)


def test_rankings_page_paginates_and_says_when_a_class_is_unranked(populated):
    at = open_app(populated["root"], "rankings")
    at.selectbox(key="rank_split").set_value("train").run()
    pager = texts(at.markdown)
    assert "page 1 of 2 · 40 images" in pager                              # 400 train images, 10 classes
    assert len(at.get("image")) >= 2
    at.button(key="rank_low_train_0__next").click().run()
    assert "page 2 of 2" in texts(at.markdown)
    at.selectbox(key="sa_class").set_value(NO_SPURIOUS_CLASS).run()
    assert "has no spurious features" in texts(at.info)


def test_large_splits_use_the_saved_audit_instead_of_live_passes(populated, monkeypatch):
    """Above LIVE_MAX_ROWS rows the pages read the rankings/discovery the audit job saved (a pass over
    an ImageNet-sized store is long work) and offer to re-rank as a job."""
    from core.audit.artifacts import load_rankings
    from core.workspace import Workspace
    from dashboard import resources

    monkeypatch.setattr(resources, "LIVE_MAX_ROWS", 10)
    at = open_app(populated["root"], "rankings")
    assert "shows the ranking the audit saved" in texts(at.caption)
    assert at.button(key="rerank_train").label == "Re-rank as a job"
    saved = load_rankings(Workspace(populated["root"]), DATASET, MODEL, "train")
    assert "page 1 of 2 · 40 images" in texts(at.markdown) and len(saved.ranking(0)) == 40
    at = open_app(populated["root"], "gaps")
    assert len(at.get("plotly_chart")) == 1 and not at.error
    at = open_app(populated["root"], "features")
    assert [s.value for s in at.subheader][0] == f"#1 · feature {populated['top_features'][0][0]}"
    at.number_input(key="features_k").set_value(7).run()              # more than the audit saved (5)
    assert "python -m core discover" in texts(at.code) and "--k 7" in texts(at.code)
