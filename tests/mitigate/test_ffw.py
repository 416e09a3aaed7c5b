"""FFW: the MI estimator, the privacy head, and the pruning loop end to end on tiny data (CPU, seeded)."""
import contextlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_data, tiny_model, train_vanilla  # noqa: E402

from core.errors import SpurAuditError
from core.mitigate.ffw import (FFWConfig, PrivacyHead, empirical_mutual_information, run_ffw, split_holdout,
                               train_privacy_head)
from core.models.gates import masks_of

torch.set_num_threads(1)
FAST = {"max_epochs": 3, "steps_per_epoch": 4, "min_epochs": 1, "privacy_max_epochs": 20, "batch_size": 64}


def test_mi_independent_is_near_zero_and_identical_is_one():
    g = torch.Generator().manual_seed(0)
    b = torch.randint(0, 4, (40000,), generator=g)
    other = torch.randint(0, 4, (40000,), generator=g)
    probs_indep = torch.nn.functional.one_hot(other, 4).float()
    assert float(empirical_mutual_information(b, probs_indep)) < 0.005
    probs_same = torch.nn.functional.one_hot(b, 4).float()
    assert float(empirical_mutual_information(b, probs_same)) == pytest.approx(1.0, abs=1e-3)
    # a soft, uninformative prediction (uniform) carries no information either
    assert float(empirical_mutual_information(b, torch.full((40000, 4), 0.25))) < 1e-4


def test_mi_is_differentiable_and_rejects_unknown_bias():
    logits = torch.randn(64, 3, requires_grad=True)
    b = torch.arange(64) % 3
    empirical_mutual_information(b, logits.softmax(1)).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(SpurAuditError):
        empirical_mutual_information(torch.tensor([-1, 0, 1]), torch.full((3, 2), 0.5))


def test_privacy_head_learns_bias_and_is_frozen_afterwards():
    g = torch.Generator().manual_seed(0)
    b = torch.randint(0, 3, (300,), generator=g)
    z = torch.randn(300, 8, generator=g) * 0.01
    z[:, 0] += b.float() * 0.1           # tiny scale: standardisation must still find it
    head = PrivacyHead(8, 3)
    info = train_privacy_head(head, z[:200], b[:200], z[200:], b[200:], generator=g)
    assert info["val_accuracy"] > 0.9
    assert all(not p.requires_grad for p in head.parameters())


def test_privacy_head_is_blind_to_a_global_rescale_but_not_to_one_neuron():
    g = torch.Generator().manual_seed(1)
    z = torch.rand(50, 6, generator=g)
    head = PrivacyHead(6, 3)
    head.fit_standardization(z)
    assert torch.allclose(head(z), head(z * 0.025), atol=1e-5)     # shrinking every feature hides nothing
    shrunk = z.clone()
    shrunk[:, 2] *= 0.025
    assert not torch.allclose(head(z), head(shrunk), atol=1e-3)   # a single pruned neuron is visible


def test_split_holdout_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(5), 20)
    fit, hold = split_holdout(labels, 0.4, seed=0)
    assert len(np.intersect1d(fit, hold)) == 0 and len(fit) + len(hold) == 100
    assert all((labels[hold] == c).sum() == 8 for c in range(5))


@pytest.fixture(scope="module")
def trained():
    data = tiny_data(rho=0.97, n_train=300, n_val=160, n_test=120)
    return data, train_vanilla(tiny_model(), data, steps=80)


def test_ffw_end_to_end_unstructured(trained):
    data, vanilla = trained
    original = {k: v.clone() for k, v in vanilla.state_dict().items()}
    res = run_ffw(data, base_model=vanilla, config=FAST, seed=0, device="cpu")
    # the input model is untouched
    assert all(torch.equal(original[k], v) for k, v in vanilla.state_dict().items())
    assert res.method == "ffw"
    assert 0.0 < res.metrics["sparsity"] < 1.0
    # sparsity is recorded from the first epoch (init 0: many gates fall below 0 after the first steps)
    assert res.history[0]["epoch"] == 1 and res.history[0]["sparsity"] > 0
    for key in ("accuracy", "unbiased_accuracy", "bias_decodability", "bias_accuracy"):
        assert key in res.metrics["test"]
    # no fine-tuning: every surviving weight equals the vanilla weight, pruned ones are exactly 0
    masks = masks_of(res.model)
    assert masks and "head" not in masks          # the task head C is not gated
    for name, mask in masks.items():
        w = dict(res.model.named_modules())[name].weight
        w0 = original[f"{name}.weight"]
        assert torch.equal(w[mask], w0[mask]) and bool((w[~mask] == 0).all())


def test_ffw_never_selects_on_test(trained):
    data, vanilla = trained
    a = run_ffw(data, base_model=vanilla, config=FAST, seed=0, device="cpu")
    b = run_ffw(data.without_test_labels(), base_model=vanilla, config=FAST, seed=0, device="cpu")
    assert a.extra["selected_epoch"] == b.extra["selected_epoch"]
    assert all(torch.equal(a.extra["masks"][k], b.extra["masks"][k]) for k in a.extra["masks"])
    assert [h["hard_bias_accuracy"] for h in a.history] == [h["hard_bias_accuracy"] for h in b.history]


