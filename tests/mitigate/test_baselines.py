"""ERM, JTT and MRM (core/mitigate/baselines.py) — end to end on tiny data, val-only selection."""
from __future__ import annotations

import time

import pytest
import torch

from core.mitigate.baselines import ERMConfig, JTTConfig, MRMConfig, run_erm, run_jtt, run_mrm
from core.mitigate.registry import METHODS, get_method
from core.mitigate.mining import MiningConfig

from _cue import cue_data, cue_model

KEYS = ("accuracy", "unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy",
        "bias_decodability")


def _configs():
    return {
        "erm": ERMConfig(iterations=30, batch_size=32, lr=3e-3, eval_every=10),
        "jtt": JTTConfig(identification=MiningConfig(method="erm", iterations=8, batch_size=32, lr=3e-3),
                         iterations=30, batch_size=32, lr=3e-3, eval_every=10),
        "mrm": MRMConfig(prune_iterations=15, retrain_iterations=15, batch_size=32, eval_every=5),
    }


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["erm", "jtt", "mrm"])
def test_runs_end_to_end_quickly_and_never_selects_on_test(name):
    torch.set_num_threads(1)
    data = cue_data(n_train=160, n_val=80, n_test=80)
    cfg = _configs()[name]
    base = cue_model()
    t0 = time.process_time()
    res = get_method(name)(data, base_model=base, config=cfg, seed=0, device="cpu")
    assert time.process_time() - t0 < 10   # CPU seconds (wall time on a shared machine is meaningless)
    assert res.method == name
    for split in ("val", "test"):
        for key in KEYS:
            assert key in res.metrics[split]
    assert res.metrics["wall_time_s"] > 0 and res.metrics["peak_rss_mb"] > 0
    assert all("test" not in h for h in res.history)
    # same run with the test labels shuffled: identical selection, val metrics and weights
    res2 = get_method(name)(data.without_test_labels(), base_model=base, config=cfg, seed=0, device="cpu")
    assert res2.metrics["selected_iteration"] == res.metrics["selected_iteration"]
    assert res2.metrics["val"] == res.metrics["val"]
    assert _same_state(res.model, res2.model)
    assert res2.metrics["test"]["accuracy"] != res.metrics["test"]["accuracy"] or \
        res2.metrics["test"]["unbiased_accuracy"] != res.metrics["test"]["unbiased_accuracy"]


def test_registry_holds_the_baselines():
    assert {"erm", "jtt", "mrm"} <= set(METHODS)


def test_erm_selects_the_best_validation_checkpoint():
    torch.set_num_threads(1)
    data = cue_data(n_train=160, n_val=80, n_test=80)
    res = run_erm(data, base_model=cue_model(), config=ERMConfig(iterations=30, batch_size=32, lr=3e-3, eval_every=10),
                  device="cpu")
    best = max(h["val"]["unbiased_accuracy"] for h in res.history)
    assert res.metrics["val"]["unbiased_accuracy"] == pytest.approx(best)
    assert res.extra["init_state"].keys() == res.extra["last_state"].keys()


def test_jtt_upsamples_the_error_set_and_reports_mining():
    torch.set_num_threads(1)
    data = cue_data(n_train=160, n_val=80, n_test=80)
    res = run_jtt(data, base_model=cue_model(), config=_configs()["jtt"], device="cpu")
    assert {"precision", "recall", "n_mined"} <= set(res.metrics["mining"])
    assert res.params["lambda_up_used"] > 0


def test_mrm_prunes_and_resets():
    from core.models.gates import masks_of

    torch.set_num_threads(1)
    data = cue_data(n_train=160, n_val=80, n_test=80)
    init = cue_model(seed=5)
    init_state = {k: v.clone() for k, v in init.state_dict().items()}
    base = cue_model(seed=5)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.5)   # a "trained" model far from its init
    cfg = MRMConfig(prune_iterations=20, lambda_sparse=1e-8, mask_init=0.05, retrain_iterations=0, batch_size=32, eval_every=0)
    res = run_mrm(data, base_model=base, config=cfg, device="cpu", init_state=init_state)
    assert 0.0 < res.metrics["sparsity"] < 1.0
    masks = masks_of(res.model)
    w = res.model.encoder[0].parametrizations.weight.original
    assert torch.equal(w, init_state["encoder.0.weight"])        # reset to init (no retraining here)
    assert set(masks) and float((res.model.encoder[0].weight.detach() * ~masks["encoder.0"]).abs().sum()) == 0.0
