"""Bias probes (core/mitigate/probes.py): the MI estimator, the privacy head, η² per feature."""
import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate.probes import PrivacyHead, bias_variance_share, empirical_mutual_information, train_privacy_head

torch.set_num_threads(1)


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


def test_bias_variance_share_by_hand():
    b = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[0.0, 1.0, 5.0], [0.0, -1.0, 5.0], [2.0, 1.0, 5.0], [2.0, -1.0, 5.0]])
    # column 0 is the bias itself (η² = 1), column 1 is independent of it (0), column 2 is constant (0)
    assert torch.allclose(bias_variance_share(z, b, num_values=2), torch.tensor([1.0, 0.0, 0.0]))
    z2 = torch.tensor([[0.0], [2.0], [2.0], [4.0]])   # group means 1 and 3, total var 2, between var 1
    assert bias_variance_share(z2, b, num_values=2).item() == pytest.approx(0.5)
