"""Per-pixel conditional depthwise convolution (CC-FPSE, Liu et al., NeurIPS 2019).

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


def _windows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The zero-padded input and its ``k*k`` shifted ``[B, C, H, W]`` views, in kernel order."""
    h, w = x.shape[2:]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad))
    return xp, [xp[:, :, dy : dy + h, dx : dx + w] for dy in range(k) for dx in range(k)]


def _forward(x: torch.Tensor, kern: torch.Tensor, k: int, in_place: bool) -> torch.Tensor:
    """The sum over the window; ``kern`` is ``[B, C, k*k, H, W]``."""
    _, windows = _windows(x, k)
    out = windows[0] * kern[:, :, 0]
    for d in range(1, k * k):
        if in_place:
            out.addcmul_(windows[d], kern[:, :, d])
        else:  # export form (tracing): plain multiply and add
            out = out + windows[d] * kern[:, :, d]
    return out


class _ConditionalDepthwise(torch.autograd.Function):
    """Hand-written backward: autograd through ``k*k`` shifted slices would zero-fill a full-size gradient buffer
    per slice (for the kernels: ``k*k`` buffers of the kernels' size); here each gradient is written once."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kern: torch.Tensor, k: int) -> torch.Tensor:
        ctx.save_for_backward(x, kern)
        ctx.k = k
        return _forward(x, kern, k, in_place=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, kern = ctx.saved_tensors
        k = ctx.k
        h, w = x.shape[2:]
        grad = grad.contiguous()
        grad_x = grad_kern = None
        if ctx.needs_input_grad[1]:
            _, windows = _windows(x, k)
            grad_kern = torch.empty_like(kern)
            for d in range(k * k):
                torch.mul(grad, windows[d], out=grad_kern[:, :, d])
        if ctx.needs_input_grad[0]:
            pad = k // 2
            grad_xp = grad.new_zeros(grad.shape[0], grad.shape[1], h + 2 * pad, w + 2 * pad)
            for d in range(k * k):
                dy, dx = divmod(d, k)
                grad_xp[:, :, dy : dy + h, dx : dx + w].addcmul_(grad, kern[:, :, d])
            grad_x = grad_xp[:, :, pad : pad + h, pad : pad + w]
        return grad_x, grad_kern, None


def conditional_depthwise_conv2d(x: torch.Tensor, kernels: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """``x [B, C, H, W]``, ``kernels [B, C*k*k, H, W]`` -> ``[B, C, H, W]`` (see the module docstring).

    With gradients: a custom autograd function (one write per gradient); while tracing (ONNX or TorchScript
    export): plain multiply-adds, the same sum in the same order."""
    k = kernel_size
    if x.dim() != 4:
        raise ShapeError(f"conditional depthwise conv: input must be [B, C, H, W], got {tuple(x.shape)}")
    b, c, h, w = x.shape
    if tuple(kernels.shape) != (b, c * k * k, h, w):
        raise ShapeError(f"conditional depthwise conv: kernels have shape {tuple(kernels.shape)}, expected "
                         f"[{b}, {c * k * k}, {h}, {w}] (one {k}x{k} kernel per channel and pixel of the "
                         f"{tuple(x.shape)} input)")
    kern = kernels.view(b, c, k * k, h, w)
    if torch.jit.is_tracing():
        return _forward(x, kern, k, in_place=False)
    if torch.is_grad_enabled() and (x.requires_grad or kernels.requires_grad):
        return _ConditionalDepthwise.apply(x, kern, k)
    return _forward(x, kern, k, in_place=True)


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
