"""The shared training loop's pieces (core/mitigate/training.py): samplers, oversampling, augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import SpurAuditError
from core.mitigate.training import IndexSampler, lambda_up_for_fraction, oversample_weights, random_shift


def test_weighted_sampler_realises_the_requested_oversampling():
    n, lam = 200, 8.0
    mined = torch.zeros(n, dtype=torch.bool)
    mined[:10] = True
    sampler = IndexSampler(n, 100, weights=oversample_weights(n, mined, lam), seed=0)
    counts = torch.bincount(torch.cat([sampler.next() for _ in range(600)]), minlength=n).double()
    ratio = counts[mined].mean() / counts[~mined].mean()
    assert ratio == pytest.approx(lam, rel=0.08)
    # expected share of mined draws: 10*8 / (10*8 + 190)
    assert float(counts[mined].sum() / counts.sum()) == pytest.approx(80 / 270, abs=0.01)


def test_uniform_sampler_covers_every_sample_once_per_epoch_and_is_seeded():
    s = IndexSampler(50, 10, seed=3)
    epoch = torch.cat([s.next() for _ in range(5)])
    assert sorted(epoch.tolist()) == list(range(50))
    a = torch.cat([IndexSampler(50, 7, seed=1).next() for _ in range(3)])
    b = torch.cat([IndexSampler(50, 7, seed=1).next() for _ in range(3)])
    assert torch.equal(a, b)


def test_oversample_weights_accepts_indices_and_validates():
    w = oversample_weights(5, np.array([1, 3]), 4.0)
    assert w.tolist() == [1.0, 4.0, 1.0, 4.0, 1.0]
    with pytest.raises(SpurAuditError):
        oversample_weights(5, np.array([7]), 4.0)
    with pytest.raises(SpurAuditError):
        oversample_weights(5, np.array([1]), 0.0)


def test_lambda_up_table():
    assert [lambda_up_for_fraction(f) for f in (0.005, 0.01, 0.02, 0.05)] == [80, 50, 30, 10]
    assert lambda_up_for_fraction(0.009) == 50 and lambda_up_for_fraction(0.2) == 10


def test_random_shift_translates_each_image_and_is_seeded():
    x = torch.zeros(64, 2, 9, 9)
    x[:, :, 4, 4] = 1.0                      # one bright pixel in the centre of every image
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, generator=g)
    assert out.shape == x.shape and torch.equal(x[:, :, 4, 4], torch.ones(64, 2))   # input untouched
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert out.sum() == x.sum()                                 # nothing falls off with a centred pixel
    assert int((rows - 4).abs().max()) <= 2 and int((cols - 4).abs().max()) <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10     # offsets vary per image
    assert torch.equal(out[:, 0], out[:, 1])                    # channels move together
    again = random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert random_shift(x, 0) is x
