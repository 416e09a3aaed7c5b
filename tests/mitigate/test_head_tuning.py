"""Low-spuriosity head tuning / error tuning: early stop, head-only updates, selection on val only."""
import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_data, tiny_model, train_vanilla  # noqa: E402

from core.audit.gaps import GapConfig, spurious_gaps
from core.errors import SpurAuditError
from core.mitigate.head_tuning import (GapSlices, HeadTuningConfig, ranking_from_scores, run_error_tuning,
                                       run_head_tuning, select_lowest, tune_head)

torch.set_num_threads(1)


def planted_features(n: int, seed: int, aligned_frac: float):
    """2 classes; feature 0 = core (class sign), feature 1 = spurious (bias sign). Spuriosity = feature 1
    signed towards the class (high = aligned cue present)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    aligned = torch.rand(n, generator=g) < aligned_frac
    b = torch.where(aligned, y, 1 - y)
    core = (2 * y.float() - 1) + 0.3 * torch.randn(n, generator=g)
    spur = 2 * (2 * b.float() - 1) + 0.3 * torch.randn(n, generator=g)
    f = torch.stack([core, spur], 1)
    spuriosity = (spur * (2 * y.float() - 1)).numpy()
    return f, y, spuriosity


def spurious_head():
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, -1.0], [0.0, 1.0]]))   # reads only the spurious feature
        head.bias.zero_()
    return head


def test_gap_slices_match_spurious_gaps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    scores = rng.normal(size=400)
    pred = np.where(rng.random(400) < 0.7, labels, (labels + 1) % 4)
    rk = ranking_from_scores(scores, labels, 4)
    ref = spurious_gaps(rk, pred, config=GapConfig(n_boot=0)).pooled["gap"]
    assert GapSlices(rk).gap(pred) == pytest.approx(ref)


def test_early_stop_at_first_epoch_below_threshold():
    f_tr, y_tr, s_tr = planted_features(400, 0, 0.5)
    f_val, y_val, s_val = planted_features(400, 1, 0.5)
    rk_tr = ranking_from_scores(s_tr, y_tr.numpy(), 2)
    rows = select_lowest(rk_tr, k_per_class=100)
    rk_val = ranking_from_scores(s_val, y_val.numpy(), 2)
    base = dict(lr=0.05, momentum=0.9, epochs=20, batch_size=50)
    full = tune_head(spurious_head(), f_tr[rows], y_tr[rows], val_features=f_val, val_labels=y_val, val_ranking=rk_val,
                     config=HeadTuningConfig(gap_threshold=None, **base), seed=0, device="cpu")
    gaps = [h["val_gap"] for h in full.history]
    assert len(gaps) == 21 and not full.early_stopped
    assert gaps[0] > 0.5 and min(gaps) < gaps[0] - 0.3        # tuning on low-spuriosity rows closes the gap
    # a threshold that the gap first crosses at some epoch e >= 2
    e = next(i for i in range(2, 21) if gaps[i] < min(gaps[:i]) - 1e-9)
    thr = (gaps[e] + min(gaps[:e])) / 2
    out = tune_head(spurious_head(), f_tr[rows], y_tr[rows], val_features=f_val, val_labels=y_val, val_ranking=rk_val,
                    config=HeadTuningConfig(gap_threshold=thr, **base), seed=0, device="cpu")
    assert out.early_stopped and out.stopped_epoch == e and len(out.history) == e + 1
    assert all(h["val_gap"] >= thr for h in out.history[:-1]) and out.history[-1]["val_gap"] < thr
    # the returned head is the head after exactly e epochs
    ref = tune_head(spurious_head(), f_tr[rows], y_tr[rows], val_features=f_val, val_labels=y_val, val_ranking=rk_val,
                    config=HeadTuningConfig(gap_threshold=None, **{**base, "epochs": e}), seed=0, device="cpu")
    assert torch.allclose(out.head.weight, ref.head.weight)


def test_select_lowest_takes_k_per_class_or_fraction():
    labels = np.array([0] * 10 + [1] * 6)
    scores = np.concatenate([np.arange(10)[::-1], np.arange(6)]).astype(float)
    rk = ranking_from_scores(scores, labels, 2)
    assert list(select_lowest(rk, k_per_class=3)) == [7, 8, 9, 10, 11, 12]
    assert len(select_lowest(rk, fraction=0.5)) == 5 + 3


@pytest.fixture(scope="module")
def trained():
    data = tiny_data(k=2, rho=0.97, n_train=300, n_val=160, n_test=120)
    return data, train_vanilla(tiny_model(), data, steps=60)


def test_head_tuning_touches_only_the_head(trained):
    data, model = trained
    before = copy.deepcopy(model.state_dict())
    res = run_head_tuning(data, base_model=model, config={"spuriosity_source": "bias", "k_per_class": 40,
                                                          "lr": 0.05, "epochs": 3, "gap_threshold": None},
                          device="cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())      # base model untouched
    after = res.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {"head.weight", "head.bias"}
    assert res.metrics["n_tuned_on"] == 80 and len(res.history) == 4
    assert "val_gap_before" in res.metrics and "unbiased_accuracy" in res.metrics["test"]


def test_head_tuning_given_spuriosity_and_no_test_selection(trained):
    data, model = trained
    rng = np.random.default_rng(0)
    cfg = {"spuriosity": rng.normal(size=len(data.y_train)), "val_spuriosity": rng.normal(size=len(data.y_val)),
           "k_per_class": 30, "lr": 0.05, "epochs": 4}
    a = run_head_tuning(data, base_model=model, config=cfg, device="cpu")
    b = run_head_tuning(data.without_test_labels(), base_model=model, config=cfg, device="cpu")
    assert a.metrics["spuriosity_source"] == "given"
    assert a.extra["stopped_epoch"] == b.extra["stopped_epoch"]
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    lowest = select_lowest(ranking_from_scores(cfg["spuriosity"], data.y_train.numpy(), 2), k_per_class=30)
    assert np.array_equal(a.extra["selected_rows"], lowest)


def test_head_tuning_from_model_features(trained):
    data, model = trained
    res = run_head_tuning(data, base_model=model, config={"k_per_class": 40, "epochs": 2}, device="cpu")
    assert res.metrics["spuriosity_source"] == "features"
    assert any(res.extra["spuriosity_info"]["spurious_features"].values())


def test_error_tuning_uses_misclassified_rows(trained):
    data, _ = trained
    weak = train_vanilla(tiny_model(seed=1), data, steps=3, lr=1e-3)
    with torch.no_grad():
        wrong = np.flatnonzero(weak(data.x_train).argmax(1).numpy() != data.y_train.numpy())
    assert len(wrong) > 0
    res = run_error_tuning(data, base_model=weak, config={"spuriosity_source": "bias", "epochs": 2}, device="cpu")
    assert np.array_equal(res.extra["selected_rows"], wrong)


def test_head_tuning_errors_are_explained(trained):
    data, model = trained
    with pytest.raises(SpurAuditError, match="val_spuriosity"):
        run_head_tuning(data, base_model=model, config={"spuriosity": np.zeros(len(data.y_train))}, device="cpu")
    with pytest.raises(SpurAuditError, match="unknown head-tuning option"):
        run_head_tuning(data, base_model=model, config={"bogus": 1}, device="cpu")


def test_error_tuning_without_training_errors_keeps_the_head(trained):
    data, model = trained
    perfect = copy.deepcopy(model)
    # make the training split perfectly fitted: relabel it with the model's own predictions
    fitted = copy.copy(data)
    with torch.no_grad():
        fitted.y_train = perfect(data.x_train).argmax(1)
    res = run_error_tuning(fitted, base_model=perfect, config={"spuriosity_source": "bias", "epochs": 2},
                           device="cpu")
    assert res.metrics["n_tuned_on"] == 0
    assert "no misclassified" in res.metrics["note"]
    assert torch.equal(res.model.head.weight, model.head.weight)
    assert res.extra["stopped_epoch"] == 0
