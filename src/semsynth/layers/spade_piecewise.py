"""SPADE's modulation on a one-hot layout by exact algebra, with its exact backward (issue 13).

SPADE computes ``mod = conv2(relu(conv1(S)))`` (``conv1``: the shared 3x3 conv of the label map ``S``, ``conv2``:
the gamma and beta 3x3 convs side by side). On a one-hot ``S`` with class ids ``c(p)``:

* ``conv1`` is a sum of 9 look-ups: ``A(q) = b1 + sum_t W1[:, c(q + t), t]`` (no term where ``q + t`` is outside
  the image: zero padding);
* where the 3x3 window of ``q`` is one class ``c`` and inside the image, ``A(q) = a_c`` and ``H(q) = relu(a_c) =
  h_c`` are per-class vectors; where the 5x5 window of ``p`` is, ``mod(p) = b2 + sum_t W2_t h_c = T_c``.

Forward: ``T[c(p)]`` for the interior pixels, and for the band (5x5 window not one class, or within 2 pixels of the
border) the hidden activation of the band and its neighbours by look-ups, then ``conv2`` as one matrix product over
the 3x3 neighbourhoods (in chunks, to bound memory), once per distinct 5x5 window of ids (:func:`distinct_windows`:
pixels with equal windows have equal outputs).

Backward, with ``G = dL/dmod``:

* ``dW2_t = sum_p G(p) H(p + t)^T``: the interior gives ``sum_c S_c h_c^T`` for every tap (``S_c``: ``G`` summed
  over the interior pixels of class ``c``, one ``index_add``), the band its neighbourhood matrix times ``G``;
* ``dA(q) = relu'(A(q)) * sum_t W2_t^T G(q - t)``. On the hidden interior (3x3 window one class ``c``, inside the
  image) only its per-class sum is needed, ``relu'(a_c) * sum_t W2_t^T R_{t,c}`` with ``R_{t,c} = sum_{q of class c}
  G(q - t)``: a pixel ``p`` of the 5x5 interior of class ``c`` counts for ``c`` at every tap (the per-class sums
  ``S_c`` again), a band pixel by the class of each of its nine neighbours (nine ``index_add`` of the band's rows of
  ``G``; the band of the benchmark's layout: 16 % of the pixels at 256x256, 28 % at 128x128); on the hidden band
  (inside the band) positions with the same 3x3 window of ids share ``relu'`` and the classes at ``q + t``, so their
  gathered ``G`` are summed first and multiplied once per window;
* ``dW1[:, c, t] = sum_q dA(q) [c(q + t) = c]``: the interior's per-class sums for every tap, plus the hidden band
  by ``index_add`` with the shifted class ids; ``db1``, ``db2`` are sums.

No dense convolution over the image remains, in forward or backward. Equal to the dense SPADE within float
rounding (``tests/layers/test_spade_piecewise_train.py``: forward and every gradient, float32 and float64).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # tap t = (dy + 1) * 3 + (dx + 1)


def one_hot_ids(seg: torch.Tensor) -> torch.Tensor | None:
    """``[B, 1, H, W]`` class ids (floats, exact integers) of a one-hot float map ``seg [B, L, H, W]``, or None when
    ``seg`` is not one-hot (exactly one non-zero per pixel, equal to 1). Cheaper than ``argmax`` (a strided
    reduction): ``sum_k k * seg_k`` is one matrix product and exact for one-hot pixels; one-hot holds iff every
    pixel sums to 1 and the map has exactly B*H*W non-zeros (each pixel then has exactly one, equal to its sum)."""
    B, L, H, W = seg.shape
    if seg.dtype not in (torch.float32, torch.float64) or L > 2048 or B * H * W == 0:  # ids exact even in TF32
        return None
    flat = seg.reshape(B, L, H * W)
    if int(torch.count_nonzero(flat)) != B * H * W or not bool((flat.sum(1) == 1).all()):
        return None
    return torch.matmul(torch.arange(L, dtype=seg.dtype, device=seg.device), flat).view(B, 1, H, W)


def pool_same(idf: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 1, H - size + 1, W - size + 1]``: whether the ``size`` x ``size`` window of ``idf [B, 1, H, W]`` holds
    one value (max == min, as two 1-D pools each, no padding)."""
    hi = F.max_pool2d(F.max_pool2d(idf, (size, 1), 1), (1, size), 1)
    lo = -F.max_pool2d(F.max_pool2d(-idf, (size, 1), 1), (1, size), 1)
    return hi == lo


