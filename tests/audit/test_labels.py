import io

import numpy as np
import pandas as pd
import pytest

from core.audit.labels import (VerdictConfig, agreement, iou_label, labels_to_csv, mask_iou,
                               parse_salient_imagenet_csv, read_labels_csv, spurious_features, verdicts)
from core.errors import SpurAuditError


def _df(rows):
    cols = ["id", "class_index", "feature", "answer", "annotator", "source", "score"]
    return pd.DataFrame([dict(zip(cols, (i, *r))) for i, r in enumerate(rows)])


def test_quorum_3_of_5():
    rows = [(0, 7, a, f"w{i}", "human", None) for i, a in
            enumerate(["spurious_background", "spurious_object", "spurious_background", "core", "core"])]
    rows += [(1, 3, a, f"w{i}", "human", None) for i, a in
             enumerate(["spurious_background", "spurious_object", "core", "core", "core"])]
    v = verdicts(_df(rows), config=VerdictConfig(quorum=3)).set_index(["class_index", "feature"])
    assert v.loc[(0, 7), "verdict"] == "spurious" and v.loc[(0, 7), "kind"] == "spurious_background"
    assert v.loc[(0, 7), "n_spurious"] == 3
    assert v.loc[(1, 3), "verdict"] == "core"
    v4 = verdicts(_df(rows), config=VerdictConfig(quorum=4)).set_index(["class_index", "feature"])
    assert v4.loc[(0, 7), "verdict"] == "undecided"


def test_default_majority_and_latest_answer_per_annotator():
    rows = [(0, 1, "core", "ann", "human", None),
            (0, 1, "spurious_object", "ann", "human", None)]        # ann changed their mind
    v = verdicts(_df(rows)).iloc[0]
    assert v.verdict == "spurious" and v.n_answers == 1
    rows = [(0, 2, "core", "a", "human", None), (0, 2, "spurious_object", "b", "human", None)]
    assert verdicts(_df(rows)).iloc[0].verdict == "undecided"      # 1 of 2 is no strict majority


def test_machine_never_overrides_human():
    rows = [(0, 1, "spurious_background", "masks", "masks", 0.05),
            (0, 1, "core", "alice", "human", None),
            (0, 2, "spurious_background", "masks", "masks", 0.05),
            (0, 3, "core", "clip", "clip", 0.9)]
    v = verdicts(_df(rows)).set_index("feature")
    assert v.loc[1, "verdict"] == "core" and v.loc[1, "basis"] == "human"
    assert v.loc[2, "verdict"] == "spurious" and v.loc[2, "basis"] == "machine"
    assert v.loc[2, "score"] == pytest.approx(0.05)
    assert spurious_features(verdicts(_df(rows)), 2) == {0: [2], 1: []}


def test_salient_imagenet_import_fabricated_file():
    text = (
        "HITId,WorkerId,Input.class_index,Input.feature_index,Input.feature_rank,Answer.main,Answer.separate,"
        "Answer.background,Answer.reasons\n"
        "h1,W1,1,820,0,true,false,false,the dog\n"
        "h1,W2,1,820,0,false,true,false,leash\n"
        "h1,W3,1,820,0,FALSE,FALSE,TRUE,grass\n"
        "h2,W1,2,5,3,0,0,0,\n"
        "h2,W2,2,5,3,1,0,1,\n"
        "h3,W4,2.0,6,1,on,,,\n")
    rows = parse_salient_imagenet_csv(io.StringIO(text))
    assert [r["answer"] for r in rows] == ["core", "spurious_object", "spurious_background", "unsure", "unsure",
                                           "core"]
    assert rows[0]["annotator"] == "W1" and rows[0]["class_index"] == 1 and rows[0]["feature"] == 820
    assert "feature_rank=0" in rows[0]["note"] and "the dog" in rows[0]["note"]
    assert rows[3]["note"].startswith("no choice") and rows[4]["note"].startswith("several")
    assert rows[5]["class_index"] == 2
    v = verdicts(pd.DataFrame(rows)).set_index(["class_index", "feature"])
    assert v.loc[(1, 820), "verdict"] == "spurious"                  # 2 of 3 answers spurious
    with pytest.raises(SpurAuditError, match="Salient ImageNet"):
        parse_salient_imagenet_csv(io.StringIO("WorkerId,Input.class_index\nW,1\n"))


