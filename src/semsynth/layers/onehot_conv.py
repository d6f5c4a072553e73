"""A 3x3 convolution of a one-hot label map as table look-ups, with its exact weight gradient (issue 13).

For a one-hot map ``S [B, L, H, W]`` with class ids ``c(q)`` and a kernel ``W [C, L, 3, 3]`` (stride 1, zero
padding 1, no bias), ``conv(S)(q) = sum_t W[:, c(q + t), t]`` over the taps ``t`` whose pixel ``q + t`` is inside
the image. Where the 3x3 window of ``q`` is one class ``c`` and inside the image that is ``sum_t W[:, c, t]``, a
per-class vector (one look-up); on the band (the window holds two classes, or crosses the border) it is 9 embedding
look-ups. Cost per pixel: ``C`` (interior) or ``9 C`` (band) instead of ``9 L C`` multiply-adds.

The map carries no gradient; the kernel's is ``dW[:, c, t] = sum_q G(q) [c(q + t) = c]`` (``G = dL/d out``): nine
``index_add`` of ``G`` by the class ids shifted by each tap, ``9 C`` additions per pixel instead of ``9 L C``.

Equal to ``F.conv2d(S, W, padding=1)`` and its weight gradient within float rounding
(``tests/layers/test_onehot_conv.py``, float32 and float64, gradcheck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .spade_piecewise import OFFSETS, pool_same


def _taps(idl: torch.Tensor, B: int, H: int, W: int, L: int) -> torch.Tensor:
    """``[B * H * W, 9]`` long: the class id at each tap of each pixel (``L`` outside the image), tap-major order
    of :data:`OFFSETS` (as the kernel's ``[3, 3]`` flattened)."""
    idsp = F.pad(idl.view(B, H, W), (1, 1, 1, 1), value=L)
    return torch.stack([idsp[:, 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W].reshape(-1) for dy, dx in OFFSETS], 1)


class OneHotConv3x3(torch.autograd.Function):
    """``F.conv2d(onehot(ids), weight, padding=1)`` for float class ids ``[B, 1, H, W]`` and ``weight [C, L, 3,
    3]``; differentiable in ``weight`` only."""

    @staticmethod
    def forward(ctx, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        B, _, H, W = ids.shape
        C, L = weight.shape[:2]
        idl = ids.reshape(-1).long()
        out = weight.sum((2, 3)).index_select(1, idl)  # [C, B*H*W]: the value of a region interior
        band = torch.ones(B, H, W, dtype=torch.bool, device=ids.device)
        if H > 2 and W > 2:
            band[:, 1:-1, 1:-1] = ~pool_same(ids, 3)[:, 0]
        bidx = band.view(-1).nonzero().squeeze(1)
        if bidx.numel():
            emb = torch.cat([weight.permute(2, 3, 1, 0).reshape(9, L, C), weight.new_zeros(9, 1, C)], 1)
            taps = _taps(idl, B, H, W, L).index_select(0, bidx)
            taps += torch.arange(9, device=ids.device) * (L + 1)
            out.index_copy_(1, bidx, F.embedding_bag(taps, emb.reshape(9 * (L + 1), C), mode="sum").t())
        ctx.save_for_backward(ids)
        ctx.num_classes = L
        return out.view(C, B, H, W).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ids,) = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None
        B, _, H, W = ids.shape
        L, C = ctx.num_classes, grad.shape[1]
        # rows of pixels, row-major: at batch 1 the reshape is a column-major view, and index_add_ then falls back
        # to a per-element scatter (25x slower than the one transposing copy)
        g = grad.permute(0, 2, 3, 1).reshape(B * H * W, C).contiguous()
        taps = _taps(ids.reshape(-1).long(), B, H, W, L)
        d = g.new_zeros(9, L + 1, C)  # row L of each tap: the padding, dropped
        for t in range(9):
            d[t].index_add_(0, taps[:, t], g)
        return None, d[:, :L].view(3, 3, L, C).permute(3, 2, 0, 1).contiguous()


def onehot_conv3x3(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(onehot(ids), weight, padding=1)`` (no bias) by look-ups, for float class ids ``[B, 1, H, W]`` and
    a kernel ``[C, L, 3, 3]``; differentiable in ``weight`` (see the module docstring)."""
    return OneHotConv3x3.apply(ids, weight)
