"""``shift + BN(x) * scale``, the modulation of SPADE and SCN, with a backward that recomputes ``BN(x)``.

Written as two autograd operators (batch norm, then ``addcmul``), a training forward keeps the normalised map
``BN(x)`` for the gradient of ``scale``, next to the input ``x`` that batch norm itself keeps: one map of the
input's size more per normalisation layer (at SC-GAN's ADE20K preset, 77 MiB of the 527 MiB a generator training
step holds at the end of its forward). :func:`modulated_batch_norm` is one operator that keeps ``x``, the batch
mean and inverse standard deviation (one value per channel) and ``scale``; its backward computes ``BN(x)`` again
from them (one element-wise pass) and hands batch norm's own backward (``aten.native_batch_norm_backward``) the
gradient of the normalised map. Same forward (the same ``torch.native_batch_norm`` call, the same running-statistics
update), the same gradients up to the rounding of the recomputed map (``tests/layers/test_modulated_norm.py``).

It applies to a plain ``nn.BatchNorm2d`` without affine parameters in training mode (batch statistics) with
gradients recorded, in eager mode without autocast; everything else (eval mode, instance norm, ``nn.SyncBatchNorm``
under DDP, autocast, ``torch.compile``) runs the two operators as before.
"""

from __future__ import annotations

import torch
from torch import nn

from .norm import SyncableBatchNorm2d


class _ModulatedBatchNorm(torch.autograd.Function):
    """``y = shift + native_batch_norm(x) * scale``; saves ``x``, the batch statistics and ``scale`` only."""

    @staticmethod
    def forward(ctx, x, scale, shift, running_mean, running_var, momentum: float, eps: float):
        normed, mean, invstd = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, mean, invstd, scale)
        ctx.eps = eps
        return torch.addcmul(shift, normed, scale)

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, scale = ctx.saved_tensors
        need_x, need_scale, need_shift = ctx.needs_input_grad[:3]
        d_x = d_scale = None
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if need_scale:  # BN(x) again, as native_batch_norm computes it from the batch statistics
            d_scale = (x - mean.view(shape)).mul_(invstd.view(shape)).mul_(grad)
        if need_x:
            d_x = torch.ops.aten.native_batch_norm_backward(grad * scale, x, None, None, None, mean, invstd, True,
                                                            ctx.eps, [True, False, False])[0]
        return d_x, d_scale, grad if need_shift else None, None, None, None, None


def _applies(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> bool:
    return (type(norm) in (nn.BatchNorm2d, SyncableBatchNorm2d) and norm.training and not norm.affine
            and norm.track_running_stats and norm.momentum is not None
            and torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad or shift.requires_grad)
            and x.dim() == 4 and x.numel() > x.shape[1] and scale.shape == x.shape and shift.shape == x.shape
            and x.dtype == scale.dtype == shift.dtype and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting())


def modulated_batch_norm(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``torch.addcmul(shift, norm(x), scale)`` (``scale`` is SPADE's and SCN's ``1 + gamma``); where ``norm`` is a
    training-mode batch norm without affine parameters, by :class:`_ModulatedBatchNorm` (module docstring)."""
    if not _applies(norm, x, scale, shift):
        return torch.addcmul(shift, norm(x), scale)
    norm.num_batches_tracked.add_(1)  # as nn.BatchNorm2d.forward does in training mode
    return _ModulatedBatchNorm.apply(x, scale, shift, norm.running_mean, norm.running_var, norm.momentum, norm.eps)
