"""Per-pixel conditional depthwise convolution (CC-FPSE, Liu et al., NeurIPS 2019, Sec. 3.1).

    y_c(p) = sum_{d in k x k window} K_{c,d}(p) * x_c(p + d)

Every pixel ``p`` and channel ``c`` has its own ``k x k`` kernel ``K_c(p)``, predicted from the label map by a
network of the caller's (the layer has no parameters). Stride 1, zero padding ``k // 2``: the size is kept.

Kernel layout: ``kernels[:, c * k*k + d]`` with ``d = dy * k + dx`` the row-major position in the window (the
channel order of ``torch.nn.functional.unfold``, which the official code uses). The sum is computed as ``k*k``
shifted multiply-adds over one padded copy of ``x``: the same products as unfolding ``x`` into a
``[B, C*k*k, H, W]`` tensor and reducing it, without allocating that tensor (only the kernels have that size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError


def conditional_depthwise_conv2d(x: torch.Tensor, kernels: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """``x [B, C, H, W]``, ``kernels [B, C*k*k, H, W]`` -> ``[B, C, H, W]`` (see the module docstring)."""
    k = kernel_size
    if x.dim() != 4:
        raise ShapeError(f"conditional depthwise conv: input must be [B, C, H, W], got {tuple(x.shape)}")
    b, c, h, w = x.shape
    if tuple(kernels.shape) != (b, c * k * k, h, w):
        raise ShapeError(f"conditional depthwise conv: kernels have shape {tuple(kernels.shape)}, expected "
                         f"[{b}, {c * k * k}, {h}, {w}] (one {k}x{k} kernel per channel and pixel of the "
                         f"{tuple(x.shape)} input)")
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad))
    kern = kernels.view(b, c, k * k, h, w)
    out = None
    for d in range(k * k):
        dy, dx = divmod(d, k)
        window = xp[:, :, dy : dy + h, dx : dx + w]
        if out is None:
            out = window * kern[:, :, d]
        else:
            out.addcmul_(window, kern[:, :, d])
    return out


class ConditionalDepthwiseConv2d(nn.Module):
    """``forward(x [B, C, H, W], kernels [B, C*k*k, H, W]) -> [B, C, H, W]``; no parameters, no state."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size = {kernel_size} is out of range; valid: an odd integer >= 1")
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        return conditional_depthwise_conv2d(x, kernels, self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"