def distinct_windows(ids: torch.Tensor, fill: int, pixels: torch.Tensor, size: int = 5
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``pixels`` (flat indices into ``ids [B, H, W]``, integer class ids < ``fill``) by their ``size`` x
    ``size`` window of ids, the positions outside the image read as ``fill``: returns ``(first, inverse)``, the
    position in ``pixels`` of one pixel of each distinct window, and the group of each pixel
    (``pixels[first[inverse]]`` has the same window as ``pixels``). Exact: the windows are compared as numbers,
    in groups of taps whose base-``fill + 1`` encoding fits in an int64, combined group by group.

    Two pixels with the same window get the same output from ``size // 2`` stacked 3x3 convs of the one-hot map
    (zero padding), so such a stack needs computing once per group: along a straight boundary between two regions
    most band pixels repeat a window (at 256x256, 23-42 % of the band pixels of the COCO-Stuff samples are
    distinct)."""
    if pixels.numel() == 0:
        return pixels.new_zeros(0), pixels.new_zeros(0)
    B, H, W = ids.shape
    r = size // 2
    hp, wp = H + 2 * r, W + 2 * r
    padded = F.pad(ids, (r, r, r, r), value=fill).view(-1)
    b, rest = pixels.div(H * W, rounding_mode="floor"), pixels.remainder(H * W)
    centre = b * (hp * wp) + (rest.div(W, rounding_mode="floor") + r) * wp + rest.remainder(W) + r
    taps = [dy * wp + dx for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    base = fill + 1
    per = max(1, int(62 // math.log2(base + 1)))  # base ** per < 2 ** 62: no overflow in the encoding
    group = torch.zeros_like(pixels)
    for g in range(0, len(taps), per):
        off = torch.tensor(taps[g : g + per], device=ids.device)
        weights = base ** torch.arange(off.numel(), device=ids.device, dtype=torch.long)
        code = (padded[centre.unsqueeze(1) + off] * weights).sum(1)
        _, code = torch.unique(code, return_inverse=True)
        _, group = torch.unique(group * (int(code.max()) + 1) + code, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), pixels.numel(), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, group, torch.arange(pixels.numel(), device=ids.device), "amin")
    return first, group


def interior(ids: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, H, W]`` bool: the ``size`` x ``size`` window (odd) is one class and inside the image."""
    B, _, H, W = ids.shape
    r = size // 2
    out = torch.zeros(B, H, W, dtype=torch.bool, device=ids.device)
    if H > 2 * r and W > 2 * r:
        out[:, r:-r, r:-r] = pool_same(ids, size)[:, 0]
    return out


class _Geometry:
    """Index arithmetic shared by forward and backward: flat pixel indices in ``[B, H, W]`` and in the padded
    ``[B, H + 2, W + 2]`` grid, the nine tap offsets there."""

    def __init__(self, B: int, H: int, W: int, device: torch.device) -> None:
        self.B, self.H, self.W = B, H, W
        self.hp, self.wp = H + 2, W + 2
        self.off = torch.tensor([dy * self.wp + dx for dy, dx in OFFSETS], device=device)

    def padded(self, flat: torch.Tensor) -> torch.Tensor:
        H, W = self.H, self.W
        b, r = flat.div(H * W, rounding_mode="floor"), flat.remainder(H * W)
        return b * (self.hp * self.wp) + (r.div(W, rounding_mode="floor") + 1) * self.wp + r.remainder(W) + 1


class PiecewiseModulation(torch.autograd.Function):
    """``mod [B, C2, H, W] = conv2(relu(conv1(onehot(ids))))`` (3x3, padding 1) and its gradients with respect to
    ``w1 [h, L, 3, 3], b1 [h], w2 [C2, h, 3, 3], b2 [C2]``; ``ids [B, 1, H, W]`` float class ids (no gradient)."""

    chunk_bytes = 8 << 20  # the band's neighbourhood matrices are built in chunks of about this size

    @staticmethod
    def forward(ctx, ids: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                b2: torch.Tensor, recipe: list | None = None, split: int | None = None):
        B, _, H, W = ids.shape
        hidden, L = w1.shape[:2]
        c2 = w2.shape[0]
        geo = _Geometry(B, H, W, ids.device)
        idl = ids.view(-1).long()
        # look-up tables: emb[t * (L + 1) + c] = w1[:, c, t] (row L of each tap: the zero padding)
        emb = torch.cat([w1.permute(2, 3, 1, 0).reshape(9, L, hidden), w1.new_zeros(9, 1, hidden)], 1)
        emb = emb.reshape(9 * (L + 1), hidden)
        a_cls = w1.sum((2, 3)).t() + b1  # [L, h]: the hidden pre-activation of a class interior
        h_cls = a_cls.relu()
        w2m = w2.permute(2, 3, 1, 0).reshape(9 * hidden, c2)  # rows (tap, hidden)
        table = torch.addmm(b2, h_cls, w2m.view(9, hidden, c2).sum(0))  # [L, C2]
        parts = _parts(c2, split)
        mods = [table[:, p].t().index_select(1, idl) for p in parts]  # [C, B*H*W] per part
        band = ~interior(ids, 5).view(-1)
        bidx = band.nonzero().squeeze(1)
        near = F.max_pool2d(band.view(B, 1, H, W).to(w1.dtype), 3, 1, padding=1).view(-1) > 0
        qidx = near.nonzero().squeeze(1)
        idsp = F.pad(idl.view(B, H, W), (1, 1, 1, 1), value=L).view(-1)
        taps = idsp[geo.padded(qidx).unsqueeze(1) + geo.off] + torch.arange(9, device=ids.device) * (L + 1)
        a_near = F.embedding_bag(taps, emb, mode="sum").add_(b1)  # [nq, h]
        h_near = torch.cat([a_near.relu(), a_near.new_zeros(1, hidden)])  # row nq: zero (outside the image)
        rows = torch.full((B * geo.hp * geo.wp,), qidx.numel(), dtype=torch.long, device=ids.device)
        rows[geo.padded(qidx)] = torch.arange(qidx.numel(), device=ids.device)
        # the band's merged conv once per distinct 5x5 window (equal windows, equal outputs; distinct_windows)
        first, group = distinct_windows(idl.view(B, H, W), L, bidx)
        ubidx = bidx[first]
        umod = torch.empty(ubidx.numel(), c2, dtype=table.dtype, device=table.device)
        step = max(1, PiecewiseModulation.chunk_bytes // (9 * hidden * w1.element_size()))
        for s in range(0, ubidx.numel(), step):
            bi = ubidx[s : s + step]
            cols = h_near[rows[geo.padded(bi).unsqueeze(1) + geo.off]].view(bi.numel(), 9 * hidden)
            torch.addmm(b2, cols, w2m, out=umod[s : s + step])
        band_mod = umod[group]
        for mod, p in zip(mods, parts):
            mod[:, bidx] = band_mod[:, p].t()
        # h_near is relu(a_near) and a zero row: backward makes it again (kept, it would be a second such matrix)
        ctx.save_for_backward(ids, w2, a_cls, h_cls, a_near, rows, bidx, ubidx, group)
        ctx.geo, ctx.parts = geo, parts
        if recipe is not None:  # what assemble() needs to build the output again (all small beside it)
            recipe.append(PiecewiseRecipe(table, idl, bidx, umod, group, (B, H, W)))
        outs = tuple(mod.view(-1, B, H, W).transpose(0, 1) for mod in mods)
        return outs if split is not None else outs[0]

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        ids, w2, a_cls, h_cls, a_near, rows, bidx, ubidx, group = ctx.saved_tensors
        geo = ctx.geo
        B, H, W = geo.B, geo.H, geo.W
        L, hidden = h_cls.shape
        c2 = w2.shape[0]
        n = B * H * W
        # rows: pixels, row-major (at batch 1 the reshape alone is a column-major view: every index_add_ below
        # would take a per-element scatter, 20-25x slower than this one transposing copy)
        # one more row, zero: the gathers of the hidden band below read it for positions outside the image
        gp = grads[0].new_empty(n + 1, c2)
        for grad, p in zip(grads, ctx.parts):  # the parts' gradients side by side, as the channels of one output
            gp[:n, p].view(B, H, W, -1).copy_(grad.permute(0, 2, 3, 1))
        gp[n].zero_()
        g = gp[:n]
        idl = ids.view(-1).long()
        dummy = torch.full_like(idl, L)
        need_w1 = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        d_w1 = d_b1 = d_w2 = d_b2 = None
        if ctx.needs_input_grad[4]:
            d_b2 = g.sum(0)
        if ctx.needs_input_grad[3] or need_w1:  # G summed over the (5x5) interior pixels of each class
            s_cls = g.new_zeros(L + 1, c2).index_add_(0, torch.where(interior(ids, 5).view(-1), idl, dummy), g)[:L]
        if ctx.needs_input_grad[3]:
            h_near = torch.cat([a_near.relu(), a_near.new_zeros(1, hidden)])  # as the forward made it
            # dW2 (rows (tap, hidden)): interior pixels see h_c at every tap; the band its neighbourhood matrix
            d_w2m = (h_cls.t() @ s_cls).repeat(9, 1)  # [9h, C2]
            # the band: the gradients of the pixels of one distinct window summed first, then one product per window
            g_u = g.new_zeros(ubidx.numel(), c2).index_add_(0, group, g[bidx])
            step = max(1, PiecewiseModulation.chunk_bytes // (9 * hidden * h_near.element_size()))
            for s in range(0, ubidx.numel(), step):
                bi = ubidx[s : s + step]
                cols = h_near[rows[geo.padded(bi).unsqueeze(1) + geo.off]].view(bi.numel(), 9 * hidden)
                d_w2m.addmm_(cols.t(), g_u[s : s + step])
            d_w2 = d_w2m.view(3, 3, hidden, c2).permute(3, 2, 0, 1).contiguous()
        if need_w1:
            w2t = w2.permute(2, 3, 0, 1).reshape(9, c2, hidden)  # [t, C2, h]
            inner3 = interior(ids, 3).view(-1)
            # the hidden interior: per class, sum_t W2_t^T R_{t,c}, R_{t,c} = sum over its pixels q of G(q - t).
            # G(p) counts for class c at tap t when q = p + t is a (3x3) interior pixel of class c. For p in the 5x5
            # interior of class c that holds at every tap (s_cls, once for the nine); only the band's pixels need
            # the class at each of their nine neighbours
            keys = F.pad(torch.where(inner3, idl, dummy).view(B, H, W), (1, 1, 1, 1), value=L).view(-1)
            v_cls = s_cls @ w2t.sum(0)
            g_band, band_p = g[bidx], geo.padded(bidx)
            for t in range(9):
                r = g.new_zeros(L + 1, c2).index_add_(0, keys[band_p + geo.off[t]], g_band)[:L]
                v_cls.addmm_(r, w2t[t])
            da_cls = v_cls * (a_cls > 0)  # [L, h]: dA summed over each class's hidden interior
            # the hidden band: G gathered at q - t (zero outside the image), times W2_t^T, masked by relu'. Positions
            # q with the same 3x3 window of ids share the relu mask and the class at every q + t, and only sums over
            # them reach dW1 and db1: their gathered gradients are summed first, then one product per window
            hb = (~inner3).nonzero().squeeze(1)
            first, group = distinct_windows(idl.view(B, H, W), L, hb, 3)
            uhbp = geo.padded(hb[first])
            prow = torch.full((B * geo.hp * geo.wp,), n, dtype=torch.long, device=g.device)
            prow[geo.padded(torch.arange(n, device=g.device))] = torch.arange(n, device=g.device)
            hbp = geo.padded(hb)
            w2cat = w2t.reshape(9 * c2, hidden)
            step = max(1, PiecewiseModulation.chunk_bytes // (9 * c2 * g.element_size()))
            g_u = g.new_zeros(first.numel(), 9 * c2)
            for s in range(0, hb.numel(), step):
                gath = gp[prow[hbp[s : s + step].unsqueeze(1) - geo.off]].view(-1, 9 * c2)
                g_u.index_add_(0, group[s : s + step], gath)
            da_u = (g_u @ w2cat).mul_(a_near[rows[uhbp]] > 0)  # the hidden band lies inside the band's neighbourhood
            # dW1 [h, L, 3, 3]: interiors at every tap, the hidden band by the class at q + t
            idsp = F.pad(idl.view(B, H, W), (1, 1, 1, 1), value=L).view(-1)
            d_w1t = da_cls.t().unsqueeze(0).repeat(9, 1, 1)  # [t, h, L]
            for t in range(9):
                cls_t = idsp[uhbp + geo.off[t]]
                d_w1t[t] += g.new_zeros(L + 1, hidden).index_add_(0, cls_t, da_u)[:L].t()
            d_w1 = d_w1t.view(3, 3, hidden, L).permute(2, 3, 0, 1).contiguous()
            d_b1 = da_cls.sum(0) + da_u.sum(0)
        return None, d_w1, d_b1, d_w2, d_b2, None, None


def _parts(channels: int, split: int | None) -> list[slice]:
    """The output channels of each output: all of them, or ``[:split]`` and ``[split:]``."""
    if split is None:
        return [slice(0, channels)]
    if not 0 < split < channels:
        raise ValueError(f"piecewise_modulation: split={split} must lie between 0 and the {channels} output channels")
    return [slice(0, split), slice(split, channels)]


class PiecewiseRecipe(NamedTuple):
    """The output of :class:`PiecewiseModulation` in small pieces: the per-class table ``[L, C2]``, the flat class
    ids, the band pixels, the band's distinct windows' values and each band pixel's window, and ``(B, H, W)``."""

    table: torch.Tensor
    idl: torch.Tensor
    bidx: torch.Tensor
    umod: torch.Tensor
    group: torch.Tensor
    size: tuple[int, int, int]

    def assemble(self, channels: slice = slice(None)) -> torch.Tensor:
        """Channels ``channels`` of the output ``[B, C2, H, W]``, the very values the forward returned (the same
        gathers)."""
        B, H, W = self.size
        mod = self.table[:, channels].t().index_select(1, self.idl)
        mod[:, self.bidx] = self.umod[:, channels][self.group].t()
        return mod.view(-1, B, H, W).transpose(0, 1)


def piecewise_modulation(ids: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                         b2: torch.Tensor, recipe: list | None = None, split: int | None = None):
    """``conv2d(relu(conv2d(onehot(ids), w1, b1, padding=1)), w2, b2, padding=1)`` for float class ids
    ``[B, 1, H, W]`` (H, W >= 5), by the exact piecewise algebra of the module docstring, differentiable in the
    weights. ``recipe``: a list to which the forward appends a :class:`PiecewiseRecipe` of its output.

    ``split``: return the output's channels ``[:split]`` and ``[split:]`` as two tensors (SPADE's gamma and beta).
    Slicing one output instead costs a training step, per slice, a zero-filled map of the whole output in
    backward and their sum (at SC-GAN's ADE20K preset, three 32 MiB maps at 256x256)."""
    return PiecewiseModulation.apply(ids, w1, b1, w2, b2, recipe, split)
