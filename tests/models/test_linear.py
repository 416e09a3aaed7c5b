"""Linear heads on cached features: the shared cross-entropy loop, probes, the standardized fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.models import ProbeConfig, build_model, set_head, train_linear_probe
from core.models.linear import fit_linear, fit_standardized_linear, linear_accuracy
from core.models.optim import make_optimizer

torch.set_num_threads(1)


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


def test_fit_linear_stops_when_the_callback_says_so_and_skips_small_batches():
    z, y, _ = _planted_features(130, 0)
    head = nn.Linear(6, 3)
    seen = []
    opt = make_optimizer("sgd", head.parameters(), lr=0.1)
    ran = fit_linear(head, z, y, optimizer=opt, epochs=10, batch_size=64, generator=torch.Generator().manual_seed(0),
                     min_batch=3, on_epoch=lambda e, loss: seen.append((e, loss)) or e == 4)
    assert ran == 4 and [e for e, _ in seen] == [1, 2, 3, 4]
    assert seen[-1][1] < seen[0][1]                                   # it learns
    assert linear_accuracy(head, z, y) > 0.9
    # one full-batch step per epoch uses no random state: two runs from the same start agree exactly
    heads = []
    for _ in range(2):
        h = nn.Linear(6, 3)
        with torch.no_grad():
            h.weight.zero_()
            h.bias.zero_()
        fit_linear(h, z.numpy().astype(np.float16), y, optimizer=make_optimizer("adam", h.parameters(), lr=0.05),
                   epochs=5, batch_size=None)
        heads.append(h.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])


def test_linear_probe_on_cached_features(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(4, 8))
    y = np.repeat(np.arange(4), 50)
    feats = (centers[y] + rng.normal(0, 1, size=(200, 8))).astype(np.float16)
    mm_path = tmp_path / "features.npy"
    np.save(mm_path, feats)
    mm = np.load(mm_path, mmap_mode="r")  # float16 memmap, as in the feature store
    vy = np.repeat(np.arange(4), 10)
    vfeats = (centers[vy] + rng.normal(0, 1, size=(40, 8))).astype(np.float32)
    head = train_linear_probe(mm, y, num_classes=4, config=ProbeConfig(epochs=10), val=(vfeats, vy), device="cpu")
    assert head.in_features == 8 and head.out_features == 4
    with torch.no_grad():
        acc = float((head(torch.from_numpy(vfeats)).argmax(1).numpy() == vy).mean())
    assert acc > 0.9
    # deterministic, and the tensor path agrees with the memmap path
    head2 = train_linear_probe(torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(y), num_classes=4,
                               config=ProbeConfig(epochs=10), val=(vfeats, vy), device="cpu")
    assert ProbeConfig().epochs == 20 and ProbeConfig().lr == 0.01 and ProbeConfig().batch_size == 128
    torch.testing.assert_close(head.weight, head2.weight)
    model = build_model("mlp", num_classes=2, hidden=[8], input_size=[3, 4, 4])
    set_head(model, head)
    assert model.num_classes == 4 and model(torch.rand(2, 3, 4, 4)).shape == (2, 4)
    with pytest.raises(SpurAuditError, match="class indices"):
        train_linear_probe(mm, y + 4, num_classes=4, device="cpu")



def test_fit_standardized_linear_reads_raw_features_and_ignores_constant_ones():
    z, y, _ = _planted_features(400, 0)
    z = z * torch.tensor([1.0, 1.0, 100.0, 0.01, 5.0, 1.0]) + 3.0   # standardisation is folded in: scale-free
    head = fit_standardized_linear(z[:300], y[:300], num_values=3)
    with torch.no_grad():
        acc = float((head(z[300:]).argmax(1) == y[300:]).float().mean())
    assert acc > 0.95
    assert torch.all(head.weight[:, 5] == 0)                          # constant feature: weight stays 0
