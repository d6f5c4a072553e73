"""``shift + BN(x) * scale``, the modulation of SPADE and SCN, with a backward that recomputes ``BN(x)``.

Written as two autograd operators (batch norm, then ``addcmul``), a training forward keeps the normalised map
``BN(x)`` for the gradient of ``scale``, next to the input ``x`` that batch norm itself keeps: one map of the
input's size more per normalisation layer (at SC-GAN's ADE20K preset, 77 MiB of the 527 MiB a generator training
step holds at the end of its forward). :func:`modulated_batch_norm` is one operator that keeps ``x``, the batch
mean and inverse standard deviation (one value per channel) and ``scale``; its backward computes ``BN(x)`` again
from them (one element-wise pass) and hands batch norm's own backward (``aten.native_batch_norm_backward``) the
gradient of the normalised map. Same forward (the same ``torch.native_batch_norm`` call, the same running-statistics
update), the same gradients up to the rounding of the recomputed map (``tests/layers/test_modulated_norm.py``).

SCN's scale and shift are 1x1 convolutions of the routing map (``n`` channels) with its candidate table ``A``:
:func:`routed_batch_norm` computes them inside the same operator and keeps the routing map and ``A`` instead of
``1 + scale``; its backward computes the scale again (a 1x1 convolution of ``n`` channels, a small fraction of the
block's work), which saves one more map of the input's size per SCN layer (47 MiB at the ADE20K preset).

It applies to a plain ``nn.BatchNorm2d`` without affine parameters in training mode (batch statistics) with
gradients recorded, in eager mode without autocast; everything else (eval mode, instance norm, ``nn.SyncBatchNorm``
under DDP, autocast, ``torch.compile``) runs the two operators as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norm import SyncableBatchNorm2d
from .recompute import rebuildable


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


def _routed_modulation(routing: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SCN's per-pixel ``(1 + scale, shift)`` from the routing map ``[B, n, H, W]`` and the table ``A`` ``[n, 2C]``
    (row ``i`` = ``[scale_i | shift_i]``): ``V^T A`` per pixel, as two 1x1 convolutions."""
    c = table.shape[1] // 2
    return _routed_1x1(routing, table[:, :c]).add_(1), _routed_1x1(routing, table[:, c:])


