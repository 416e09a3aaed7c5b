"""Group accuracies and bias decodability (`core.metrics`)."""
import numpy as np
import pytest

from core.errors import SpurAuditError
from core.metrics import bias_decodability, evaluate_predictions


def test_group_accuracies_hand_computed():
    labels = np.array([0, 0, 0, 1, 1, 1])
    bias = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 0, 1, 1, 1, 1])  # aligned all right; conflicting: (0,1) wrong, (1,0) right
    m = evaluate_predictions(pred, labels, bias=bias)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["aligned_accuracy"] == 1.0
    assert m["conflicting_accuracy"] == 0.5
    # groups (0,0)=1, (0,1)=0, (1,1)=1, (1,0)=1
    assert m["unbiased_accuracy"] == pytest.approx(0.75)
    assert m["worst_group_accuracy"] == 0.0
    assert m["n_groups"] == 4


def test_without_bias_only_accuracy():
    assert evaluate_predictions([1, 0], [1, 1]) == {"accuracy": 0.5, "n": 2}


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(SpurAuditError, match="entries"):
        evaluate_predictions([1, 0, 1], [1, 1])


def test_probe_reads_planted_bias_and_not_absent_one():
    rng = np.random.default_rng(0)
    n = 600
    bias = rng.integers(0, 3, n)
    noise = rng.normal(size=(n, 8))
    planted = noise.copy()
    planted[:, 0] = bias + 0.1 * noise[:, 0]
    # shrunk 1000x, as pruning can shrink features: a standardized probe still reads it
    assert bias_decodability(planted * 1e-3, bias) > 0.95
    assert bias_decodability(noise, bias) < 0.5
