"""Iterative-Gaussian (IG) position encoding of label maps (official SC-GAN code, CelebA preset).

The window ``w(a, b) = g(a) g(b)``, ``g(x) = exp(-(x - k//2)^2 / (2 sigma^2))`` is *not* normalised (peak 1,
sum about 13.65 for k=7, sigma=1.5) and is applied depthwise with zero padding. With ``x0`` the input mask,
``x_t = (w * x_{t-1}) . x0`` for t = 1..iters; the result is ``x_iters`` or, when ``relative``,
``x_iters / (x_{iters-1} + 1e-8)``. Inside a region the value grows with the distance to its border.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g[:, None] * g[None, :]


class IterativeGaussian(nn.Module):
    """``forward(mask [B, C, H, W]) -> [B, C, H, W]``; no parameters and no state_dict entries."""

    def __init__(self, size: int = 7, sigma: float = 1.5, iters: int = 1, relative: bool = False) -> None:
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"IG window size must be odd, got {size}")
        self.size, self.sigma, self.iters, self.relative = size, sigma, iters, relative

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        c = mask.shape[1]
        w = gaussian_window(self.size, self.sigma, mask.dtype, mask.device).expand(c, 1, -1, -1)
        prev, x = mask, mask
        for _ in range(self.iters):
            prev, x = x, F.conv2d(x, w, padding=self.size // 2, groups=c) * mask
        if self.relative:
            return x / (prev + 1e-8)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, sigma={self.sigma}, iters={self.iters}, relative={self.relative}"
