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

A model whose convs read the label map concatenated with other maps (OASIS's noise, CC-FPSE's label features)
marks them with :func:`read_labels_by_lookups` and runs its forward inside :func:`label_ids`: a marked conv then
computes its one-hot channels by look-ups and only the other channels densely.
"""

from __future__ import annotations

import contextlib
import threading
import types

import torch
import torch.nn.functional as F
from torch import nn

from .recompute import restore_on_recompute
from .resize import resize_nearest
from .spade_piecewise import one_hot_ids, pool_same

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


# --------------------------------------------------------------------------------------------------------
# Convs that read the label map concatenated with other maps


class _Labels:
    """The class ids ``[B, 1, H, W]`` of a forward's one-hot label map, and their nearest resizes (as the model
    resizes the map: :func:`~semsynth.layers.spade.resize_nearest`), one per size. Given ``source`` (the map and
    its number of classes) instead of ids, the ids of each size are found when a marked conv first asks, from the
    map resized to that size (:func:`lazy_labels`; the same ids: a nearest resize picks the same pixels)."""

    def __init__(self, ids: torch.Tensor | None, source: tuple[torch.Tensor, int] | None = None) -> None:
        self.ids, self._source, self.sizes = ids, source, {}

    def at(self, h: int, w: int) -> torch.Tensor | None:
        """The ids at ``h x w``; None where the map is not one-hot (the marked convs then run densely). From a
        source map, once the ids of its own size are known (one-hot), a smaller size's are their resize."""
        if (h, w) not in self.sizes:
            if self._source is not None:
                semantic, classes = self._source
                whole = self.sizes.get((semantic.shape[2], semantic.shape[3]))
                if whole is not None:  # the pixels a nearest resize picks, of a map known to be one-hot
                    ids = resize_nearest(whole, (h, w)).contiguous()
                else:
                    ids = labels_for_lookups(resize_nearest(semantic, (h, w)), classes)
            else:
                ids = None if self.ids is None else resize_nearest(self.ids, (h, w))
            self.sizes[(h, w)] = ids
        return self.sizes[(h, w)]


_LABELS = threading.local()  # per thread (a server runs several forwards at once): the open label_ids state


@contextlib.contextmanager
def label_ids(ids: torch.Tensor | _Labels | None):
    """Within this block (this thread), the convs marked by :func:`read_labels_by_lookups` read the one-hot
    channels of their input as ``ids`` ``[B, 1, H, W]`` (float class ids of the model's label map, e.g.
    :func:`~semsynth.layers.spade_piecewise.one_hot_ids`), nearest-resized to their input's size. The caller
    promises that those channels are that map and carry no gradient; None: the marked convs run densely."""
    previous = getattr(_LABELS, "state", None)
    _LABELS.state = ids if ids is None or isinstance(ids, _Labels) else _Labels(ids)
    try:
        yield
    finally:
        _LABELS.state = previous


def labels_for_lookups(semantic: torch.Tensor, classes: int) -> torch.Tensor | None:
    """The class ids for :func:`label_ids` of a model's label map whose first ``classes`` channels are one-hot, or
    None where the look-ups do not apply: the map is not one-hot there, wants a gradient, is not float32/64, or
    the forward is traced or compiled."""
    if (semantic.dim() != 4 or semantic.requires_grad or semantic.dtype not in (torch.float32, torch.float64)
            or semantic.is_meta or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling()):
        return None
    return one_hot_ids(semantic[:, :classes])


def lazy_labels(semantic: torch.Tensor, classes: int) -> _Labels:
    """For :func:`label_ids`: the ids of ``semantic``'s first ``classes`` channels (:func:`labels_for_lookups`),
    found only at the sizes where a marked conv runs, from the map resized to that size (a model whose marked
    convs are usually skipped pays nothing, and a small map's ids cost what the small map does)."""
    return _Labels(None, (semantic, classes))


def ids_of_map(semantic: torch.Tensor, classes: int, h: int, w: int) -> tuple[bool, torch.Tensor | None]:
    """The ids that the open :func:`label_ids` state (this thread) holds at ``h x w``, when it was made by
    :func:`lazy_labels` from this very map ``semantic`` with ``classes`` one-hot channels: ``(True, ids)`` (ids
    None where the map is not one-hot); else ``(False, None)``, and the caller finds them itself. With it the
    layers of a forward that read the model's label map (SPADE's exact algebra, the SVG's look-up conv, the marked
    convs) check the map for one-hotness once, at its own size, and take the smaller sizes' ids as resizes."""
    state = current_labels()
    if state is None or state._source is None or state._source[0] is not semantic or state._source[1] != classes:
        return False, None
    return True, state.at(h, w)


def current_labels() -> _Labels | None:
    """The open :func:`label_ids` state of this thread."""
    return getattr(_LABELS, "state", None)


# a block recomputed in backward (train.recompute) reads the labels as its forward did
restore_on_recompute(lambda: label_ids(current_labels()))


def read_labels_by_lookups(conv: nn.Conv2d, start: int, classes: int) -> nn.Conv2d:
    """Mark ``conv`` (stride 1, "same" zero padding, odd square kernel, one group), whose input channels
    ``[start, start + classes)`` are the model's one-hot label map: inside :func:`label_ids` it computes the conv
    of those channels by look-ups (:func:`onehot_conv`, with its weight gradient) and of the other channels
    densely; elsewhere (and while tracing or compiling) it is the plain conv. The parameters, state-dict keys and
    class stay those of ``conv`` (its ``forward`` is replaced on the instance, so that a parametrisation such as
    spectral norm keeps working). Returns ``conv``."""
    k = conv.kernel_size[0]
    if (conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding != (k // 2, k // 2) or conv.padding_mode != "zeros"
            or not 0 <= start or start + classes > conv.in_channels or classes < 1):
        raise ValueError(f"read_labels_by_lookups: {conv} with label channels [{start}, {start + classes}) is not a "
                         f"stride-1 'same' conv over them")
    conv.onehot_part = (start, classes)
    conv.forward = types.MethodType(_onehot_part_forward, conv)
    return conv


onehot_part_min_work = 9 * 4096  # k^2 x classes x out channels below which the dense conv is as cheap


def _onehot_part_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    state = getattr(_LABELS, "state", None)
    start, L = self.onehot_part
    k = self.kernel_size[0]
    if (state is None or x.dim() != 4 or x.shape[1] != self.in_channels or x.dtype not in (torch.float32,
                                                                                            torch.float64)
            or k * k * L * self.out_channels < onehot_part_min_work or x.is_meta or torch.jit.is_tracing()
            or torch.jit.is_scripting() or torch.compiler.is_compiling()):
        return type(self).forward(self, x)
    ids = state.at(x.shape[2], x.shape[3])
    if ids is None or ids.shape[0] != x.shape[0] or ids.device != x.device:
        return type(self).forward(self, x)
    w = self.weight  # read once (a parametrisation such as spectral norm runs once, as the plain forward would)
    y = onehot_conv(ids.to(x.dtype), w[:, start : start + L], self.bias, k // 2)
    for lo, hi in ((0, start), (start + L, self.in_channels)):
        if hi > lo:
            y = y + F.conv2d(x[:, lo:hi], w[:, lo:hi], None, 1, k // 2)
    return y
