"""Labelling progress, the class table and its order, next unlabelled and bulk accept
(`core.audit.labelling`)."""
import numpy as np
import pandas as pd
import pytest

from core.audit.labelling import (accept_machine_rows, class_progress, class_table, next_unlabelled,
                                  overall_progress, pair_status, sort_classes)
from core.errors import SpurAuditError

TOP = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])     # 4 classes, top-2 features each


def _labels():
    rows = [  # class 0 all human; class 1 feature 2 human, 3 machine; class 2 machine only; class 3 none
        (1, 0, 0, "core", "human", None), (2, 0, 1, "spurious_background", "human", None),
        (3, 1, 2, "core", "human", None), (4, 1, 3, "spurious_object", "masks", 0.4),
        (5, 2, 4, "core", "clip", 0.9), (6, 2, 5, "spurious_background", "sam_iou", 0.2),
        (7, 2, 5, "core", "sam_iou", 0.7),
    ]
    return pd.DataFrame(rows, columns=["id", "class_index", "feature", "answer", "source", "score"])


def test_status_and_progress():
    pairs = pair_status(TOP, _labels())
    assert pairs.status.tolist() == ["human", "human", "human", "machine", "machine", "machine", "none", "none"]
    per = class_progress(pairs).set_index("class_index")
    assert per.status.tolist() == ["human", "partly human", "machine-only", "unlabelled"]
    assert per.needs_person.tolist() == [0, 1, 2, 2]
    assert overall_progress(pairs) == {"pairs": 8, "human": 3, "machine": 3, "none": 2, "labelled": 6}
    assert (pair_status(TOP, _labels().iloc[:0]).status == "none").all()


def test_next_unlabelled_walks_the_order_and_wraps():
    pairs = pair_status(TOP, _labels())
    assert next_unlabelled(pairs, [0, 1, 2, 3]) == (1, 3)
    assert next_unlabelled(pairs, [0, 1, 2, 3], after=(1, 3)) == (2, 4)
    assert next_unlabelled(pairs, [0, 1, 2, 3], after=(2, 4)) == (2, 5)
    assert next_unlabelled(pairs, [3, 2, 1, 0], after=(3, 7)) == (2, 4)
    assert next_unlabelled(pairs, [0, 1, 2, 3], after=(3, 7)) == (1, 3)           # wraps around
    assert next_unlabelled(pairs, [2, 1], after=(2, -1)) == (2, 4)                # that class from its start
    assert next_unlabelled(pair_status(TOP[:1], _labels()), [0]) is None


def test_bulk_accept_records_human_answers_saying_so():
    labels = _labels()
    pairs = pair_status(TOP, labels)
    rows = accept_machine_rows(labels, pairs, 2, annotator="ana")
    assert [(r["feature"], r["answer"], r["source"], r["annotator"]) for r in rows] == [
        (4, "core", "human", "ana"), (5, "core", "human", "ana")]                 # the latest machine answer
    assert rows[1]["note"] == "accepted the sam_iou suggestion, score 0.700 (bulk accept)"
    assert [r["feature"] for r in accept_machine_rows(labels, pairs, 1, annotator="ana")] == [3]  # 2 is human
    assert accept_machine_rows(labels, pairs, 3, annotator="ana") == []
    with pytest.raises(SpurAuditError, match="annotator"):
        accept_machine_rows(labels, pairs, 2, annotator=" ")


def test_class_table_sort_and_search():
    pairs = pair_status(TOP, _labels())
    gaps = pd.DataFrame({"class_index": [0, 1, 2, 3], "gap": [0.1, np.nan, 0.4, -0.2],
                         "ranked": [True, False, True, True]})
    t = class_table(4, ["tabby cat", "dog", "cathedral", "fish"], labels_per_class=np.array([5, 50, 1, 9]),
                    accuracy=np.array([0.9, 0.2, 0.5, np.nan]), gaps=gaps, progress=class_progress(pairs))
    assert sort_classes(t, order="largest gap").class_index.tolist() == [2, 0, 3, 1]
    assert sort_classes(t, order="most images").class_index.tolist() == [1, 3, 0, 2]
    assert sort_classes(t, order="lowest accuracy").class_index.tolist() == [1, 2, 0, 3]
    assert sort_classes(t, search="CAT").class_index.tolist() == [0, 2]
    assert sort_classes(t, search="3").class_index.tolist() == [3]
    assert sort_classes(t, statuses=["machine-only", "unlabelled"]).class_index.tolist() == [2, 3]
    with pytest.raises(SpurAuditError, match="unknown order"):
        sort_classes(t, order="random")