def test_csv_roundtrip_and_validation():
    df = _df([(0, 1, "core", "alice", "human", None), (1, 4, "spurious_background", "masks", "masks", 0.1)])
    df["note"] = ["a, \"quoted\" note", ""]
    rows = read_labels_csv(labels_to_csv(df))
    assert rows[0]["note"] == 'a, "quoted" note' and rows[1]["score"] == pytest.approx(0.1)
    assert rows[1]["source"] == "masks"
    with pytest.raises(SpurAuditError, match="answer"):
        read_labels_csv("class_index,feature,answer,annotator\n0,1,maybe,bob\n")
    with pytest.raises(SpurAuditError, match="annotator"):
        read_labels_csv("class_index,feature,answer\n0,1,core\n")


def test_agreement_kappa():
    items = [(c, f) for c in range(2) for f in range(5)]
    a = ["core", "core", "spurious_object", "spurious_background", "core",
         "core", "spurious_object", "core", "core", "spurious_background"]
    b = list(a)
    b[0] = "spurious_object"                                             # one disagreement in 10
    rows = [(c, f, x, "a", "human", None) for (c, f), x in zip(items, a)]
    rows += [(c, f, x, "b", "human", None) for (c, f), x in zip(items, b)]
    rows += [(c, f, x, "c", "human", None) for (c, f), x in zip(items, a)]
    res = agreement(_df(rows))
    pairs = res["pairs"].set_index(["annotator_a", "annotator_b"])
    assert pairs.loc[("a", "c"), "cohen_kappa"] == pytest.approx(1.0)
    assert pairs.loc[("a", "b"), "agreement"] == pytest.approx(0.9)
    # Cohen by hand for a vs b: po = 0.9; a: core .6 obj .2 bg .2; b: core .5 obj .3 bg .2
    pe = 0.6 * 0.5 + 0.2 * 0.3 + 0.2 * 0.2
    assert pairs.loc[("a", "b"), "cohen_kappa"] == pytest.approx((0.9 - pe) / (1 - pe))
    assert 0 < res["fleiss_kappa"] < 1 and res["n_items"] == 10 and res["n_annotators"] == 3


def test_mask_iou_and_threshold_labels():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2] = True
    b[0, :1] = True                                       # IoU 4/8
    a[1, 0, 0] = True
    b[1, 3, 3] = True                                     # IoU 0
    np.testing.assert_allclose(mask_iou(a, b), [0.5, 0.0])
    assert iou_label(0.5) == "core" and iou_label(0.05) == "spurious_background" and iou_label(0.15) == "unsure"


def test_auto_labels_from_object_masks(channel_model):
    from tests.audit.audit_images import red_square_images

    from core.audit.labels import MaskLabelConfig, auto_labels_from_masks

    # red object (feature 0 fires on it) on a green background (feature 1 fires around it)
    imgs, obj = red_square_images(n=6, size=12, side=4, background=(0.0, 0.6, 0.0))
    acts = channel_model.features(imgs).detach().numpy()
    rows = auto_labels_from_masks(channel_model, imgs, obj, {0: np.arange(6)}, np.array([[0, 1]]), acts,
                                  config=MaskLabelConfig(top_n=4), device="cpu")
    by_feature = {r["feature"]: r for r in rows}
    assert by_feature[0]["answer"] == "core" and by_feature[0]["score"] == pytest.approx(1.0)
    assert by_feature[1]["answer"] == "spurious_background" and by_feature[1]["score"] < 0.2
    assert all(r["source"] == "masks" for r in rows)


def test_box_region():
    from core.audit.labels import MaskLabelConfig, box_region

    m = np.zeros((2, 6, 6), bool)
    m[0, 1, 1] = m[0, 3, 4] = True                     # two stroke pixels -> rows 1..3, cols 1..4
    b = box_region(m)
    assert b[0].sum() == 12 and b[0, 1:4, 1:5].all() and not b[1].any()
    with pytest.raises(SpurAuditError, match="region"):
        MaskLabelConfig(region="hull").validate()