def test_ffw_structured_masks_bottleneck_neurons(trained):
    data, vanilla = trained
    res = run_ffw(data, base_model=vanilla, config={**FAST, "structured": True}, seed=0, device="cpu")
    fmask = res.extra["feature_mask"]
    assert fmask.shape == (vanilla.feature_dim,)
    assert res.metrics["sparsity"] == pytest.approx(float((~fmask).float().mean()))
    x = data.x_test[:16]
    with torch.no_grad():
        z = vanilla.features(x) * fmask.float()
        expected = vanilla.forward_head(z)
        got = res.model(x)
    assert torch.allclose(got, expected, atol=1e-5)


@contextlib.contextmanager
def _random_second_bias(data, *, seed: int):
    """Temporarily give ``data`` a second bias attribute ``bias_right`` (3 random values per split)."""
    g = torch.Generator().manual_seed(seed)
    data.extra_bias = {"bias_right": {s: torch.randint(0, 3, (len(getattr(data, f"y_{s}")),), generator=g)
                                      for s in ("train", "val", "test")}}
    try:
        yield data
    finally:
        del data.extra_bias


def test_ffw_several_bias_attributes(trained):
    data, vanilla = trained
    with _random_second_bias(data, seed=3):
        res = run_ffw(data, base_model=vanilla, config=FAST, seed=0, device="cpu")
    assert res.extra["bias_attributes"] == ["bias", "bias_right"]
    assert set(res.metrics["test"]["bias_decodability_by_attribute"]) == {"bias", "bias_right"}
    assert res.extra["num_bias_values"]["bias_right"] == 3


def test_ffw_without_bias_labels_explains_what_is_needed(trained):
    data, vanilla = trained
    from core.mitigate.common import MitigationData

    nobias = MitigationData(x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                            x_test=data.x_test, y_test=data.y_test, num_classes=2)
    with pytest.raises(SpurAuditError, match="bias labels"):
        run_ffw(nobias, base_model=vanilla, config=FAST, device="cpu")


def test_ffw_config_validation():
    with pytest.raises(SpurAuditError, match="unknown ffw option"):
        FFWConfig.from_dict({"gamma": 10, "not_an_option": 1})
    with pytest.raises(SpurAuditError):
        FFWConfig(temperature_factor=1.5).validate()


def test_ffw_mined_pseudo_bias_when_opted_in(trained):
    data, vanilla = trained
    from core.mitigate.common import MitigationData

    nobias = MitigationData(x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                            x_test=data.x_test, y_test=data.y_test, num_classes=2)
    res = run_ffw(nobias, base_model=vanilla, config={**FAST, "use_mined_bias": True,
                                                      "mining": {"iterations": 30, "batch_size": 64}},
                  device="cpu")
    assert res.extra["mined_bias"] is True and res.extra["bias_attributes"] == ["bias"]


def test_selection_never_keeps_a_collapsed_model():
    from core.mitigate.ffw import select_epoch

    def row(task, bias, classes):
        return {"hard_task_accuracy": task, "hard_bias_accuracy": bias, "hard_predicted_classes": classes}

    # vanilla at chance (floor 0.05): the constant model hides the bias perfectly but is never kept
    rows = [row(0.10, 0.10, 1), row(0.12, 0.60, 7), row(0.11, 0.40, 5)]
    assert select_epoch(rows, floor=0.05) == (2, False)
    # nothing reaches the floor: best task - bias among the non-collapsed epochs
    assert select_epoch([row(0.3, 0.1, 1), row(0.4, 0.9, 4), row(0.35, 0.5, 3)], floor=0.8) == (2, True)
    # every epoch collapsed: fall back over all of them
    assert select_epoch([row(0.1, 0.5, 1), row(0.1, 0.2, 1)], floor=0.8) == (1, True)
    with pytest.raises(SpurAuditError):
        select_epoch([], floor=0.0)


