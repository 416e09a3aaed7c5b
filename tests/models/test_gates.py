"""Gates: init equals the unpruned model, straight-through gradients, thresholds, masks round trip."""
import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.models.gates import GateConfig, GatedModel, apply_masks, masked_state, masks_of, sparsity_of_masks


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("kind", ["dcwp", "ffw"])
def test_init_equals_unpruned_model_exactly(kind):
    net = tiny_net().eval()
    x = torch.rand(5, 3, 8, 8)
    expected = net(x)
    gated = GatedModel(net, GateConfig(kind=kind))
    gated.eval()
    out, _ = gated(x)
    assert torch.equal(out, expected)
    # In training mode FFW's soft gate at m=0 is min(1, 2σ(0)) = 1 exactly, too.
    if kind == "ffw":
        gated.train()
        net.eval()  # keep BN in eval so only the gate mode differs
        for _, g in gated.gates():
            g.train()
        out, _ = gated(x)
        assert torch.allclose(out, expected)


def test_only_conv_and_linear_weights_are_gated_and_weights_frozen():
    net = tiny_net()
    gated = GatedModel(net, GateConfig(kind="dcwp"))
    names = [n for n, _ in gated.gates()]
    assert names == ["0", "5"]
    assert all(not p.requires_grad for n, p in net.named_parameters() if "scores" not in n)
    assert len(gated.gate_parameters()) == 2


def test_dcwp_straight_through_gradient_reaches_logits():
    torch.manual_seed(1)
    net = tiny_net()
    gated = GatedModel(net, GateConfig(kind="dcwp"))
    gated.train()
    out, reg = gated(torch.rand(4, 3, 8, 8))
    (out.sum() + 1e-3 * reg).backward()
    for p in gated.gate_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_dcwp_regularizer_is_sum_of_logits():
    gated = GatedModel(tiny_net(), GateConfig(kind="dcwp"))
    n = sum(p.numel() for p in gated.gate_parameters())
    assert float(gated.regularizer().detach()) == pytest.approx(1.5 * n)


def test_ffw_gradient_passes_the_clamp():
    net = tiny_net()
    gated = GatedModel(net, GateConfig(kind="ffw"))
    gate = dict(gated.gates())["5"]
    gate.train()
    w = torch.ones(2, 4)
    with torch.no_grad():
        gate.scores.fill_(2.0)  # 2σ(2) > 1: clamped to 1 in the forward pass
    y = gate(w)
    assert torch.equal(y, w)
    y.sum().backward()
    # derivative of 2σ(m/T) at m=2, T=1: 2σ(2)(1-σ(2))
    s = torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(gate.scores.grad, torch.full((2, 4), float(2 * s * (1 - s))))


def test_mask_threshold_and_sparsity():
    gated = GatedModel(tiny_net(), GateConfig(kind="ffw"))
    gate = dict(gated.gates())["5"]
    with torch.no_grad():
        gate.scores.copy_(torch.tensor([[-0.1, 0.0, 0.3, -2.0], [1.0, 1.0, 1.0, 1.0]]))
    masks = gated.mask()
    assert masks["5"].tolist() == [[False, True, True, False], [True] * 4]
    total = sum(m.numel() for m in masks.values())
    assert gated.sparsity() == pytest.approx(2 / total)


def test_structured_gates_are_per_output_channel():
    gated = GatedModel(tiny_net(), GateConfig(kind="ffw", structured=True))
    gate = dict(gated.gates())["0"]
    assert tuple(gate.scores.shape) == (4, 1, 1, 1)
    assert tuple(gated.mask()["0"].shape) == (4, 3, 3, 3)


def test_release_keeps_weights_and_zeroes_pruned_ones_and_round_trips():
    net = tiny_net()
    original = net[5].weight.detach().clone()
    gated = GatedModel(net, GateConfig(kind="dcwp"))
    with torch.no_grad():
        dict(gated.gates())["5"].scores[0, :2] = -1.0
    model = gated.release(trainable=True)
    assert torch.equal(model[5].parametrizations.weight.original, original)  # no reset
    w = model[5].weight
    assert torch.all(w[0, :2] == 0) and torch.equal(w[1], original[1])
    # fine-tuning cannot revive pruned weights
    model.eval()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(torch.rand(3, 3, 8, 8)).sum().backward()
    opt.step()
    assert torch.all(model[5].weight[0, :2] == 0)
    saved = masked_state(model)
    fresh = tiny_net()
    fresh.load_state_dict(saved["state_dict"])
    apply_masks(fresh, saved["masks"])
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(fresh.eval()(x), model.eval()(x))
    assert sparsity_of_masks(masks_of(fresh)) == pytest.approx(2 / (4 * 3 * 9 + 8))


def test_apply_masks_rejects_wrong_layers_and_shapes():
    with pytest.raises(SpurAuditError, match="does not have"):
        apply_masks(tiny_net(), {"nope": torch.ones(2, 4, dtype=torch.bool)})
    with pytest.raises(SpurAuditError, match="shape"):
        apply_masks(tiny_net(), {"5": torch.ones(3, 4, dtype=torch.bool)})


def test_bad_config():
    with pytest.raises(SpurAuditError, match="valid choices"):
        GateConfig(kind="magnitude")


@pytest.mark.parametrize("gumbel_input,keep", [("score", lambda m: torch.sigmoid(m)),
                                               ("sigmoid", lambda m: torch.sigmoid(torch.sigmoid(m)))])
def test_dcwp_sampled_keep_rate_matches_the_parametrisation(gumbel_input, keep):
    """A hard Gumbel-sigmoid sample keeps a weight with probability σ(logit): σ(m) for "score",
    σ(σ(m)) ∈ (0.5, 0.73) for "sigmoid" (the public code's form, never above σ(1) however large m)."""
    from core.models.gates import WeightGate

    torch.manual_seed(0)
    for m in (-2.0, 0.0, 1.5, 6.0):
        gate = WeightGate(torch.Size([200_000]), GateConfig(kind="dcwp", init=m, gumbel_input=gumbel_input))
        gate.train()
        with torch.no_grad():
            rate = float(gate.gate().mean())
        assert rate == pytest.approx(float(keep(torch.tensor(m))), abs=0.01)
        gate.eval()   # the final mask is m >= 0 either way
        with torch.no_grad():
            assert float(gate.gate().mean()) == (1.0 if m >= 0 else 0.0)
    with pytest.raises(SpurAuditError, match="gumbel_input"):
        GateConfig(gumbel_input="logit")
