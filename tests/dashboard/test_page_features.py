"""Features page (AppTest): top features with their verdicts, recording a label, activation maps and
feature attacks from the workspace cache."""
from __future__ import annotations

from tests.dashboard.app_helpers import assert_empty_workspace_is_friendly, open_app, texts
from tests.dashboard.populate import DATASET, MODEL


def test_empty_workspace_is_friendly(empty_workspace):
    assert_empty_workspace_is_friendly("features", empty_workspace)


def test_features_page_shows_top_features_and_records_a_label(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "features")
    top0 = populated["top_features"][0]
    headers = [s.value for s in at.subheader]
    assert headers == [f"#{r + 1} · feature {f}" for r, f in enumerate(top0)]
    md = texts(at.markdown)
    assert "Verdict: spurious (spurious_background)" in md and "Verdict: core" in md
    assert "Machine suggestions" in texts(at.caption)                    # sam_iou suggestion shown apart
    assert len(at.get("image")) >= 1                                       # top-activating thumbnails

    # saving without a name is refused, nothing written
    n0 = len(ws.labels(DATASET, MODEL))
    feature = top0[3]
    at.radio(key=f"answer_0_{feature}").set_value("spurious_object")
    at.button(key=f"save_0_{feature}").click().run()
    assert "Annotator" in texts(at.warning)
    assert len(ws.labels(DATASET, MODEL)) == n0

    at.text_input(key="sa_annotator").set_value("alice").run()
    at.radio(key=f"answer_0_{feature}").set_value("spurious_object")
    at.text_input(key=f"note_0_{feature}").set_value("a red blob")
    at.button(key=f"save_0_{feature}").click().run()
    assert not at.exception
    labels = ws.labels(DATASET, MODEL)
    assert len(labels) == n0 + 1
    row = labels.iloc[-1]
    assert (row.class_index, row.feature, row.answer, row.annotator, row.source, row.note) == \
        (0, feature, "spurious_object", "alice", "human", "a red blob")
    assert "Verdict: spurious (spurious_object)" in texts(at.markdown)   # verdict re-derived on rerun
    ws.delete_labels([int(row.id)])                                       # keep the shared workspace as built


def test_features_page_shows_activation_maps_and_attacks_from_the_cache(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    ws.remove_path("cache/overlays")                          # the report rendered some; start clean
    feature = populated["top_features"][0][0]
    at = open_app(populated["root"], "features")
    at.number_input(key="features_k").set_value(1).run()
    at.radio(key="features_mode").set_value("activation maps").run()
    assert not at.exception and not at.error
    overlays = [p for p in ws.path("cache/overlays").rglob("*.png") if f"_f{feature}_" in p.name]
    assert len(overlays) == 6                                  # class 0's top feature over its 6 top images
    assert len(at.get("image")) == 6
    at.radio(key="features_mode").set_value("feature attacks").run()
    assert not at.exception and not at.error
    attacks = [p for p in ws.path("cache/attacks").rglob("*.png") if f"_f{feature}_" in p.name]
    assert len(attacks) == 3


def test_the_current_class_is_kept_across_pages(populated):
    """``sa_class``: the class picked on Features is the class of Rankings, also after a page without
    a class selector."""
    at = open_app(populated["root"], "features")
    at.selectbox(key="sa_class").set_value(3).run()
    assert [s.value for s in at.subheader][0] == f"#1 · feature {populated['top_features'][3][0]}"
    at.switch_page("app_pages/gaps.py").run()
    at.switch_page("app_pages/rankings.py").run()
    assert not at.exception
    assert at.selectbox(key="sa_class").value == 3
    assert "images of class 3" in texts(at.caption)
