"""Nearest-neighbour resizing of maps: :func:`resize_nearest` (label maps to a feature map's size, a view where it
can be) and :func:`up2_nearest` (2x up-sampling between generator blocks).

``up2_nearest`` is ``F.interpolate(x, scale_factor=2, mode="nearest")``, faster on the CPU. Every generator of
semsynth doubles its map this way between blocks (and SC-GAN's training step does it again in backward, where
its norms keep the quarter-size map: :func:`~.recompute.saved_as`). PyTorch's CPU kernel (torch 2.14) is slow on
narrow maps in the plain (NCHW) layout: at 1x256x32x32 it took 8-13 ms where the two copies below take 0.5-0.9 ms
(1x512x16x16: 2.2-3.3 ms against 0.3-0.6), while from 64 columns on it is as fast as they are or faster
(docs/benchmarks.md). Its backward (the sum of each 2x2 block of the gradient) is computed here as two strided
sums, 2-4x faster than ``upsample_nearest2d_backward`` at every size measured. It is exactly the interpolation's
forward (nearest copies values) and its gradient up to the order of the four additions per pixel; off the CPU, in
other dtypes, while tracing, scripting or compiling it is ``F.interpolate`` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_nearest(semantic: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(semantic, size, mode="nearest")`` without the work where it is a view: the map itself at the
    same size, a strided view when both size ratios are integers (nearest takes source pixel ``i * ratio`` then).
    In training the view is what autograd keeps for the conv that reads it: at the label map's own size no copy of
    it exists at all (37.8 MiB at 256x256 with 151 classes). While tracing (ONNX, TorchScript) it is the plain
    resize: a traced graph must not keep a view chosen for the size it was traced at."""
    if torch.jit.is_tracing():  # an exported graph takes any size: the plain resize, not a choice made at one size
        return F.interpolate(semantic, size=size, mode="nearest")
    h, w = semantic.shape[2:]
    th, tw = int(size[0]), int(size[1])
    if (h, w) == (th, tw):
        return semantic
    if h % th == 0 and w % tw == 0:
        return semantic[:, :, :: h // th, :: w // tw]
    return F.interpolate(semantic, size=(th, tw), mode="nearest")


NARROW_COLUMNS = 32  # the widest map the copies below replace the CPU kernel for (measured crossover: 32 to 64)


def _applies(x: torch.Tensor) -> bool:
    return (x.dim() == 4 and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not x.is_meta and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling())


def _forward(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    # channels-last (or both layouts at once: the kernel picks from the strides) or wide: the kernel is as fast
    if w > NARROW_COLUMNS or not x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    y = x.new_empty(b, c, h, 2, 2 * w)  # a fresh map (a reshape of an expansion can be a view with stride 0)
    y[:, :, :, 0].view(b, c, h, w, 2).copy_(x.unsqueeze(-1).expand(b, c, h, w, 2))  # each column twice
    y[:, :, :, 1].copy_(y[:, :, :, 0])  # each row twice
    return y.view(b, c, 2 * h, 2 * w)


def _backward(grad: torch.Tensor) -> torch.Tensor:
    b, c, h2, w2 = grad.shape
    if not grad.is_contiguous():
        return torch.ops.aten.upsample_nearest2d_backward(grad, [h2, w2], [b, c, h2 // 2, w2 // 2], 2.0, 2.0)
    pairs = grad.view(b, c, h2 // 2, 2 * w2)
    rows = pairs[..., :w2] + pairs[..., w2:]  # rows 2i and 2i + 1
    return rows[..., 0::2] + rows[..., 1::2]  # columns 2j and 2j + 1


class _Up2Nearest(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _backward(grad)  # differentiable ops: a second derivative goes through them


def up2_nearest(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2.0, mode="nearest")`` for ``x [B, C, H, W]`` (module docstring)."""
    if not _applies(x):
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    if x.requires_grad and torch.is_grad_enabled():
        return _Up2Nearest.apply(x)
    return _forward(x)
