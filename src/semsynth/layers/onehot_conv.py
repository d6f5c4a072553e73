"""A k x k convolution of a one-hot label map as table look-ups, with its exact weight gradient (issue 13).

For a one-hot map ``S [B, L, H, W]`` with class ids ``c(q)``, padded by ``p`` (zeros, or by reflection: the
reflection of a one-hot map is the one-hot map of the reflected ids) and a kernel ``W [C, L, k, k]`` (stride 1,
no bias), ``conv(S)(q) = sum_t W[:, c(q + t), t]`` over the ``k^2`` taps ``t`` of the window of ``q`` in the
padded map (a zero-padding position contributes nothing). Where that window is one class ``c`` this is
``sum_t W[:, c, t]``, a per-class vector (one look-up); on the band (the window holds two classes, or zero padding)
it is ``k^2`` embedding look-ups. Cost per pixel: ``C`` (interior) or ``k^2 C`` (band) instead of ``k^2 L C``
multiply-adds: SC-GAN's finest SVG stage (3x3, 151 classes, zero padding) and pix2pixHD's first conv (7x7 after a
reflection pad of 3, 35 Cityscapes classes).

The map carries no gradient; the kernel's is ``dW[:, c, t] = sum_q G(q) [c(q + t) = c]`` (``G = dL/d out``): an
interior pixel of class ``c`` adds ``G(q)`` to every tap of class ``c`` (one ``index_add`` by class for all
interior pixels, added to the ``k^2`` taps once), a band pixel to its own ``k^2`` (class, tap) rows. ``k^2 C``
additions per band pixel and ``C`` per interior pixel instead of ``k^2 L C``.

Equal to ``F.conv2d`` of the (padded) one-hot map and its weight gradient within float rounding
(``tests/layers/test_onehot_conv.py``, float32 and float64, gradcheck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .spade_piecewise import pool_same

_CHUNK = 1 << 15  # pixels per block of look-ups / gradient rows: bounds the temporary index and row copies


class _Windows:
    """The windows of a padded id map ``[B, 1, Hp, Wp]`` (float ids; ``L`` marks zero padding) for a ``k`` x ``k``
    valid convolution: the class at each window's centre (``L + 1`` where the window is not one class: a row
    that collects nothing), the band pixels (flat output indices, sorted) and their ``k^2`` tap ids."""

    def __init__(self, padded: torch.Tensor, k: int, classes: int) -> None:
        hp, wp = padded.shape[2:]
        self.ho, self.wo, self.k, self.classes = hp - k + 1, wp - k + 1, k, classes
        r = k // 2
        same = pool_same(padded, k).reshape(-1)
        centre = padded[:, 0, r : r + self.ho, r : r + self.wo].reshape(-1).long()
        self.centre = torch.where(same, centre, classes + 1)
        self.band = (~same).nonzero().squeeze(1)
        self.flat = padded.reshape(-1).long()
        dy, dx = torch.meshgrid(torch.arange(k, device=padded.device), torch.arange(k, device=padded.device),
                                indexing="ij")
        self.offsets = (dy * wp + dx).reshape(-1)  # tap t = dy * k + dx, as the kernel's [k, k] flattened
        self.hp, self.wp = hp, wp

    def taps(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[n, k^2]`` class ids (``L``: zero padding) of the windows of output ``pixels`` (flat indices)."""
        per_image = self.ho * self.wo
        b, rest = pixels.div(per_image, rounding_mode="floor"), pixels.remainder(per_image)
        y, x = rest.div(self.wo, rounding_mode="floor"), rest.remainder(self.wo)
        base = b * (self.hp * self.wp) + y * self.wp + x
        return self.flat[base[:, None] + self.offsets]


def _pad_ids(ids: torch.Tensor, padding: int, reflect: bool, classes: int) -> torch.Tensor:
    if padding == 0:
        return ids
    if reflect:
        return F.pad(ids, (padding,) * 4, mode="reflect")
    return F.pad(ids, (padding,) * 4, value=float(classes))


