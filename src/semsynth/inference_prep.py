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
  returned contiguous.

The prepared model is for inference only: eval mode, no gradients (its parameters do not require them), and its
state_dict is not a checkpoint. Training-mode batch norm (batch statistics) is never folded.
"""

from __future__ import annotations

import itertools
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SemsynthError
from .layers.layout import is_channels_last, to_channels_last
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

    def _piecewise_mod(self, seg: torch.Tensor, ids: torch.Tensor | None = None,
                       channels_last: bool = False) -> torch.Tensor | None:
        """The merged modulation ``[B, 2C, H, W]`` of a one-hot ``seg`` by exact algebra, or None (dense path);
        ``channels_last``: stored pixel-major (as a channels-last map).

        The two stacked 3x3 convs see a 5x5 window: where that window is one class and inside the image, the
        output is the class's row of ``pw_table``. The other pixels (the band within 2 pixels of a class boundary
        or of the border) are computed exactly: the hidden activation of the band and its 1-pixel neighbours as 9
        embedding look-ups per pixel (the shared conv of a one-hot map; outside the image the padding row, zero),
        then the merged conv as one matrix product over the 3x3 neighbourhoods (zero outside the image)."""
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
        if channels_last:  # [B*H*W, 2C]
            mod = self.pw_rows.index_select(0, ids.view(-1))
        else:
            mod = self.pw_table.index_select(1, ids.view(-1))  # [2C, B*H*W]
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
            umod = torch.empty(ubidx.numel(), c2, dtype=mod.dtype, device=mod.device)
            w2 = self.pw_w2
            for s in range(0, ubidx.numel(), step):
                bi = ubidx[s : s + step]
                cols = actv[rows[padded(bi).unsqueeze(1) + off]].view(bi.numel(), -1)
                torch.addmm(self.bias, cols, w2, out=umod[s : s + step])
            if channels_last:
                mod[bidx] = umod[group]
            else:
                mod[:, bidx] = umod[group].t()
        if channels_last:
            return mod.view(B, H, W, c2).permute(0, 3, 1, 2)
        return mod.view(c2, B, H, W).transpose(0, 1)

    # above this fraction of pixels with distinct band windows the dense convs are used (measured break-even ~0.7-0.8
    # as a fraction of band pixels, before the band was computed once per distinct window)
    max_band = 0.7
    band_chunk_bytes = 8 << 20  # the band's neighbourhood matrix is built and multiplied in chunks of this size

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm is None else self.norm(x)
        seg = resize_nearest(semantic.to(x.dtype), x.shape[2:])
        mod = None
        if self.piecewise and x.dtype in (torch.float32, torch.float64) \
                and not (torch.is_grad_enabled() and (x.requires_grad or seg.requires_grad)):
            ids = _cached_ids(semantic)
            if ids is not None:
                mod = self._piecewise_mod(seg, resize_nearest(ids, x.shape[2:]), is_channels_last(normed))
        if mod is None:
            actv = torch.relu_(self.shared(seg))
            # (a plain kernel: oneDNN would take a channels-last one as a reason to convert the input)
            mod = F.conv2d(actv, self.weight.contiguous(), self.bias, padding=self.padding)
        c = self.num_features
        return torch.addcmul(mod[:, c:], normed, mod[:, :c])


_IDS = threading.local()  # per thread (a server runs several forwards at once): (weakref, version, ids)


def _clear_ids_cache(*_: object) -> None:
    """Forget the cached ids: called before every forward of a prepared generator (a forward pre-hook)."""
    _IDS.cache = (None, None, None)


def _cached_ids(semantic: torch.Tensor) -> torch.Tensor | None:
    """:func:`one_hot_ids` of ``semantic``, computed once for the SPADE layers of one forward (they all read the same
    full-size map; a layer resizes the ids as it resizes the map). Keyed on the tensor's identity and, for tensors
    that track it, its version; the cache is per thread and emptied at the start of each forward of the prepared
    generator, so a map changed in place between forwards (an inference-mode tensor has no version) is read again."""
    ref, version, ids = getattr(_IDS, "cache", (None, None, None))
    current = None if semantic.is_inference() else semantic._version
    if ref is not None and ref() is semantic and version == current:
        return ids
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

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm is None else self.norm(x)
        b, n, h, w = routing.shape
        # the 1x1 conv of the n routing channels as one product per image with the bias as its start (a 1x1 conv
        # of 3-4 input channels takes PyTorch's slow generic kernel, and a separate bias pass)
        if is_channels_last(normed):  # [s' | m'] pixel-major, channels-last like x: one product over all pixels
            rows = routing.to(x.dtype).permute(0, 2, 3, 1).reshape(b * h * w, n)
            mod = torch.addmm(self.bias, rows, self.weight.view(-1, n).t()).view(b, h, w, -1).permute(0, 3, 1, 2)
        else:
            mod = torch.baddbmm(self.bias.view(1, -1, 1), self.weight.view(1, -1, n).expand(b, -1, -1),
                                routing.to(x.dtype).reshape(b, n, h * w)).view(b, -1, h, w)
        c = self.num_features
        return torch.addcmul(mod[:, c:], normed, mod[:, :c])


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
def prepare_for_inference(G: nn.Module, *, copy: bool = True, channels_last: bool | None = None) -> nn.Module:
    """``G`` prepared for eval-mode inference (see the module docstring); equal outputs within float rounding.

    ``copy=True`` (default) leaves ``G`` untouched and prepares a copy rebuilt from ``G.config`` with G's weights
    (on G's device and dtype); ``copy=False`` prepares ``G`` itself, which then is an inference-only module.
    ``channels_last``: store the convolution kernels channels-last, so that the feature maps stay channels-last
    through the network (:func:`use_channels_last`); ``None`` (default): for an SC-GAN generator on the CPU, where
    it was measured to pay (docs/benchmarks.md)."""
    from .layers import SPADE, SpatiallyConditionalNorm2d
    from .models.generators.scgan import SCGANGenerator, SVGStage
    from .portable import ExportError, fold_spectral_norm

    if channels_last is not None and not isinstance(channels_last, bool):
        raise TypeError(f"prepare_for_inference: channels_last must be True, False or None (the default: an SC-GAN "
                        f"on the CPU), got {channels_last!r}")
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
    if channels_last:
        use_channels_last(G)
    if isinstance(G, SCGANGenerator):
        for m in G.modules():
            if isinstance(m, SVGStage):  # its one-hot ids from the cache the SPADE layers fill (one read of the map)
                m.find_ids = _cached_ids
    for p in G.parameters():
        p.requires_grad_(False)
    G.register_forward_pre_hook(_clear_ids_cache)
    G.prepared_for_inference = True
    return G