def _routed_1x1(routing: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``V^T rows`` per pixel: the 1x1 convolution of the routing map ``[B, n, H, W]`` with ``rows`` ``[n, C]``."""
    return F.conv2d(routing, rows.t()[:, :, None, None])


def _routed_forward(x, routing, table, running_mean, running_var, momentum: float, eps: float,
                    negative_slope: float | None) -> tuple[torch.Tensor, ...]:
    """``(y, BN(x), 1 + scale, mean, invstd)`` of :class:`_RoutedModulatedBatchNorm`. Without running statistics
    (None) the same values: batch norm's output and statistics do not depend on them."""
    scale, shift = _routed_modulation(routing, table)
    normed, mean, invstd = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
    out = shift.addcmul_(normed, scale)  # written over the shift, which nothing else reads
    if negative_slope is not None:
        F.leaky_relu(out, negative_slope, inplace=True)
    return out, normed, scale, mean, invstd


class _LastPass:
    """The ``(y, BN(x), 1 + scale)`` of the latest :func:`_routed_output` of one operator, until its backward takes
    them: the conv after it rebuilds ``y`` just before that backward, which needs the same three maps."""

    __slots__ = ("maps",)

    def __init__(self) -> None:
        self.maps = None

    def take(self) -> tuple | None:
        maps, self.maps = self.maps, None
        return maps


def _routed_output(x, routing, table, eps: float, negative_slope: float | None, last: _LastPass) -> torch.Tensor:
    """The output of :class:`_RoutedModulatedBatchNorm` computed again, the running statistics untouched."""
    out, normed, scale = _routed_forward(x, routing, table, None, None, 0.0, eps, negative_slope)[:3]
    if negative_slope is not None:  # only then does the operator's backward need them
        last.maps = out, normed, scale
    return out


class _RoutedModulatedBatchNorm(torch.autograd.Function):
    """``y = shift + native_batch_norm(x) * (1 + scale)`` with ``[scale | shift] = V^T A``, then (given a slope) a
    LeakyReLU; saves ``x``, the batch statistics, the routing map ``V`` and ``A`` (no map of ``x``'s size besides
    ``x``). With the activation, backward needs ``y`` again for the activation's gradient: it takes the pass that
    rebuilt ``y`` for the conv after it (:func:`_routed_output`), or computes it (the same operators: the same
    values), and takes ``BN(x)`` and ``1 + scale`` from that pass."""

    @staticmethod
    def forward(ctx, x, routing, table, running_mean, running_var, momentum: float, eps: float,
                negative_slope: float | None, last: _LastPass):
        out, _, _, mean, invstd = _routed_forward(x, routing, table, running_mean, running_var, momentum, eps,
                                                  negative_slope)
        ctx.save_for_backward(x, mean, invstd, routing, table)
        ctx.eps, ctx.negative_slope, ctx.last = eps, negative_slope, last
        return out

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, routing, table = ctx.saved_tensors
        need_x, need_routing, need_table = ctx.needs_input_grad[:3]
        c = table.shape[1] // 2
        d_x = d_routing = d_table = normed = scale = None
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if ctx.negative_slope is not None:  # the gradient before the activation, from the sign of y (LReLU's rule)
            out, normed, scale = ctx.last.take() or \
                _routed_forward(x, routing, table, None, None, 0.0, ctx.eps, ctx.negative_slope)[:3]
            grad = torch.ops.aten.leaky_relu_backward.grad_input(grad, out, ctx.negative_slope, True, grad_input=out)
            del out
        if need_routing or need_table:  # d(scale) = BN(x) * grad, BN(x) again from the batch statistics
            if normed is None:
                normed = (x - mean.view(shape)).mul_(invstd.view(shape))
            d_scale = normed.mul_(grad)
            del normed
            if need_routing:  # the 1x1 convolutions' input gradient: A_scale d(scale) + A_shift grad per pixel
                d_routing = F.conv2d(d_scale, table[:, :c, None, None]).add_(F.conv2d(grad, table[:, c:, None, None]))
            if need_table:  # their weight gradient: sum over pixels of V (x) d(scale), V (x) grad
                v = routing.flatten(2)
                d_table = torch.cat([torch.einsum("bnp,bcp->nc", v, d_scale.flatten(2)),
                                     torch.einsum("bnp,bcp->nc", v, grad.flatten(2))], 1)
            del d_scale
        if need_x:
            scale = _routed_1x1(routing, table[:, :c]).add_(1) if scale is None else scale
            d_x = torch.ops.aten.native_batch_norm_backward(scale.mul_(grad), x, None, None, None, mean, invstd,
                                                            True, ctx.eps, [True, False, False])[0]
        return d_x, d_routing, d_table, None, None, None, None, None, None


def _context_applies(norm: nn.Module, x: torch.Tensor) -> bool:
    """A training-mode batch norm without affine parameters, recording gradients, eager, no autocast."""
    return (type(norm) in (nn.BatchNorm2d, SyncableBatchNorm2d) and norm.training and not norm.affine
            and norm.track_running_stats and norm.momentum is not None and torch.is_grad_enabled()
            and x.dim() == 4 and x.numel() > x.shape[1] and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting())


def _applies(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> bool:
    return (_context_applies(norm, x) and (x.requires_grad or scale.requires_grad or shift.requires_grad)
            and scale.shape == x.shape and shift.shape == x.shape and x.dtype == scale.dtype == shift.dtype)


def modulated_batch_norm(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                         modulation: tuple | None = None) -> torch.Tensor:
    """``torch.addcmul(shift, norm(x), scale)`` (``scale`` is SPADE's and SCN's ``1 + gamma``); where ``norm`` is a
    training-mode batch norm without affine parameters, by :class:`_ModulatedBatchNorm` (module docstring).

    ``modulation``: ``(sources, fn)`` with ``fn(*sources)`` giving ``(scale, shift)`` again exactly (SPADE's
    piecewise recipe); the output is then :func:`~.recompute.rebuildable` from ``x`` and those sources, so the conv
    after it keeps them instead inside a :func:`~.recompute.rebuild_scope`."""
    if not _applies(norm, x, scale, shift):
        return torch.addcmul(shift, norm(x), scale)
    norm.num_batches_tracked.add_(1)  # as nn.BatchNorm2d.forward does in training mode
    out = _ModulatedBatchNorm.apply(x, scale, shift, norm.running_mean, norm.running_var, norm.momentum, norm.eps)
    if modulation is None:
        return out
    sources, fn = modulation
    return rebuildable(out, (x, norm.eps, fn, *sources), _modulated_output)


def _modulated_output(x: torch.Tensor, eps: float, fn, *sources) -> torch.Tensor:
    """The output of :class:`_ModulatedBatchNorm` computed again (batch statistics, running ones untouched)."""
    scale, shift = fn(*sources)
    normed = torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)[0]
    return torch.addcmul(shift, normed, scale)


def routed_batch_norm(norm: nn.Module, x: torch.Tensor, routing: torch.Tensor, table: torch.Tensor,
                      negative_slope: float | None = None) -> torch.Tensor:
    """SCN's modulation: ``shift + norm(x) * (1 + scale)`` with ``[scale | shift] = V^T A`` per pixel, for the
    routing map ``V`` ``[B, n, H, W]`` and the table ``A`` ``[n, 2C]``, then ``LeakyReLU(negative_slope)`` where
    one is given; where ``norm`` is a training-mode batch norm without affine parameters, by
    :class:`_RoutedModulatedBatchNorm` (module docstring), else as two 1x1 convs, :func:`modulated_batch_norm` and
    an in-place activation. The output is :func:`~.recompute.rebuildable`: the next layer (a convolution, which
    keeps its input for its weight's gradient) keeps this operator's inputs instead inside a
    :func:`~.recompute.rebuild_scope`."""
    if (_context_applies(norm, x) and (x.requires_grad or routing.requires_grad or table.requires_grad)
            and routing.dim() == 4 and routing.shape[0] == x.shape[0] and routing.shape[2:] == x.shape[2:]
            and table.shape == (routing.shape[1], 2 * x.shape[1]) and x.dtype == routing.dtype == table.dtype):
        norm.num_batches_tracked.add_(1)  # as nn.BatchNorm2d.forward does in training mode
        last = _LastPass()
        out = _RoutedModulatedBatchNorm.apply(x, routing, table, norm.running_mean, norm.running_var,
                                              norm.momentum, norm.eps, negative_slope, last)
        return rebuildable(out, (x, routing, table, norm.eps, negative_slope, last), _routed_output)
    scale, shift = _routed_modulation(routing, table)
    out = modulated_batch_norm(norm, x, scale, shift)
    return out if negative_slope is None else F.leaky_relu(out, negative_slope, inplace=True)
