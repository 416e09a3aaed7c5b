"""Synthetic images with known object masks for the audit tests."""
import numpy as np
import torch


def red_square_images(n=4, size=12, side=3, background=(0.0, 0.0, 0.0), seed=0, color=(1.0, 0.0, 0.0)):
    """n images (n, 3, size, size): black (or given) background with a pure red (or ``color``) square at
    a seeded position; returns images and the boolean object masks (n, size, size)."""
    rng = np.random.default_rng(seed)
    imgs = torch.zeros(n, 3, size, size)
    imgs += torch.tensor(background, dtype=torch.float32).view(1, 3, 1, 1)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        t, l_ = rng.integers(0, size - side + 1, size=2)
        imgs[i, :, t:t + side, l_:l_ + side] = torch.tensor(color).view(3, 1, 1)
        masks[i, t:t + side, l_:l_ + side] = True
    return imgs, masks
