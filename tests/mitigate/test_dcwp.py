"""DCWP (core/mitigate/dcwp.py): pruning with frozen weights, fine-tuning, val-only selection, saving."""
from __future__ import annotations

import copy
import time

import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate.dcwp import DCWPConfig, make_loss, prune_weights, run_dcwp
from core.mitigate.mining import MiningConfig, mine_conflicting
from core.mitigate.registry import get_method
from core.mitigate.training import IndexSampler
from core.models.checkpoints import export_masked_model, load_masked_model

from _cue import cue_data, cue_model


def _cfg(**kw):
    base = dict(prune_iterations=20, finetune_iterations=20, batch_size=32, eval_every=10, prune_eval_every=10,
                mining=MiningConfig(iterations=10, batch_size=64, lr=3e-3))
    base.update(kw)
    return DCWPConfig(**base)


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_runs_end_to_end_quickly_and_never_selects_on_test():
    torch.set_num_threads(1)
    data = cue_data(n_train=200, n_val=80, n_test=80)
    base = cue_model()
    t0 = time.process_time()
    res = get_method("dcwp")(data, base_model=base, config=_cfg(), seed=0, device="cpu")
    assert time.process_time() - t0 < 10   # CPU seconds (wall time on a shared machine is meaningless)
    m = res.metrics
    for split in ("val", "test"):
        assert {"unbiased_accuracy", "aligned_accuracy", "conflicting_accuracy", "bias_decodability"} <= set(m[split])
    assert 0.0 <= m["sparsity"] <= 1.0 and {"precision", "recall"} <= set(m["mining"])
    assert m["prune"]["s_per_iter"] > 0 and m["finetune"]["cpu_s_per_iter"] > 0
    assert [h["stage"] for h in res.history][:2] == ["prune", "prune"]
    assert all("test" not in h for h in res.history)
    res2 = run_dcwp(data.without_test_labels(), base_model=base, config=_cfg(), seed=0, device="cpu")
    assert res2.metrics["selected_iteration"] == m["selected_iteration"]
    assert res2.metrics["val"] == m["val"] and _same_state(res.model, res2.model)
    assert res2.metrics["test"] != m["test"]
    # the base model is not modified
    assert _same_state(base, cue_model())


def test_pruning_trains_only_the_mask_and_sparsity_follows_lambda():
    torch.set_num_threads(1)
    data = cue_data(n_train=120, n_val=40, n_test=40)
    base = cue_model()
    sparsity = {}
    for lam in (0.0, 1.0):
        model = copy.deepcopy(base)
        pruned, info = prune_weights(model, data, iterations=30, lr=1e-2, lambda_sparse=lam,
                                     sampler=IndexSampler(120, 32, seed=0),
                                     loss_fn=make_loss(None, lambda_align=0.0, temperature=0.07),
                                     mask_init=0.15, device=torch.device("cpu"))
        sparsity[lam] = info["sparsity"]
        for (name, p), (_, q) in zip(base.encoder.named_parameters(), pruned.encoder.named_parameters()):
            assert torch.equal(p, q.detach()), name          # frozen pretrained weights (incl. BN affine)
        assert all(p.requires_grad for p in pruned.parameters())   # released for fine-tuning
    assert sparsity[1.0] > sparsity[0.0] + 0.2


def test_mined_samples_are_oversampled_with_the_tabled_lambda():
    torch.set_num_threads(1)
    data = cue_data(n_train=200, n_val=40, n_test=40, conflict=0.05)
    mining = mine_conflicting(data, config=MiningConfig(iterations=10, batch_size=64, lr=3e-3), base_model=cue_model(),
                              device="cpu")
    res = run_dcwp(data, base_model=cue_model(), config=_cfg(prune_iterations=5, finetune_iterations=5),
                   mining=mining, device="cpu")
    frac = mining.metrics["n_mined"] / 200
    expected = {True: 10.0, False: 30.0}[frac > 0.035] if frac > 0.015 else 50.0
    assert res.params["lambda_up_used"] == expected
    assert res.metrics["mining"] == mining.metrics
    assert list(res.extra["mined_indices"]) == list(mining.indices)


def test_pruned_model_saves_with_masks_and_loads_for_evaluation(tmp_path):
    torch.set_num_threads(1)
    data = cue_data(n_train=120, n_val=40, n_test=40)
    res = run_dcwp(data, base_model=cue_model(), config=_cfg(prune_iterations=30, finetune_iterations=5,
                                                              lambda_sparse=1.0, mask_init=0.15), device="cpu")
    assert res.metrics["sparsity"] > 0
    torch.save(export_masked_model(res.model), tmp_path / "dcwp.pt")
    loaded = load_masked_model(torch.load(tmp_path / "dcwp.pt", weights_only=True))
    res.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(data.x_test), res.model(data.x_test), atol=1e-5)
    kept = sum(int(m.sum()) for m in res.extra["masks"].values())
    total = sum(m.numel() for m in res.extra["masks"].values())
    assert res.metrics["sparsity"] == pytest.approx(1 - kept / total)


def test_config_validation():
    with pytest.raises(SpurAuditError):
        DCWPConfig(batch_size=1)
    with pytest.raises(SpurAuditError):
        DCWPConfig(lambda_up=0.0)
    assert DCWPConfig(mining={"iterations": 5}).mining.iterations == 5
