"""SPADE: spatially-adaptive denormalisation (Park et al. 2019).

    y = norm(x) * (1 + gamma(S)) + beta(S),   gamma, beta = convs over a shared conv+ReLU of the label map S

The label map is resized to the feature map with nearest neighbour. Used by SC-GAN's learned shortcuts
(official code: 3x3 convs, 128 hidden channels, sync-batch parameter-free norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .norm import param_free_norm


class SPADE(nn.Module):
    """``forward(x [B, C, H, W], semantic [B, L, H0, W0]) -> [B, C, H, W]``."""

    def __init__(self, num_features: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "syncbatch") -> None:
        super().__init__()
        self.num_features, self.label_channels = num_features, label_channels
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm, num_features)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        if semantic.dim() != 4 or semantic.shape[1] != self.label_channels:
            raise ShapeError(
                f"SPADE: label map has shape {tuple(semantic.shape)}, expected [B, {self.label_channels}, H, W]"
            )
        normed = self.param_free_norm(x)
        seg = F.interpolate(semantic.to(normed.dtype), size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return torch.addcmul(self.mlp_beta(actv), normed, 1 + self.mlp_gamma(actv))
