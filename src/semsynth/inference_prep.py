"""Inference preparation, once per model instead of once per forward (issue 13).

:func:`prepare_for_inference` returns a generator for eval-mode inference whose outputs equal the unprepared
eval-mode model's up to float rounding (tests/models/test_inference_prepare.py: within 1e-5). Only exact rewrites:

* spectral norm folded into plain weights (:func:`semsynth.portable.fold_spectral_norm`, the one place that folds
  it; ``semsynth export`` uses it too): no ``W / sigma`` per forward;
* a batch norm with running statistics that directly follows a plain convolution in an ``nn.Sequential`` folded
  into the convolution's weights and bias;
* SPADE (:class:`PreparedSPADE`): the parameter-free batch norm folded into the modulation, and the gamma and beta
  convolutions merged into one convolution, ``BN(x) * (1 + gamma) + beta = x * gamma' + beta'`` with
  ``gamma' = a (1 + gamma)``, ``beta' = b (1 + gamma) + beta`` for the norm's ``x * a + b``; the label map is not
  resized when it already has the feature map's size, and is sub-sampled by a strided view when the size ratio is
  an integer (what nearest interpolation computes then); on a one-hot label map (float32/64, no gradients) the
  modulation is computed by exact algebra on the piecewise-constant layout: the two stacked 3x3 convs give a
  per-class constant wherever the 5x5 window is one class inside the image (a table look-up), and only the band
  within 2 pixels of a class boundary or the border is computed, by embedding look-ups and one matrix product
  (:meth:`PreparedSPADE._piecewise_mod`, once per distinct 5x5 window of ids in the band; the dense convs when the
  distinct band windows are more than ``max_band`` of the pixels, or the map is not one-hot);
* SCN (:class:`PreparedSCN`): the same folding, the scale and shift tables one 1x1 convolution with a bias;
* plain 3x3 convolutions (stride 1, padding 1, or no padding after a reflection pad) become :class:`~semsynth.layers.winograd.WinogradConv2d`: on the
  CPU, Winograd's F(2x2, 3x3) where :class:`~semsynth.layers.winograd.WinogradPolicy` measured it faster (many
  channels on small maps), the same result within float rounding;
* an SC-GAN on the CPU: the convolution kernels stored channels-last (:func:`use_channels_last`), so that the
  feature maps stay channels-last and oneDNN does not reorder them around every convolution; the image is
  returned contiguous. SCN's and SPADE's modulations are then applied pixel-major in chunks (the whole
  ``[B*H*W, 2C]`` modulation never exists);
* an SC-GAN on the CPU: the SCC kernels of the deep blocks (maps of at most 32x32 at the model's resolution)
  packed once in oneDNN's blocked layout (:func:`pack_deep_kernels`, :class:`PreparedSCC`), which oneDNN would
  otherwise reorder on every call;
* an SC-GAN on the CPU: the last block and the output conv in horizontal stripes (:func:`set_finest_stripes`),
  each reading a halo of the rows its layers reach, so that only a stripe's full-resolution maps exist at once.

The prepared model is for inference only: eval mode, no gradients (its parameters do not require them), and its
state_dict is not a checkpoint. Training-mode batch norm (batch statistics) is never folded.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SemsynthError, ShapeError
from .layers.layout import is_channels_last, pixel_rows, to_channels_last
from .layers.packed_conv import PackedKernel, packing_available
from .layers.scc import SpatiallyConditionalConv2d, check_routing, mix_candidates
from .layers.spade import resize_nearest
from .layers.spade_piecewise import distinct_windows, one_hot_ids, pool_same
from .layers.winograd import is_same_3x3, use_winograd


class PrepareError(SemsynthError):
    """A generator that cannot be prepared (no registry config to copy it from, for example)."""


def norm_affine(norm: nn.Module, channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(a, b)`` with ``norm(x) == x * a + b`` per channel in eval mode, or None when the norm depends on the input
    (instance norm, batch norm without running statistics)."""
    if isinstance(norm, nn.Identity):
        return like.new_ones(channels), like.new_zeros(channels)
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats \
            and norm.running_mean is not None:
        a = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.weight is not None:
            a = a * norm.weight.double()
        b = -norm.running_mean.double() * a
        if norm.bias is not None:
            b = b + norm.bias.double()
        return a.to(like.dtype), b.to(like.dtype)
    return None


