"""The class navigator and the labelling flow on the Features page (AppTest): search, order, status
filter, progress, next unlabelled with keyboard answers, and bulk accept of machine suggestions."""
from __future__ import annotations

from tests.dashboard.app_helpers import open_app, texts
from tests.dashboard.populate import DATASET, MODEL, NO_SPURIOUS_CLASS


def _options(at):
    return [int(o.split(":")[0]) for o in at.selectbox(key="sa_class").options]


def test_search_order_and_status_filter(populated):
    at = open_app(populated["root"], "features")
    assert _options(at) == list(range(10)) and "10 classes, ordered by index." in texts(at.caption)
    at.text_input(key="features_nav_search").set_value("7").run()
    assert _options(at) == [0, 7]                         # the current class stays, listed first
    assert "1 of 10 classes match (the current class does not match" in texts(at.caption)
    at.selectbox(key="sa_class").set_value(7).run()
    assert _options(at) == [7] and at.session_state["sa_class"] == 7
    at.text_input(key="features_nav_search").set_value("").run()
    at.selectbox(key="features_nav_order").set_value("most features needing a person").run()
    table = at.session_state["features_nav_view"]
    assert table[0] == NO_SPURIOUS_CLASS                  # its top feature #1 has no answer: 4 need a person
    at.multiselect(key="features_nav_status").set_value(["human"]).run()
    assert "0 of 10 classes match" in texts(at.caption)  # every class has unanswered top features
    # progress: overall and for the class
    bar = at.get("progress")[0]
    assert "features labelled (" in bar.proto.text and "by a person" in bar.proto.text
    assert "this class:" in bar.proto.text


def test_next_unlabelled_and_keyboard_answer(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    top0 = populated["top_features"][0]
    at = open_app(populated["root"], "features")
    at.button(key="features_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["features_focus"] == (0, top0[2])   # #1, #2 answered by a person; #3 machine only
    assert at.subheader[0].value == f"Now labelling · #3 · feature {top0[2]}"
    n0 = len(ws.labels(DATASET, MODEL))
    at.button(key="quick_core").click().run()                 # refused without a name
    assert "Annotator" in texts(at.warning) and len(ws.labels(DATASET, MODEL)) == n0
    at.text_input(key="sa_annotator").set_value("bo").run()
    at.button(key="quick_spurious_object").click().run()      # key "2": save and advance
    assert not at.exception, [e.value for e in at.exception]
    labels = ws.labels(DATASET, MODEL)
    row = labels.iloc[-1]
    assert (row.class_index, row.feature, row.answer, row.source, row.annotator) == \
        (0, top0[2], "spurious_object", "human", "bo")
    assert at.session_state["features_focus"] == (0, top0[3])
    at.button(key="quick_skip").click().run()
    assert at.session_state["features_focus"] == (0, top0[4])
    at.button(key="quick_skip").click().run()
    assert at.session_state["features_focus"][0] == 1 and at.session_state["sa_class"] == 1   # next class
    ws.delete_labels([int(row.id)])


def test_bulk_accept_machine_suggestions(populated):
    from core.workspace import Workspace

    ws = Workspace(populated["root"])
    at = open_app(populated["root"], "features")
    button = at.button(key="features_accept")
    assert button.label.endswith("(1)") and not button.disabled          # the sam_iou suggestion of class 0
    n0 = len(ws.labels(DATASET, MODEL))
    button.click().run()
    assert "annotator" in texts(at.warning) and len(ws.labels(DATASET, MODEL)) == n0
    at.text_input(key="sa_annotator").set_value("cy").run()
    at.button(key="features_accept").click().run()
    labels = ws.labels(DATASET, MODEL)
    assert len(labels) == n0 + 1
    row = labels.iloc[-1]
    assert (row.source, row.annotator, row.answer) == ("human", "cy", "spurious_object")
    assert row.note.startswith("accepted the sam_iou suggestion") and "(bulk accept)" in row.note
    assert at.button(key="features_accept").label.endswith("(0)") and at.button(key="features_accept").disabled
    ws.delete_labels([int(row.id)])
