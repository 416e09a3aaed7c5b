"""Gaps page (AppTest): the sorted, searchable per-class view with intervals, unranked classes by their
reason, opening a class in Rankings, and other models on the same ranking."""
from __future__ import annotations

import json

import pytest

from dashboard.components.state import md_escape
from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS, SECOND_MODEL


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("gaps", empty_workspace)


def _bars(at):
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"][0]


def test_gaps_page_draws_the_chart_and_the_table(populated):
    at = open_app(populated["root"], "gaps")
    assert at.selectbox(key="gaps_split").value == "test"
    bars = _bars(at)
    assert bars["type"] == "bar" and bars["orientation"] == "h"
    assert len(bars["y"]) == populated["num_classes"] - 1                             # class 9 unranked
    assert "error_x" in bars and [int(c[0]) for c in bars["customdata"]]
    assert [m.label for m in at.metric][:3] == ["Pooled gap", "Interval", "Ranked classes"]
    # the unranked class: counted with its true reason, listed in an expander
    assert "1 of 10 classes are not ranked: 1 no spurious feature." in texts(at.caption)
    unranked = at.dataframe[0].value
    assert unranked["class_index"].tolist() == [NO_SPURIOUS_CLASS]
    assert unranked["not ranked because"].tolist() == ["no spurious feature"]
    table = at.dataframe[1].value
    assert {"class_index", "class", "gap", "ci_low", "ci_high", "negative"} <= set(table.columns)
    gaps = table["gap"].tolist()
    assert gaps == sorted(gaps, reverse=True)                                          # largest gap first
    # a fresh session's navigator opens on the class with this page's largest gap, and says whose gaps it shows
    assert int(at.session_state["sa_class"]) == int(table["class_index"].iloc[0])
    assert "gaps as on this page (test)" in texts(at.caption)
    # the second model, evaluated on the same ranking
    assert at.multiselect(key="gaps_models").value == [SECOND_MODEL]
    models = at.dataframe[2].value
    assert list(models["model"]) == [MODEL, SECOND_MODEL]
    assert models["pooled gap"].notna().all() and any(c.startswith("gap ") for c in models.columns)


def test_views_and_search(populated):
    at = open_app(populated["root"], "gaps")
    at.selectbox(key="gaps_view").set_value("smallest gap").run()
    at.number_input(key="gaps_n").set_value(3).run()
    bars = _bars(at)
    gaps = [float(x) for x in bars["x"]][::-1]                                          # first row = top bar
    assert len(gaps) == 3 and gaps == sorted(gaps)
    at.text_input(key="gaps_search").set_value("2").run()
    shown = [int(c[0]) for c in _bars(at)["customdata"]]
    names = at.dataframe[1].value["class"].tolist()
    assert shown and all(c == 2 or "2" in n for c, n in zip(shown, names))


def test_open_in_rankings_keeps_the_class(populated):
    at = open_app(populated["root"], "gaps")
    target = int(at.selectbox(key="sa_class").options[1].split(":")[0])
    at.selectbox(key="sa_class").set_value(target).run()
    at.button(key="gaps_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Spuriosity rankings"
    assert at.session_state["sa_class"] == target


def test_ranking_selector_measures_gaps_on_a_concept_ranking(populated):
    """Without concept rankings there is no Ranking selector; with one (planted: correct images score
    higher, so gaps are >= 0) the pooled and per-class gaps of the audited and the other model are those
    `core.audit.gaps.spurious_gaps` gives on that ranking, and its unscored class is listed unranked."""
    import pandas as pd

    from core.audit.gaps import GapConfig, spurious_gaps
    from core.concepts.artifacts import load_concept_ranking
    from core.features.store import load_features
    from tests.dashboard.concept_ranking import LABEL, NAME, SPLIT, UNSCORED_CLASS, planted_concept_ranking

    at = open_app(populated["root"], "gaps")
    assert not [s for s in at.selectbox if s.key == "gaps_ranking"]
    by_features = at.metric[0].value
    with planted_concept_ranking(populated["root"]) as planted:
        at = open_app(populated["root"], "gaps")
        assert at.selectbox(key="gaps_split").value == SPLIT
        at.selectbox(key="gaps_ranking").set_value(NAME).run()
        assert not at.exception, [e.value for e in at.exception]
        ws, fs = planted["ws"], planted["fs"]
        ranking = load_concept_ranking(ws, DATASET, NAME, SPLIT, fs.labels, fs.num_classes)
        want = spurious_gaps(ranking, fs.preds(), config=GapConfig(n_boot=1000))
        assert want.pooled["gap"] > 0
        assert at.metric[0].value == f"{want.pooled['gap'] * 100:+.1f} pts" != by_features
        assert f"Images ranked {md_escape(LABEL)}" in texts(at.caption)
        assert LABEL in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]
        unranked = at.dataframe[0].value
        assert unranked["class_index"].tolist() == [UNSCORED_CLASS]
        assert unranked["not ranked because"].tolist() == ["no finite concept score"]
        table = at.dataframe[1].value.set_index("class_index")
        per_class = want.per_class.set_index("class_index")
        assert table.gap.to_dict() == pytest.approx(per_class.gap[per_class.ranked.astype(bool)].to_dict())
        models = at.dataframe[2].value.set_index("model")
        other = load_features(ws, DATASET, SECOND_MODEL, SPLIT)
        other_want = spurious_gaps(ranking, other.preds(), config=GapConfig(n_boot=1000)).pooled["gap"]
        assert models.loc[MODEL, "pooled gap"] == pytest.approx(want.pooled["gap"])
        assert models.loc[SECOND_MODEL, "pooled gap"] == pytest.approx(other_want)
        assert pd.notna(models.loc[SECOND_MODEL, "pooled gap"])
        # opening a class in Rankings keeps the concept ranking
        at.selectbox(key="sa_class").set_value(0).run()
        at.button(key="gaps_open").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.title[0].value == "Spuriosity rankings"
        assert at.selectbox(key="rank_ranking").value == NAME
        assert f"ranked {md_escape(LABEL)}" in texts(at.caption)