class OneHotConv(torch.autograd.Function):
    """``F.conv2d(pad(onehot(ids)), weight, bias)`` for float class ids ``[B, 1, H, W]``, ``weight [C, L, k, k]``
    and ``bias [C]`` or None, padded by ``padding`` with zeros or by reflection (``reflect``); differentiable in
    ``weight`` and ``bias``. The bias is in the tables: in the per-class sums, and in the first tap's rows (every
    window has one first tap)."""

    @staticmethod
    def forward(ctx, ids: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                reflect: bool) -> torch.Tensor:
        B = ids.shape[0]
        C, L, k = weight.shape[0], weight.shape[1], weight.shape[2]
        win = _Windows(_pad_ids(ids, padding, reflect, L), k, L)
        zero = weight.new_zeros(C, 2)  # the padding row and the band's row (overwritten below)
        table = torch.cat([weight.sum((2, 3)), zero], 1)
        if bias is not None:
            table += bias[:, None]
        out = table.index_select(1, win.centre)  # [C, N]: region interiors
        if win.band.numel():
            emb = torch.cat([weight.permute(2, 3, 1, 0).reshape(k * k, L, C), weight.new_zeros(k * k, 1, C)], 1)
            if bias is not None:
                emb[0] += bias
            emb = emb.reshape(k * k * (L + 1), C)
            shift = torch.arange(k * k, device=ids.device) * (L + 1)
            for start in range(0, win.band.numel(), _CHUNK):
                pixels = win.band[start : start + _CHUNK]
                out.index_copy_(1, pixels, F.embedding_bag(win.taps(pixels) + shift, emb, mode="sum").t())
        ctx.windows = win  # its integer maps (a few bytes per pixel), for backward
        return out.view(C, B, win.ho, win.wo).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        need_w, need_b = ctx.needs_input_grad[1:3]
        if not (need_w or need_b):
            return None, None, None, None, None
        win = ctx.windows
        L, k = win.classes, win.k
        B, C = grad.shape[:2]
        per_image = win.ho * win.wo
        d = grad.new_zeros(k * k, L + 1, C)  # row L of each tap: the zero padding, dropped
        interior = grad.new_zeros(L + 2, C)  # by the class of the window; row L + 1 collects the band pixels
        for b in range(B):
            rows = grad[b].reshape(C, per_image)
            for start in range(0, per_image, _CHUNK):
                # pixels as rows: index_add_ of columns falls back to a per-element scatter (25x slower than the
                # transposing copy of one block)
                g = rows[:, start : start + _CHUNK].t().contiguous()
                first = b * per_image + start
                interior.index_add_(0, win.centre[first : first + g.shape[0]], g)
                if not need_w:
                    continue
                lo, hi = torch.searchsorted(win.band, torch.tensor([first, first + g.shape[0]],
                                                                   device=win.band.device)).tolist()
                if hi > lo:
                    pixels = win.band[lo:hi]
                    gb = g if hi - lo == g.shape[0] else g.index_select(0, pixels - first)  # all band: no copy
                    taps = win.taps(pixels)
                    for t in range(k * k):
                        d[t].index_add_(0, taps[:, t], gb)
        dw = None
        if need_w:
            d += interior[: L + 1]  # an interior pixel of class c: every tap of class c
            dw = d[:, :L].view(k, k, L, C).permute(3, 2, 0, 1).contiguous()
        return None, dw, interior.sum(0) if need_b else None, None, None


def onehot_conv(ids: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
                reflect: bool = False) -> torch.Tensor:
    """``F.conv2d(pad(onehot(ids)), weight, bias)`` (stride 1) by look-ups, for float class ids ``[B, 1, H, W]``
    and a kernel ``[C, L, k, k]`` (``k`` odd); ``padding`` zeros, or by reflection with ``reflect`` (as
    ``nn.ReflectionPad2d(padding)`` before the conv); differentiable in ``weight`` and ``bias`` (see the module
    docstring)."""
    return OneHotConv.apply(ids, weight, bias, padding, reflect)


def onehot_conv3x3(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(onehot(ids), weight, padding=1)`` (no bias) by look-ups, for float class ids ``[B, 1, H, W]`` and
    a kernel ``[C, L, 3, 3]``; differentiable in ``weight``."""
    return OneHotConv.apply(ids, weight, None, 1, False)
