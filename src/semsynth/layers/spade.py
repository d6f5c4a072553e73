"""SPADE: spatially-adaptive denormalisation (Park et al. 2019).

    y = norm(x) * (1 + gamma(S)) + beta(S),   gamma, beta = convs over a shared conv+ReLU of the label map S

The label map is resized to the feature map with nearest neighbour. Used by SC-GAN's learned shortcuts
(official code: 3x3 convs, 128 hidden channels, sync-batch parameter-free norm).

Fast path: the shared conv reads a one-hot map, and a k x k convolution of a one-hot map is a sum of k*k
shifted look-ups of the kernel's columns (one per tap) — the same numbers without the ``C * k * k``
multiply-adds per output value. When the caller passes the class ids (:func:`one_hot_ids`), SPADE takes this
path; the result equals the convolution up to floating-point summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .norm import param_free_norm


def one_hot_ids(semantic: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    """The class ids ``[B, H, W]`` of a semantic map whose first ``num_classes`` channels are exactly one-hot,
    else ``None`` (soft or blurred maps take the convolution path)."""
    lab = semantic[:, :num_classes]
    if lab.requires_grad or lab.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        return None
    mx, ids = lab.max(1)
    if not (bool((mx == 1).all()) and bool((lab.sum(1) == 1).all())):
        return None
    return ids


def _embedding_conv(ids: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(one_hot(ids), weight, padding=k//2)`` as k*k shifted embedding look-ups; ``[B, Cout, H, W]``."""
    cout, c, kh, kw = weight.shape
    b, h, w = ids.shape
    # one table per tap: row j = the tap's weights for class j; an extra zero row stands for the zero padding
    tables = torch.cat([weight.permute(2, 3, 1, 0), weight.new_zeros(kh, kw, 1, cout)], 2)  # [kh, kw, C+1, Cout]
    padded = F.pad(ids, (kw // 2, kw // 2, kh // 2, kh // 2), value=c)
    out = None
    for dy in range(kh):
        for dx in range(kw):
            look = F.embedding(padded[:, dy : dy + h, dx : dx + w], tables[dy, dx])  # [B, H, W, Cout]
            out = look if out is None else out + look
    if bias is not None:
        out = out + bias
    return out.permute(0, 3, 1, 2)


class SPADE(nn.Module):
    """``forward(x [B, C, H, W], semantic [B, L, H0, W0], ids=None) -> [B, C, H, W]``.

    ``ids`` (``[B, H0, W0]``, from :func:`one_hot_ids`): the class ids behind the first ``onehot_channels``
    channels of ``semantic`` (all of them by default), which selects the look-up path for the shared conv;
    channels after those (an instance-edge map) are convolved as usual.
    """

    def __init__(self, num_features: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "syncbatch", onehot_channels: int | None = None) -> None:
        super().__init__()
        self.num_features, self.label_channels = num_features, label_channels
        self.onehot_channels = label_channels if onehot_channels is None else onehot_channels
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm, num_features)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)

    def shared(self, semantic: torch.Tensor, ids: torch.Tensor | None, size: tuple[int, int],
               dtype: torch.dtype) -> torch.Tensor:
        """``mlp_shared`` on the label map resized (nearest) to ``size``."""
        if ids is None:
            return self.mlp_shared(F.interpolate(semantic.to(dtype), size=size, mode="nearest"))
        conv, k = self.mlp_shared[0], self.onehot_channels
        ids = F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()
        weight = conv.weight.to(dtype)
        out = _embedding_conv(ids, weight[:, :k], conv.bias.to(dtype) if conv.bias is not None else None)
        if k < self.label_channels:  # the instance-edge channel(s)
            rest = F.interpolate(semantic[:, k:].to(dtype), size=size, mode="nearest")
            out = out + F.conv2d(rest, weight[:, k:], None, 1, conv.padding)
        return F.relu(out)

    def forward(self, x: torch.Tensor, semantic: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        if semantic.dim() != 4 or semantic.shape[1] != self.label_channels:
            raise ShapeError(
                f"SPADE: label map has shape {tuple(semantic.shape)}, expected [B, {self.label_channels}, H, W]"
            )
        normed = self.param_free_norm(x)
        actv = self.shared(semantic, ids, tuple(x.shape[2:]), normed.dtype)
        return torch.addcmul(self.mlp_beta(actv), normed, 1 + self.mlp_gamma(actv))