class PreparedSPADE(nn.Module):
    """Eval-mode :class:`~semsynth.layers.SPADE` with its batch norm folded into one merged gamma/beta conv."""

    def __init__(self, spade: nn.Module) -> None:
        super().__init__()
        shared = spade.mlp_shared[0]
        c = spade.num_features
        self.num_features, self.label_channels = c, spade.label_channels
        self.shared = shared
        gamma, beta = spade.mlp_gamma, spade.mlp_beta
        wg, wb = gamma.weight.detach(), beta.weight.detach()
        bg = gamma.bias.detach() if gamma.bias is not None else wg.new_zeros(c)
        bb = beta.bias.detach() if beta.bias is not None else wb.new_zeros(c)
        ab = norm_affine(spade.param_free_norm, c, wg)
        if ab is None:  # the norm depends on the input: keep it, fold only the merge of the two convs
            self.norm = spade.param_free_norm
            a, b = wg.new_ones(c), wg.new_zeros(c)
        else:
            self.norm = None
            a, b = ab
        a4, b4 = a.view(-1, 1, 1, 1), b.view(-1, 1, 1, 1)
        self.register_buffer("weight", torch.cat([wg * a4, wg * b4 + wb]).contiguous())
        self.register_buffer("bias", torch.cat([a * (1 + bg), b * (1 + bg) + bb]).contiguous())
        self.padding = gamma.padding
        self.piecewise = _piecewise_ok(shared, gamma, beta)
        if self.piecewise:
            self._piecewise_tables(shared)
            # one copy of the merged kernel for both paths: stored (tap, hidden)-minor, so that the piecewise path's
            # matrix over (tap, hidden) is a view of it (:attr:`pw_w2`); the dense path reads it as a plain kernel
            self.weight = self.weight.contiguous(memory_format=torch.channels_last)

    @property
    def pw_w2(self) -> torch.Tensor:
        """``[9 hidden, 2C]``: the merged conv as a matrix over (tap, hidden), a view of :attr:`weight`."""
        w = self.weight
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t()

    @torch.no_grad()
    def _piecewise_tables(self, shared: nn.Conv2d) -> None:
        """Tables of the piecewise-constant path (non-persistent buffers; computed in float64, stored in the
        model's dtype): ``emb`` [9 (L + 1), hidden], the shared conv's weight per tap and class with a zero row per
        tap for the padding; ``table`` [2C, L], the modulation of a region interior of each class."""
        w1 = shared.weight.detach().double()  # [hidden, L, 3, 3]
        hidden, L = w1.shape[:2]
        b1 = shared.bias.detach().double() if shared.bias is not None else w1.new_zeros(hidden)
        emb = torch.cat([w1.permute(2, 3, 1, 0).reshape(9, L, hidden), w1.new_zeros(9, 1, hidden)], 1)
        w2 = self.weight.double()  # [2C, hidden, 3, 3]
        interior = torch.relu(w1.sum((2, 3)).t() + b1)  # [L, hidden]: the hidden activation inside a region
        table = interior @ w2.sum((2, 3)).t() + self.bias.double()  # [L, 2C]
        dt = self.weight.dtype
        self.register_buffer("pw_emb", emb.reshape(9 * (L + 1), hidden).to(dt), persistent=False)
        self.register_buffer("pw_b1", b1.to(dt), persistent=False)
        self.register_buffer("pw_table", table.t().contiguous().to(dt), persistent=False)
        self.register_buffer("pw_rows", table.to(dt).contiguous(), persistent=False)  # [L, 2C]: pixel-major look-ups

    def _band(self, seg: torch.Tensor, ids: torch.Tensor | None = None):
        """The exact algebra's work on a one-hot ``seg``: ``(ids, bidx, umod, group)``, or None (dense path).

        The two stacked 3x3 convs see a 5x5 window: where that window is one class and inside the image, the
        modulation is the class's row of the tables (``ids`` [B*H*W], the class of each pixel). The other pixels
        (the band within 2 pixels of a class boundary or of the border; ``bidx``, flat indices) are computed
        exactly, once per distinct 5x5 window of ids (``umod`` [distinct, 2C]; band pixel ``k`` has the modulation
        ``umod[group[k]]``): the hidden activation of the band and its 1-pixel neighbours as 9 embedding look-ups
        per pixel (the shared conv of a one-hot map; outside the image the padding row, zero), then the merged conv
        as one matrix product over the 3x3 neighbourhoods (zero outside the image)."""
        B, L, H, W = seg.shape
        if H < 5 or W < 5 or B * L * H * W >= 2 ** 31:
            return None
        idf = one_hot_ids(seg) if ids is None else ids  # [B, 1, H, W] float class ids, or None
        if idf is None:
            return None
        n = B * H * W
        same = pool_same(idf, 5)  # [B, 1, H-4, W-4]: the 5x5 window is one class
        band = torch.ones(B, H, W, dtype=torch.bool, device=seg.device)
        band[:, 2:-2, 2:-2] = ~same[:, 0]
        bidx = band.view(-1).nonzero().squeeze(1)
        nb = bidx.numel()
        ids = idf.reshape(B, H, W).long()
        # band pixels with equal 5x5 windows of ids have equal modulations: the band's work is per distinct window
        first, group = distinct_windows(ids, L, bidx)
        if first.numel() > self.max_band * n:
            return None
        c2 = self.pw_table.shape[0]
        umod = self.pw_rows.new_empty(0, c2)
        if nb:
            hp, wp = H + 2, W + 2
            near = F.max_pool2d(band.unsqueeze(1).to(seg.dtype), 3, 1, padding=1)[:, 0] > 0
            qidx = near.view(-1).nonzero().squeeze(1)
            nq = qidx.numel()
            off = torch.tensor([dy * wp + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=seg.device)

            def padded(flat: torch.Tensor) -> torch.Tensor:  # flat index in [B, H, W] -> in [B, H+2, W+2]
                b, r = flat.div(H * W, rounding_mode="floor"), flat.remainder(H * W)
                return b * (hp * wp) + (r.div(W, rounding_mode="floor") + 1) * wp + r.remainder(W) + 1

            idsp = F.pad(ids, (1, 1, 1, 1), value=L).view(-1)
            qp = padded(qidx)
            taps = idsp[qp.unsqueeze(1) + off] + torch.arange(9, device=seg.device) * (L + 1)  # [nq, 9]
            actv = F.embedding_bag(taps, self.pw_emb, mode="sum").add_(self.pw_b1).relu_()
            actv = torch.cat([actv, actv.new_zeros(1, actv.shape[1])])  # row nq: zero (outside the image)
            rows = torch.full((B * hp * wp,), nq, dtype=torch.long, device=seg.device)
            rows[qp] = torch.arange(nq, device=seg.device)
            # once per distinct window, the 3x3 neighbourhoods [nu, 9 hidden] in chunks of about band_chunk_bytes: at
            # 256x256 all at once they were the largest tensor of the whole forward (46 MiB for 128 hidden, 17 % band)
            ubidx = bidx[first]
            step = max(1, self.band_chunk_bytes // (actv.shape[1] * 9 * actv.element_size()))
            umod = torch.empty(ubidx.numel(), c2, dtype=self.pw_rows.dtype, device=seg.device)
            w2 = self.pw_w2
            for s in range(0, ubidx.numel(), step):
                bi = ubidx[s : s + step]
                cols = actv[rows[padded(bi).unsqueeze(1) + off]].view(bi.numel(), -1)
                torch.addmm(self.bias, cols, w2, out=umod[s : s + step])
        return ids.view(-1), bidx, umod, group

    def _piecewise_mod(self, seg: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor | None:
        """The merged modulation ``[B, 2C, H, W]`` of a one-hot ``seg`` by exact algebra (:meth:`_band`), or None
        (dense path)."""
        work = self._band(seg, ids)
        if work is None:
            return None
        ids, bidx, umod, group = work
        B, _, H, W = seg.shape
        mod = self.pw_table.index_select(1, ids)  # [2C, B*H*W]
        if bidx.numel():
            mod[:, bidx] = umod[group].t()
        return mod.view(-1, B, H, W).transpose(0, 1)

    def _piecewise_apply(self, normed: torch.Tensor, seg: torch.Tensor,
                         ids: torch.Tensor | None = None) -> torch.Tensor | None:
        """``normed * gamma' + beta'`` for a channels-last ``normed`` with the modulation of a one-hot ``seg`` by
        exact algebra (:meth:`_band`), or None (dense path). Pixel-major, in chunks of ``mod_chunk_bytes`` of
        modulation rows: the whole ``[B*H*W, 2C]`` modulation never exists (32 MiB at 256x256 for 64 channels)."""
        work = self._band(seg, ids)
        if work is None:
            return None
        ids, bidx, umod, group = work
        c = self.num_features
        out, step = _modulate_rows(normed, c, self.mod_chunk_bytes,
                                   lambda s, e: self.pw_rows.index_select(0, ids[s:e]))
        rows_in, rows_out = pixel_rows(normed), pixel_rows(out)
        for s in range(0, bidx.numel(), step):  # the band: its rows again, from the exact modulations
            idx = bidx[s : s + step]
            mod = umod[group[s : s + step]]
            rows_out[idx] = torch.addcmul(mod[:, c:], rows_in[idx], mod[:, :c])
        return out

    # above this fraction of pixels with distinct band windows the dense convs are used (measured break-even ~0.7-0.8
    # as a fraction of band pixels, before the band was computed once per distinct window)
    max_band = 0.7
    band_chunk_bytes = 8 << 20  # the band's neighbourhood matrix is built and multiplied in chunks of this size
    mod_chunk_bytes = 2 << 20  # the channels-last path applies the modulation in chunks of this many bytes of it

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm is None else self.norm(x)
        seg = resize_nearest(semantic.to(x.dtype), x.shape[2:])
        mod = None
        if self.piecewise and x.dtype in (torch.float32, torch.float64) \
                and not (torch.is_grad_enabled() and (x.requires_grad or seg.requires_grad)):
            ids = _cached_ids(semantic)
            if ids is not None and is_channels_last(normed):
                out = self._piecewise_apply(normed, seg, resize_nearest(ids, x.shape[2:]))
                if out is not None:
                    return out
            elif ids is not None:
                mod = self._piecewise_mod(seg, resize_nearest(ids, x.shape[2:]))
        if mod is None:
            actv = torch.relu_(self.shared(seg))
            # (a plain kernel: oneDNN would take a channels-last one as a reason to convert the input)
            mod = F.conv2d(actv, self.weight.contiguous(), self.bias, padding=self.padding)
        c = self.num_features
        return torch.addcmul(mod[:, c:], normed, mod[:, :c])


def _modulate_rows(normed: torch.Tensor, c: int, chunk_bytes: int, mod_rows) -> tuple[torch.Tensor, int]:
    """``normed * gamma + beta`` for a channels-last ``normed`` [B, C, H, W], pixel-major in chunks: ``mod_rows(s,
    e)`` gives the ``[e - s, 2C]`` rows ``[gamma | beta]`` of pixels ``s:e`` (about ``chunk_bytes`` at a time, so
    the whole ``[B*H*W, 2C]`` modulation never exists). Returns the output (channels-last) and the chunk's rows."""
    out = torch.empty_like(normed, memory_format=torch.channels_last)
    rows_in, rows_out = pixel_rows(normed), pixel_rows(out)
    step = max(1, chunk_bytes // (2 * c * out.element_size()))
    for s in range(0, rows_in.shape[0], step):
        mod = mod_rows(s, s + step)
        torch.addcmul(mod[:, c:], rows_in[s : s + step], mod[:, :c], out=rows_out[s : s + step])
    return out, step


_IDS = threading.local()  # per thread (a server runs several forwards at once): (weakref, version, ids)


def _clear_ids_cache(*_: object) -> None:
    """Forget the cached ids: called before every forward of a prepared generator (a forward pre-hook)."""
    _IDS.cache = (None, None, None)


def _row_range(view: torch.Tensor, whole: torch.Tensor) -> tuple[int, int] | None:
    """``(top, bottom)`` when ``view`` is ``whole[:, :, top:bottom]`` (the same storage, strides, batch, channels and
    width), else None."""
    if view.dim() != 4 or whole.dim() != 4 or view.shape[:2] != whole.shape[:2] or view.shape[3] != whole.shape[3] \
            or view.stride() != whole.stride() or view.dtype != whole.dtype or view.device != whole.device \
            or view.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr() or whole.stride(2) <= 0:
        return None
    offset = view.storage_offset() - whole.storage_offset()
    if offset < 0 or offset % whole.stride(2):
        return None
    top = offset // whole.stride(2)
    return (top, top + view.shape[2]) if top + view.shape[2] <= whole.shape[2] else None


def _cached_ids(semantic: torch.Tensor) -> torch.Tensor | None:
    """:func:`one_hot_ids` of ``semantic``, computed once for the SPADE layers of one forward (they all read the same
    full-size map; a layer resizes the ids as it resizes the map). Keyed on the tensor's identity and, for tensors
    that track it, its version; the cache is per thread and emptied at the start of each forward of the prepared
    generator, so a map changed in place between forwards (an inference-mode tensor has no version) is read again."""
    ref, version, ids = getattr(_IDS, "cache", (None, None, None))
    current = None if semantic.is_inference() else semantic._version
    cached = None if ref is None else ref()
    if cached is not None and version == current:
        if cached is semantic:
            return ids
        rows = _row_range(semantic, cached)
        if rows is not None:  # a band of its rows (a prepared SC-GAN's last block in stripes)
            return None if ids is None else ids[:, :, rows[0] : rows[1]]
    ids = one_hot_ids(semantic.detach())
    _IDS.cache = (weakref.ref(semantic), current, ids)
    return ids


def _piecewise_ok(*convs: nn.Module) -> bool:
    """The exact piecewise-constant path covers 3x3 convs, stride 1, padding 1 (zeros), no dilation or groups."""
    return all(is_same_3x3(m, plain=True) for m in convs)


class PreparedSCN(nn.Module):
    """Eval-mode :class:`~semsynth.layers.SpatiallyConditionalNorm2d`: ``x * s' + m'`` with ``[s' | m']`` one 1x1
    convolution (with a bias) of the routing map, the batch norm folded in."""

    def __init__(self, scn: nn.Module) -> None:
        super().__init__()
        c, n = scn.num_features, scn.num_candidates
        self.num_features, self.num_candidates = c, n
        table = scn.candidates.detach()  # [n, 2C]: scale | shift
        ab = norm_affine(scn.param_free_norm, c, table)
        if ab is None:
            self.norm = scn.param_free_norm
            a, b = table.new_ones(c), table.new_zeros(c)
        else:
            self.norm = None
            a, b = ab
        scale, shift = table[:, :c], table[:, c:]
        w = torch.cat([scale * a, scale * b + shift], dim=1)  # [n, 2C]
        self.register_buffer("weight", w.t().contiguous()[:, :, None, None])
        self.register_buffer("bias", torch.cat([a, b]).contiguous())

    mod_chunk_bytes = 2 << 20  # the channels-last path computes [s' | m'] in chunks of this many bytes

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm is None else self.norm(x)
        b, n, h, w = routing.shape
        # the 1x1 conv of the n routing channels as a matrix product with the bias as its start (a 1x1 conv of 3-4
        # input channels takes PyTorch's slow generic kernel, and a separate bias pass)
        c = self.num_features
        if is_channels_last(normed):  # pixel-major, channels-last like x: [s' | m'] by rows, in chunks
            rows = routing.to(x.dtype).permute(0, 2, 3, 1).reshape(b * h * w, n)
            wt = self.weight.view(-1, n).t()
            return _modulate_rows(normed, c, self.mod_chunk_bytes,
                                  lambda s, e: torch.addmm(self.bias, rows[s:e], wt))[0]
        mod = torch.baddbmm(self.bias.view(1, -1, 1), self.weight.view(1, -1, n).expand(b, -1, -1),
                            routing.to(x.dtype).reshape(b, n, h * w)).view(b, -1, h, w)
        return torch.addcmul(mod[:, c:], normed, mod[:, :c])


class PreparedSCC(nn.Module):
    """Eval-mode :class:`~semsynth.layers.SpatiallyConditionalConv2d` (spectral norm folded) whose stacked
    ``[n*Cout, Cin, k, k]`` kernel is packed for oneDNN for inputs of spatial size ``size``
    (:class:`~semsynth.layers.packed_conv.PackedKernel`); the candidates are mixed as the layer mixes them."""

    def __init__(self, scc: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        if scc.sn is not None or scc.bias is not None:
            raise ValueError("PreparedSCC takes an SCC layer without bias whose spectral norm is folded")
        self.in_channels, self.out_channels = scc.in_channels, scc.out_channels
        self.num_candidates, self.kernel_size = scc.num_candidates, scc.kernel_size
        self.stride, self.padding = scc.stride, scc.padding
        self.kernel = PackedKernel(scc.weight.detach().flatten(0, 1), size, (scc.stride,) * 2, (scc.padding,) * 2)

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"SCC: input has shape {tuple(x.shape)}, expected [B, {self.in_channels}, H, W]")
        size = SpatiallyConditionalConv2d.output_size(self, x)  # from the same kernel_size, stride, padding
        check_routing(routing, self.num_candidates, x.shape[0], size, "SCC")
        y = self.kernel(x)  # [B, n*Cout, H', W']
        b, _, h, w = y.shape
        return mix_candidates(y.view(b, self.num_candidates, self.out_channels, h, w), routing.to(y.dtype))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, num_candidates={self.num_candidates}, "
                f"packed for {self.kernel.size[0]}x{self.kernel.size[1]}")


@torch.no_grad()
def pack_deep_kernels(G: nn.Module, max_pixels: int | None = None) -> int:
    """Pack for oneDNN (:mod:`semsynth.layers.packed_conv`) the SCC kernels of an SC-GAN's blocks whose maps have
    at most ``max_pixels`` pixels at the generator's resolution (default :data:`PACK_MAX_PIXELS`): the deep
    blocks, whose large kernels oneDNN would otherwise reorder on every call. In place; returns how many."""
    limit = PACK_MAX_PIXELS if max_pixels is None else max_pixels
    count = 0
    for name, (h, w) in G.block_sizes().items():
        if h * w > limit:
            continue
        block = getattr(G, name)
        for child in [n for n, m in block.named_children() if isinstance(m, SpatiallyConditionalConv2d)]:
            scc = getattr(block, child)
            if scc.sn is None and scc.bias is None and packing_available(scc.weight):
                setattr(block, child, PreparedSCC(scc, (h, w)))  # the plain kernel is freed here
                count += 1
            del scc
    return count


# packed, a 512 -> 1536 3x3 conv took 0.56x its time at 8x8 and 0.79x at 16x16, 512 -> 768 0.90x at 32x32; at 64x64
# and above nothing was gained (docs/benchmarks.md)
PACK_MAX_PIXELS = 32 * 32


@torch.no_grad()
def fold_conv_batchnorm(module: nn.Module) -> int:
    """In every ``nn.Sequential`` of ``module``: a BatchNorm2d with running statistics right after a plain
    ``nn.Conv2d`` is folded into the conv (weights scaled, bias shifted) and replaced by ``nn.Identity``. Returns
    how many were folded. Eval mode only."""
    count = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for prev, name in itertools.pairwise(names):
            conv, bn = seq._modules[prev], seq._modules[name]
            if type(conv) is not nn.Conv2d or not isinstance(bn, nn.BatchNorm2d) or conv.padding_mode != "zeros":
                continue
            ab = norm_affine(bn, bn.num_features, conv.weight)
            if ab is None or conv.out_channels != bn.num_features or getattr(conv, "parametrizations", None):
                continue
            a, b = ab
            bias = conv.bias if conv.bias is not None else torch.zeros_like(a)
            conv.weight = nn.Parameter(conv.weight * a.view(-1, 1, 1, 1), requires_grad=False)
            conv.bias = nn.Parameter(bias * a + b, requires_grad=False)
            seq._modules[name] = nn.Identity()
            count += 1
    return count


def _replace(module: nn.Module, kind: type, make) -> int:
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, make(child))
                count += 1
    return count


def _device_of(G: nn.Module) -> torch.device:
    p = next(itertools.chain(G.parameters(), G.buffers()), None)
    return torch.device("cpu") if p is None else p.device


@torch.no_grad()
def use_channels_last(G: nn.Module) -> nn.Module:
    """Store the kernels of ``G``'s convolutions channels-last (in place; returns ``G``): oneDNN then reads and
    writes the feature maps channels-last instead of reordering them to its blocked layout and back around every
    convolution (a copy of the input and of the output each time), and the maps stay channels-last from the first
    such conv on; the per-pixel layers (routing, SCN, SPADE) keep that layout. The image comes back contiguous.
    SPADE's convs over the label map keep plain kernels: the map is contiguous, and a channels-last kernel would
    make oneDNN convert its many channels first."""
    to_channels_last(G, skip=(PreparedSPADE,))
    if not getattr(G, "_contiguous_image_hook", None):
        G._contiguous_image_hook = G.register_forward_hook(_contiguous_image)
    return G


def _contiguous_image(module: nn.Module, args: tuple, out):
    """The image of a channels-last network as a contiguous tensor (what callers of the unprepared model get)."""
    if isinstance(out, torch.Tensor):
        return out.contiguous()
    image = getattr(out, "image", None)
    if isinstance(image, torch.Tensor) and not image.is_contiguous():
        out.image = image.contiguous()  # a GeneratorOutput (dataclass)
    return None


@torch.no_grad()
def prepare_for_inference(G: nn.Module, *, copy: bool = True, channels_last: bool | None = None,
                          pack: bool | None = None, stripes: int | None = None) -> nn.Module:
    """``G`` prepared for eval-mode inference (see the module docstring); equal outputs within float rounding.

    ``copy=True`` (default) leaves ``G`` untouched and prepares a copy rebuilt from ``G.config`` with G's weights
    (on G's device and dtype); ``copy=False`` prepares ``G`` itself, which then is an inference-only module.
    ``channels_last``: store the convolution kernels channels-last, so that the feature maps stay channels-last
    through the network (:func:`use_channels_last`); ``None`` (default): for an SC-GAN generator on the CPU, where
    it was measured to pay (docs/benchmarks.md). ``pack``: store the kernels of an SC-GAN's deep blocks
    in oneDNN's layout (:func:`pack_deep_kernels`); ``None`` (default): for an SC-GAN on the CPU. ``stripes``: run
    an SC-GAN's last block in that many horizontal stripes (:func:`set_finest_stripes`); ``None`` (default):
    :data:`FINEST_STRIPES_CPU` for an SC-GAN on the CPU whose last block reads a map of at least
    :data:`STRIPES_MIN_BYTES` at its resolution, where that is exact; else the whole map."""
    from .layers import SPADE, SpatiallyConditionalNorm2d
    from .models.generators.scgan import SCGANGenerator, SVGStage
    from .portable import ExportError, fold_spectral_norm

    if channels_last is not None and not isinstance(channels_last, bool):
        raise TypeError(f"prepare_for_inference: channels_last must be True, False or None (the default: an SC-GAN "
                        f"on the CPU), got {channels_last!r}")
    if pack is not None and not isinstance(pack, bool):
        raise TypeError(f"prepare_for_inference: pack must be True, False or None (the default: an SC-GAN on the "
                        f"CPU), got {pack!r}")
    if copy:
        from .models import build_generator

        config = getattr(G, "config", None)
        if not isinstance(config, dict) or "name" not in config:
            raise PrepareError(f"{type(G).__name__} has no registry config (G.config) to copy it from; build it with "
                               f"semsynth.models.build_generator, or pass copy=False to prepare it in place")
        try:
            p = next(G.parameters())
            device, dtype = p.device, p.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        P = build_generator(config)
        P.load_state_dict(G.state_dict())
        for attr in ("model_files",):  # what a generator holds beside its weights
            if hasattr(G, attr):
                raise PrepareError(f"generator {config['name']!r} reads {getattr(G, attr)} beside its weights; "
                                   f"prepare it in place (copy=False)")
        G = P.to(device=device, dtype=dtype)
    G.eval()
    try:
        fold_spectral_norm(G)
    except ExportError as e:
        raise PrepareError(str(e)) from e
    fold_conv_batchnorm(G)
    _replace(G, SPADE, PreparedSPADE)
    _replace(G, SpatiallyConditionalNorm2d, PreparedSCN)
    use_winograd(G)
    if channels_last is None:
        channels_last = isinstance(G, SCGANGenerator) and _device_of(G).type == "cpu"
    if pack is None:
        pack = isinstance(G, SCGANGenerator) and _device_of(G).type == "cpu"
    if pack:  # before the channels-last copies: packed from the kernels as they are
        if not isinstance(G, SCGANGenerator):
            raise PrepareError(f"pack=True: only an SC-GAN generator's deep kernels are packed, not "
                               f"{type(G).__name__}'s; leave pack unset")
        pack_deep_kernels(G)
    if channels_last:
        use_channels_last(G)
    if isinstance(G, SCGANGenerator):
        for m in G.modules():
            if isinstance(m, SVGStage):  # its one-hot ids from the cache the SPADE layers fill (one read of the map)
                m.find_ids = _cached_ids
    for p in G.parameters():
        p.requires_grad_(False)
    G.register_forward_pre_hook(_clear_ids_cache)
    if stripes is not None:
        set_finest_stripes(G, stripes)
    elif isinstance(G, SCGANGenerator) and _device_of(G).type == "cpu" and _finest_map_bytes(G) >= STRIPES_MIN_BYTES:
        with contextlib.suppress(PrepareError):  # where stripes would not be exact, the whole map
            set_finest_stripes(G, FINEST_STRIPES_CPU)
    G.prepared_for_inference = True
    return G


# the default for an SC-GAN on the CPU whose last block reads a map of at least STRIPES_MIN_BYTES per image at its
# resolution: at 256x256 (ADE20K preset, 64 channels: 16 MiB) 3 stripes took the peak of live tensors from 78.6 to
# 40.6 MiB and the peak RSS from 0.53 to 0.48x the official code's, at the same time; on the painter's 128x128
# landscapes model (2 MiB) they cost 11 % of the forward for memory it does not need (docs/benchmarks.md)
FINEST_STRIPES_CPU = 3
STRIPES_MIN_BYTES = 8 << 20


def _finest_map_bytes(G: nn.Module) -> int:
    """The bytes of one image's input map of the SC-GAN's last block at the model's resolution (float32)."""
    h, w = G.resolution
    return getattr(G, G.schedule[-1][0]).in_channels * h * w * 4


def set_finest_stripes(G: nn.Module, stripes: int) -> None:
    """Run a prepared SC-GAN's last block and output conv in ``stripes`` horizontal stripes
    (:attr:`~semsynth.models.generators.scgan.SCGANGenerator.finest_stripes`; 1: the whole map), each with a halo of
    the rows the image depends on (:func:`_rows_read`). Only where that is exact: every layer of the block and the
    output conv of a known reach, every norm a per-pixel map (eval-mode batch norm, folded or not)."""
    from .models.generators.scgan import SCGANGenerator

    if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
        raise ValueError(f"stripes = {stripes!r}; give a whole number >= 1 (1: the whole map)")
    if not isinstance(G, SCGANGenerator):
        raise PrepareError(f"stripes: only an SC-GAN generator runs its last block in stripes, not "
                           f"{type(G).__name__}; leave stripes unset")
    if stripes > 1:
        name = G.schedule[-1][0]
        block = getattr(G, name)
        paths = [(block.norm_0, block.conv_0, block.norm_1, block.conv_1)]
        if block.learned_shortcut:
            paths.append((block.norm_s, block.conv_s))
        reach = [[_rows_read(m) for m in path] for path in paths]
        out = _rows_read(G.conv_img)
        if out is None or any(r is None for path in reach for r in path):
            raise PrepareError(f"stripes = {stripes}: a layer of {name} or the output conv depends on more than a "
                               f"band of rows (a per-image norm, or a layer of unknown reach), so stripes would "
                               f"change the image; use 1")
        G.finest_halo = out + max(sum(path) for path in reach)
    G.finest_stripes = stripes


def _rows_read(m: nn.Module) -> int | None:
    """How many rows on each side of an output row a layer of an SC residual block reads (0: per pixel), or None
    where its output depends on more than a band of rows (a per-image norm) or the layer is not known here."""
    from .models.generators.scgan import RoutedConcatConv, UnconditionalNorm

    if isinstance(m, nn.Conv2d | SpatiallyConditionalConv2d | PreparedSCC):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        st = m.stride if isinstance(m.stride, int) else m.stride[0]
        pad = m.padding if isinstance(m.padding, int | str) else m.padding[0]
        dil = getattr(m, "dilation", 1)
        dil = dil if isinstance(dil, int) else dil[0]
        same = st == 1 and not isinstance(pad, str) and 2 * pad == dil * (k - 1) \
            and getattr(m, "padding_mode", "zeros") == "zeros"
        return pad if same else None
    if isinstance(m, PreparedSCN):
        return 0 if m.norm is None else None
    if isinstance(m, PreparedSPADE):
        shared = _rows_read(m.shared)
        return None if m.norm is not None or shared is None else shared + m.padding[0]
    if isinstance(m, RoutedConcatConv):
        reach = [_rows_read(c) for c in m.convs]
        return None if None in reach else sum(reach)
    if isinstance(m, UnconditionalNorm):
        return _rows_read(m.norm)
    if isinstance(m, nn.Identity):
        return 0
    if isinstance(m, nn.modules.batchnorm._BatchNorm):  # eval: the running statistics, per channel
        return 0 if m.track_running_stats and m.running_mean is not None and not m.training else None
    return None
