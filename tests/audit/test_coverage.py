"""Unranked classes by their true reason (`core.audit.coverage`, `core.audit.gaps`) and the report's
class choice."""
import numpy as np
import pandas as pd

from core.audit.coverage import (NO_IMAGES, NO_SPURIOUS, TOO_FEW, choose_classes, coverage_sentence,
                                 reason_counts, unranked_summary, unranked_table)
from core.audit.gaps import spurious_gaps
from core.audit.spuriosity import compute_spuriosity


def _ranked_split():
    """Class 0: 40 images with a spurious feature; 1: one image, spurious feature labelled; 2: 10
    images, no spurious feature; 3: no image in the split."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 40 + [1] + [2] * 10)
    feats = rng.random((len(labels), 4)).astype(np.float16)
    ranking = compute_spuriosity(feats, labels, {0: [1], 1: [2], 3: [0]}, num_classes=4)
    preds = labels.copy()
    preds[:5] = 3
    return ranking, preds


def test_gap_rows_carry_the_true_reason():
    ranking, preds = _ranked_split()
    per = spurious_gaps(ranking, preds).per_class
    assert per.set_index("class_index").reason.to_dict() == {0: "", 1: TOO_FEW, 2: NO_SPURIOUS, 3: NO_IMAGES}
    table = unranked_table(per, ranking.classes_without_spurious, ["a", "b", "c", "d"])
    assert table[["class", "reason"]].values.tolist() == [["c", NO_SPURIOUS], ["b", TOO_FEW], ["d", NO_IMAGES]]
    assert reason_counts(table) == {NO_SPURIOUS: 1, TOO_FEW: 1, NO_IMAGES: 1}
    assert unranked_summary(table, 4) == ("3 of 4 classes are not ranked: 1 no spurious feature; "
                                          "1 too few images for k; 1 no images in the split.")
    # an old gap table without the reason column: derived from n, k and the ranking
    old = per.drop(columns=["reason"])
    assert unranked_table(old, ranking.classes_without_spurious).reason.tolist() == [NO_SPURIOUS, TOO_FEW, NO_IMAGES]
    assert unranked_summary(unranked_table(per[per.ranked], []), 4) == "All 4 classes are ranked."


def test_one_image_classes_with_spurious_labels_are_not_called_unlabelled():
    """The issue's case: 799 classes with spurious labels but one image in the split."""
    K = 30
    labels = np.array([0] * 50 + list(range(1, K)))
    feats = np.random.default_rng(1).random((len(labels), 2 * K)).astype(np.float16)
    ranking = compute_spuriosity(feats, labels, {c: [2 * c + 1] for c in range(K)}, num_classes=K)
    per = spurious_gaps(ranking, labels).per_class
    counts = reason_counts(unranked_table(per, ranking.classes_without_spurious))
    assert counts == {NO_SPURIOUS: 0, TOO_FEW: K - 1, NO_IMAGES: 0}


def test_choose_classes_largest_gap_and_says_so():
    per = pd.DataFrame({"class_index": range(6), "gap": [0.1, np.nan, 0.5, -0.2, 0.3, 0.5],
                        "ranked": [True, False, True, True, True, True]})
    chosen, how = choose_classes(per, 6, 3)
    assert chosen == [2, 5, 4] and how == "the 3 classes with the largest spurious gap"
    assert coverage_sentence(3, 6, how) == "Showing 3 of 6 classes: the 3 classes with the largest spurious gap."
    chosen, how = choose_classes(per, 6, 6)
    assert chosen == list(range(6)) and how == "all 6 classes"
    chosen, how = choose_classes(per[per.class_index < 2], 6, 3)
    assert chosen == [0, 1, 2] and "then 2 unranked classes by index" in how
    assert choose_classes(None, 6, 2) == ([0, 1], "classes 0–1 (no gaps computed to choose by)")
