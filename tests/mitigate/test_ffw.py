"""FFW's entry point (core/mitigate/ffw.py): the split of val, the rules, end to end on tiny data (CPU, seeded)."""
import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_data, tiny_model, train_vanilla  # noqa: E402

from core.config import config_from_mapping
from core.errors import SpurAuditError
from core.mitigate.data import MitigationData
from core.mitigate.ffw import PRUNE_RULES, run_ffw, split_holdout
from core.mitigate.ffw_gates import STRUCTURED_RULES, FFWConfig
from core.mitigate.presets import ffw_presets
from core.models.gates import masks_of

torch.set_num_threads(1)
FAST = {"max_epochs": 3, "steps_per_epoch": 4, "min_epochs": 1, "privacy_max_epochs": 20, "batch_size": 64}


def test_every_structured_rule_has_its_pruning_and_every_preset_is_a_valid_config():
    assert tuple(PRUNE_RULES) == STRUCTURED_RULES
    for options in ffw_presets().values():
        config_from_mapping(FFWConfig, options, what="ffw")


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
    before = data.extra_bias
    data.extra_bias = {"bias_right": {s: torch.randint(0, 3, (len(getattr(data, f"y_{s}")),), generator=g)
                                      for s in ("train", "val", "test")}}
    try:
        yield data
    finally:
        data.extra_bias = before


def test_ffw_several_bias_attributes(trained):
    data, vanilla = trained
    with _random_second_bias(data, seed=3):
        res = run_ffw(data, base_model=vanilla, config=FAST, seed=0, device="cpu")
    assert res.extra["bias_attributes"] == ["bias", "bias_right"]
    assert set(res.metrics["test"]["bias_decodability_by_attribute"]) == {"bias", "bias_right"}
    assert res.extra["num_bias_values"]["bias_right"] == 3


def test_ffw_without_bias_labels_explains_what_is_needed(trained):
    data, vanilla = trained
    nobias = MitigationData(x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                            x_test=data.x_test, y_test=data.y_test, num_classes=2)
    with pytest.raises(SpurAuditError, match="bias labels"):
        run_ffw(nobias, base_model=vanilla, config=FAST, device="cpu")


def test_ffw_mined_pseudo_bias_when_opted_in(trained):
    data, vanilla = trained
    nobias = MitigationData(x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                            x_test=data.x_test, y_test=data.y_test, num_classes=2)
    res = run_ffw(nobias, base_model=vanilla, config={**FAST, "use_mined_bias": True,
                                                      "mining": {"iterations": 30, "batch_size": 64}},
                  device="cpu")
    assert res.extra["mined_bias"] is True and res.extra["bias_attributes"] == ["bias"]


# --- bias-ranked structured pruning and head re-fitting (structured_rule="bias-rank", refit_head) --------
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
