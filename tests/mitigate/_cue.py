"""Tiny colour-cue data for the DCWP/mining/baseline tests (CPU, seeded, < 1 s to build).

Images 3x8x8. The class (0..k-1) is a faint, noisy bar whose position encodes the class (hard to
learn); the bias is a strong full-image colour (easy to learn). In the training split a fraction
``conflict`` of the samples gets a colour other than its class's (bias-conflicting); val/test are
uniform over colours.
"""
from __future__ import annotations

import torch

COLORS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def make_split(n: int, k: int, conflict: float, seed: int, *, contrast: float = 0.35, noise: float = 0.15):
    """x float32 (n, 3, 8, 8), y int64 (n,), bias int64 (n,), aligned bool (n,).

    ``conflict`` is the exact fraction of conflicting samples (rounded); None = uniform colours.
    """
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    if conflict is None:
        b = torch.randint(0, k, (n,), generator=g)
    else:
        n_conf = int(round(conflict * n))
        conf = torch.zeros(n, dtype=torch.bool)
        conf[torch.randperm(n, generator=g)[:n_conf]] = True
        shift = 1 + torch.randint(0, k - 1, (n,), generator=g)
        b = torch.where(conf, (y + shift) % k, y)
    x = torch.zeros(n, 3, 8, 8)
    x += 0.5 * COLORS[b][:, :, None, None]
    for i in range(n):
        row = 1 + 2 * int(y[i])          # class = which row holds the bar
        x[i, :, row, 1:7] += contrast
    x = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y, b, b == y


def cue_data(*, k: int = 2, n_train: int = 400, n_val: int = 160, n_test: int = 160, conflict: float = 0.05,
             seed: int = 0):
    from core.mitigate.data import MitigationData

    xt, yt, bt, at = make_split(n_train, k, conflict, seed)
    xv, yv, bv, av = make_split(n_val, k, None, seed + 1)
    xs, ys, bs, as_ = make_split(n_test, k, None, seed + 2)
    return MitigationData(x_train=xt, y_train=yt, bias_train=bt, aligned_train=at, x_val=xv, y_val=yv,
                          bias_val=bv, aligned_val=av, x_test=xs, y_test=ys, bias_test=bs, aligned_test=as_,
                          num_classes=k)


def cue_model(k: int = 2, seed: int = 0):
    from core.models.registry import build_model

    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=k, widths=(8, 16, 32))
