"""Mining bias-conflicting samples (core/mitigate/mining.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate.mining import MiningConfig, mine_conflicting, mining_scores

from _cue import cue_data, cue_model


def test_gce_mining_finds_the_conflicting_samples_of_a_planted_cue():
    torch.set_num_threads(1)
    data = cue_data(n_train=400, conflict=0.05)          # 20 conflicting samples, colour = easy cue
    res = mine_conflicting(data, config=MiningConfig(method="gce", iterations=10, batch_size=64, lr=3e-3,
                                                     score="final"), base_model=cue_model(), seed=0, device="cpu")
    m = res.metrics
    assert m["n_conflicting"] == 20
    assert m["precision"] >= 0.8 and m["recall"] >= 0.7, m
    # the mined set is exactly the misclassified training samples of the returned bias model
    with torch.no_grad():
        res.model.eval()
        wrong = (res.model(data.x_train).argmax(1) != data.y_train).numpy()
    assert np.array_equal(wrong, res.mined)
    assert m["n_mined"] == int(res.mined.sum()) and len(res.indices) == m["n_mined"]


def test_erm_mining_runs_and_is_seeded():
    torch.set_num_threads(1)
    data = cue_data(n_train=200, conflict=0.05)
    cfg = MiningConfig(method="erm", iterations=8, batch_size=64, lr=3e-3)
    a = mine_conflicting(data, config=cfg, base_model=cue_model(), seed=1, device="cpu")
    b = mine_conflicting(data, config=cfg, base_model=cue_model(), seed=1, device="cpu")
    assert np.array_equal(a.mined, b.mined) and a.metrics["method"] == "erm"


def test_mining_scores_by_hand():
    mined = np.array([True, True, False, False, True])
    aligned = np.array([False, True, False, True, True])
    bias = np.array([0, 1, 2, 3, -1])                 # last row unknown -> ignored
    s = mining_scores(mined, aligned, bias)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["n_conflicting"] == 2 and s["n_mined"] == 3
    empty = mining_scores(np.zeros(3, bool), np.array([False, True, True]))
    assert math.isnan(empty["precision"]) and empty["recall"] == 0.0


def test_config_validation():
    with pytest.raises(SpurAuditError, match="mining method"):
        MiningConfig(method="lff")
    with pytest.raises(SpurAuditError, match="q"):
        MiningConfig(q=0.0)


def test_average_score_mining_finds_the_conflicting_samples():
    torch.set_num_threads(1)
    data = cue_data(n_train=400, conflict=0.05)
    cfg = MiningConfig(method="gce", iterations=14, batch_size=64, lr=3e-3, score="average", score_every=2)
    res = mine_conflicting(data, config=cfg, base_model=cue_model(), seed=0, device="cpu")
    m = res.metrics
    assert m["score"] == "average"
    assert m["precision"] >= 0.8 and m["recall"] >= 0.7, m


def test_average_score_with_one_evaluation_is_the_final_bias_score():
    torch.set_num_threads(1)
    data = cue_data(n_train=200, conflict=0.05)
    # score_every larger than the run: the final model is scored once; threshold 0.5 on 1 - p_y
    cfg = MiningConfig(method="gce", iterations=6, batch_size=64, lr=3e-3, score="average", score_every=100,
                       threshold=0.5)
    res = mine_conflicting(data, config=cfg, base_model=cue_model(), seed=0, device="cpu")
    with torch.no_grad():
        res.model.eval()
        p = res.model(data.x_train).softmax(1)
    expected = (1 - p[torch.arange(len(data.y_train)), data.y_train] > 0.5).numpy()
    assert np.array_equal(res.mined, expected)


def test_mining_score_options_are_checked():
    with pytest.raises(SpurAuditError, match="mining score"):
        MiningConfig(score="median")
    with pytest.raises(SpurAuditError, match="threshold"):
        MiningConfig(score="average", threshold=1.5)
