"""Rankings page (AppTest): paginated grids, unranked classes, and the saved ranking of large splits."""
from __future__ import annotations

from dashboard.components.state import md_escape
from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("rankings", empty_workspace)


def test_rankings_page_paginates_and_says_when_a_class_is_unranked(populated):
    at = open_app(populated["root"], "rankings")
    at.selectbox(key="rank_split").set_value("train").run()
    assert "page 1 of 2 · positions 1–24 of 40" in texts(at.caption)    # 400 train images, 10 classes
    assert len(at.get("image")) >= 2
    at.button(key="rank_next").click().run()
    assert "page 2 of 2" in texts(at.caption)
    at.selectbox(key="sa_class").set_value(NO_SPURIOUS_CLASS).run()
    assert "is not ranked: no spurious feature" in texts(at.info)


def test_jump_filters_order_and_detail(populated):
    import numpy as np

    from core.features.store import load_features
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    fs = load_features(ws, DATASET, MODEL, "test")
    at = open_app(populated["root"], "rankings")
    assert at.selectbox(key="rank_split").value == "train"
    at.selectbox(key="rank_split").set_value("test").run()
    n = int((fs.labels == 0).sum())
    at.number_input(key="rank_jump").set_value(n).run()               # jump to the last position
    assert f"positions {((n - 1) // 24) * 24 + 1}–{n} of {n}" in texts(at.caption)
    # only the chosen order is drawn: highest first starts at rank n
    at.segmented_control(key="rank_view").set_value("Highest spuriosity first").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "positions 1–" in texts(at.caption)
    # misclassified only: the caption counts what passes
    wrong = int(((fs.preds() != fs.labels) & (fs.labels == 0)).sum())
    at.checkbox(key="rank_wrong").check().run()
    assert f"{wrong:,} pass the filters" in texts(at.caption) or "No image of this class passes" in texts(at.info)
    at.checkbox(key="rank_wrong").uncheck().run()
    at.radio(key="rank_align").set_value("conflicting").run()
    conflicting = int(((fs.manifest.df["aligned"].to_numpy() == False) & (fs.labels == 0)).sum())  # noqa: E712
    assert f"{conflicting:,} pass the filters" in texts(at.caption) or "No image of this class passes" in texts(at.info)
    at.radio(key="rank_align").set_value("any").run()
    # the detail view: the image, overlays of the class's features, top-5 of every model of the split
    at.selectbox(key="rank_detail").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Image #{n} of the ranking" in [s.value for s in at.subheader]
    top5 = at.dataframe[-1].value
    assert set(top5["model"]) == {MODEL, "cnn-small"} and list(top5.columns[:3]) == ["model", "#1", "#2"]
    assert np.isfinite(fs.logits[0]).all()


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
    assert "page 1 of 2 · positions 1–24 of 40" in texts(at.caption) and len(saved.ranking(0)) == 40
    at = open_app(populated["root"], "gaps")
    assert len(at.get("plotly_chart")) == 1 and not at.error
    at = open_app(populated["root"], "features")
    assert [s.value for s in at.subheader][0] == f"#1 · feature {populated['top_features'][0][0]}"
    at.number_input(key="features_k").set_value(7).run()              # more than the audit saved (5)
    assert "python -m core discover" in texts(at.code) and "--k 7" in texts(at.code)


def test_ranking_selector_orders_by_a_concept_ranking(populated):
    """Without concept rankings there is no Ranking selector; with one (planted scores written by the
    clip-rank job's writer) the grid follows its order, the caption names it, and a class without a
    finite concept score is said plainly."""
    from core.concepts.artifacts import load_concept_ranking
    from tests.dashboard.concept_ranking import LABEL, NAME, SPLIT, UNSCORED_CLASS, planted_concept_ranking

    at = open_app(populated["root"], "rankings")
    at.selectbox(key="rank_split").set_value(SPLIT).run()
    assert not [s for s in at.selectbox if s.key == "rank_ranking"]
    with planted_concept_ranking(populated["root"]) as planted:
        at = open_app(populated["root"], "rankings")
        at.selectbox(key="rank_split").set_value(SPLIT).run()
        at.selectbox(key="sa_class").set_value(0).run()
        picker = at.selectbox(key="rank_ranking")
        assert picker.options == ["by features", LABEL] and picker.value is None
        by_features = at.selectbox(key="rank_detail").options
        picker.set_value(NAME).run()
        assert not at.exception, [e.value for e in at.exception]
        assert f"ranked {md_escape(LABEL)} (within-class z-score of the CLIP similarity" in texts(at.caption)
        # the navigator's gaps follow the chosen ranking: the concept ranking's gap of class 0 is in its option
        from dashboard import resources  # noqa: PLC0415

        concept_gap = resources.concept_gaps(planted["ws"], DATASET, NAME, SPLIT, evaluated=MODEL, n_boot=0) \
            .per_class.set_index("class_index").gap
        assert f"gaps {LABEL}" in texts(at.caption)
        option = next(o for o in at.selectbox(key="sa_class").options if o.startswith("0: "))
        assert concept_gap.notna()[0] and f"gap {concept_gap[0] * 100:+.1f}" in option, option
        fs = planted["fs"]
        ranking = load_concept_ranking(planted["ws"], DATASET, NAME, SPLIT, fs.labels, fs.num_classes)
        sids = fs.manifest.df["sample_id"].to_numpy()
        expected = [f"#{i + 1} (sample {int(sids[r])})" for i, r in enumerate(ranking.ranking(0)[:24])]
        shown = at.selectbox(key="rank_detail").options[1:]
        assert shown == expected and shown != by_features[1:]
        # filters, the order toggle and the detail view use the concept scores
        wrong = int(((fs.preds() != fs.labels) & (fs.labels == 0)).sum())
        at.checkbox(key="rank_wrong").check().run()
        assert f"{wrong:,} pass the filters" in texts(at.caption) or "No image of this class passes" in texts(at.info)
        at.checkbox(key="rank_wrong").uncheck().run()
        at.segmented_control(key="rank_view").set_value("Highest spuriosity first").run()
        top = int(ranking.ranking(0)[-1])
        assert at.selectbox(key="rank_detail").options[1] == f"#{len(ranking.ranking(0))} (sample {int(sids[top])})"
        at.selectbox(key="rank_detail").set_value(0).run()
        assert not at.exception, [e.value for e in at.exception]
        assert f"spuriosity {planted['spuriosity'][top]:+.2f}" in texts(at.text)
        at.selectbox(key="sa_class").set_value(UNSCORED_CLASS).run()
        assert f"is not ranked {md_escape(LABEL)}: no image of it has a finite concept score" in texts(at.info)
        at.selectbox(key="rank_ranking").set_value(None).run()
        assert "is not ranked" not in texts(at.info)              # class 3 is ranked by features
