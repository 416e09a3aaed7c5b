"""Tiny synthetic data with a planted cue for the mitigation tests (CPU, seeded, fast).

Images 3x8x8: the class is a shape (0: vertical bar, 1: horizontal bar, 2: a 2x2 dot at the centre ...),
the bias is the background colour (value b -> colour b). A fraction ``rho`` of the training images is
bias-aligned (bias == class); val/test are uniform.
"""
from __future__ import annotations

import torch

COLORS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1]])


def shape_mask(c: int, jitter: int) -> torch.Tensor:
    m = torch.zeros(8, 8)
    j = jitter % 3
    if c == 0:
        m[1:7, 2 + j] = 1
    elif c == 1:
        m[2 + j, 1:7] = 1
    elif c == 2:
        m[2 + j:4 + j, 2 + j:4 + j] = 1
    else:
        for i in range(1, 7):
            m[i, i] = 1
    return m


def make_split(n: int, k: int, rho: float, seed: int, noise: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    y = y[torch.randperm(n, generator=g)]
    aligned = torch.rand(n, generator=g) < rho
    other = (y + 1 + torch.randint(0, k - 1, (n,), generator=g)) % k
    b = torch.where(aligned, y, other)
    x = torch.empty(n, 3, 8, 8)
    for i in range(n):
        m = shape_mask(int(y[i]), int(torch.randint(0, 3, (1,), generator=g)))
        bg = COLORS[int(b[i])][:, None, None] * 0.6
        x[i] = bg * (1 - m) + m
    x = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y, b, b == y


def tiny_data(*, k: int = 2, n_train: int = 400, n_val: int = 200, n_test: int = 200, rho: float = 0.9, seed: int = 0):
    from core.mitigate.data import MitigationData

    xt, yt, bt, at = make_split(n_train, k, rho, seed)
    xv, yv, bv, av = make_split(n_val, k, 1.0 / k, seed + 1)
    xs, ys, bs, as_ = make_split(n_test, k, 1.0 / k, seed + 2)
    return MitigationData(x_train=xt, y_train=yt, bias_train=bt, aligned_train=at,
                          x_val=xv, y_val=yv, bias_val=bv, aligned_val=av,
                          x_test=xs, y_test=ys, bias_test=bs, aligned_test=as_, num_classes=k)


def tiny_model(k: int = 2, seed: int = 0):
    from core.models.registry import build_model

    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=k, widths=(8, 16, 32))


def train_vanilla(model, data, *, steps: int = 150, lr: float = 1e-2, seed: int = 0):
    """Plain Adam ERM on the training split (in place); returns the model in eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(data.y_train), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