# --- bias-ranked structured pruning and head re-fitting (structured_rule="bias-rank", refit_head) --------
def _planted_features(n: int, seed: int):
    """(N, 6) features: columns 0-1 carry the bias (3 values), 2-4 the class (3 classes), 5 is constant."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    b = torch.randint(0, 3, (n,), generator=g)
    z = torch.randn(n, 6, generator=g) * 0.3
    z[:, 0] += 2.0 * b.float()
    z[:, 1] += 2.0 * (b == 1).float()
    z[:, 2:5] += 2.0 * torch.nn.functional.one_hot(y, 3).float()
    z[:, 5] = 1.0
    return z, y, b


def test_bias_variance_share_by_hand():
    from core.mitigate.ffw import bias_variance_share

    b = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[0.0, 1.0, 5.0], [0.0, -1.0, 5.0], [2.0, 1.0, 5.0], [2.0, -1.0, 5.0]])
    # column 0 is the bias itself (η² = 1), column 1 is independent of it (0), column 2 is constant (0)
    assert torch.allclose(bias_variance_share(z, b, num_values=2), torch.tensor([1.0, 0.0, 0.0]))
    z2 = torch.tensor([[0.0], [2.0], [2.0], [4.0]])   # group means 1 and 3, total var 2, between var 1
    assert bias_variance_share(z2, b, num_values=2).item() == pytest.approx(0.5)


def test_rank_prune_drops_the_bias_neurons_and_keeps_the_task():
    from core.mitigate.ffw import privacy_bias_accuracy, rank_prune

    z, y, b = _planted_features(600, 1)
    zf, yf, bf, zh, yh, bh = z[:400], y[:400], b[:400], z[400:], y[400:], b[400:]
    vanilla_bias = privacy_bias_accuracy(zf, bf, zh, bh, num_values=3)
    assert vanilla_bias > 0.9
    frozen = torch.nn.Linear(6, 3)
    keep, head, rows, pick, fallback = rank_prune(
        zf, yf, {"bias": bf}, zh, yh, {"bias": bh}, num_bias_values={"bias": 3}, num_classes=3, head=frozen,
        vanilla_bias_accuracy={"bias": vanilla_bias}, bias_budget=0.5, refit_head=True)
    assert not fallback and head is not None
    # bias columns and the constant one go; two of the three class columns already name all 3 classes
    assert not keep[[0, 1, 5]].any() and int(keep[2:5].sum()) >= 2
    chosen = rows[pick]
    assert chosen["kept_neurons"] == int(keep.sum()) and chosen["hard_task_accuracy"] > 0.9
    assert chosen["hard_bias_accuracy"] <= chosen["bias_cap"]["bias"] < vanilla_bias
    # keeping a bias column would break the cap: every larger k is rejected
    assert all(not r["qualifies"] for r in rows if r["kept_neurons"] > 3)
    # budget 1.0 allows the vanilla's bias: the best task accuracy wins whatever it keeps
    _, _, rows1, pick1, _ = rank_prune(
        zf, yf, {"bias": bf}, zh, yh, {"bias": bh}, num_bias_values={"bias": 3}, num_classes=3, head=frozen,
        vanilla_bias_accuracy={"bias": vanilla_bias}, bias_budget=1.0, refit_head=True)
    assert rows1[pick1]["hard_task_accuracy"] == max(r["hard_task_accuracy"] for r in rows1 if r["qualifies"])


def test_ffw_bias_rank_end_to_end(trained):
    data, vanilla = trained
    res = run_ffw(data, base_model=vanilla, config={"structured": True, "structured_rule": "bias-rank",
                                                    "refit_head": True}, seed=0, device="cpu")
    fmask = res.extra["feature_mask"]
    kept = int(fmask.sum())
    assert 0 < kept < vanilla.feature_dim
    assert res.history[res.extra["selected_epoch"] - 1]["kept_neurons"] == kept
    assert res.metrics["sparsity"] == pytest.approx(1 - kept / vanilla.feature_dim)
    # the exported model reads only the kept neurons: logits do not move when a dropped neuron changes
    x = data.x_test[:16]
    with torch.no_grad():
        z = vanilla.features(x)
        got = res.model(x)
        noisy = z + (~fmask).float() * 100.0
        assert torch.allclose(res.model.forward_head(noisy), got, atol=1e-4)
    # the encoder is untouched; the head was re-fitted
    assert torch.equal(res.model.encoder[0].weight, vanilla.encoder[0].weight)
    assert not torch.allclose(res.model.head.weight[:, fmask], vanilla.head.weight[:, fmask])
    # selection used the val split only
    again = run_ffw(data.without_test_labels(), base_model=vanilla,
                    config={"structured": True, "structured_rule": "bias-rank", "refit_head": True}, seed=0, device="cpu")
    assert torch.equal(again.extra["feature_mask"], fmask)


def test_ffw_bias_rank_config_errors():
    with pytest.raises(SpurAuditError, match="structured=true"):
        FFWConfig(structured_rule="bias-rank").validate()
    with pytest.raises(SpurAuditError, match="structured_rule"):
        FFWConfig(structured=True, structured_rule="magic").validate()
    with pytest.raises(SpurAuditError, match="bias_budget"):
        FFWConfig(structured=True, structured_rule="bias-rank", bias_budget=1.5).validate()


def test_ffw_bias_rank_with_several_bias_attributes(trained):
    data, vanilla = trained
    with _random_second_bias(data, seed=4):
        res = run_ffw(data, base_model=vanilla, config={"structured": True, "structured_rule": "bias-rank"},
                      seed=0, device="cpu")
    chosen = res.history[res.extra["selected_epoch"] - 1]
    assert set(chosen["bias_cap"]) == set(chosen["hard_bias_accuracy_by_attribute"]) == {"bias", "bias_right"}
    if not res.extra["selection_fallback"]:   # every attribute must be under its own cap
        assert all(chosen["hard_bias_accuracy_by_attribute"][a] <= chosen["bias_cap"][a] + 1e-9 for a in chosen["bias_cap"])
    assert set(res.metrics["test"]["bias_decodability_by_attribute"]) == {"bias", "bias_right"}
