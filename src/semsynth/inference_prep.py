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
  an integer (what nearest interpolation computes then);
* SCN (:class:`PreparedSCN`): the same folding, the scale and shift tables one 1x1 convolution with a bias;
* in-place activations where the activated tensor is not used again (SC-GAN's blocks, SVG and RGB heads).

The prepared model is for inference only: eval mode, no gradients (its parameters do not require them), and its
state_dict is not a checkpoint. Training-mode batch norm (batch statistics) is never folded.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SemsynthError


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


def resize_nearest(semantic: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(semantic, size, mode="nearest")`` without the work where it is a view: the map itself at the
    same size, a strided view when both size ratios are integers (nearest takes source pixel ``i * ratio`` then)."""
    h, w = semantic.shape[2:]
    th, tw = int(size[0]), int(size[1])
    if (h, w) == (th, tw):
        return semantic
    if h % th == 0 and w % tw == 0:
        return semantic[:, :, :: h // th, :: w // tw]
    return F.interpolate(semantic, size=(th, tw), mode="nearest")


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

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm is None else self.norm(x)
        seg = resize_nearest(semantic.to(x.dtype), x.shape[2:])
        actv = torch.relu_(self.shared(seg))
        mod = F.conv2d(actv, self.weight, self.bias, padding=self.padding)
        c = self.num_features
        return torch.addcmul(mod[:, c:], normed, mod[:, :c])


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
        mod = F.conv2d(routing.to(x.dtype), self.weight, self.bias)
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


def _inplace_activations_scgan(G: nn.Module) -> None:
    """SC-GAN: every LeakyReLU / ReLU module activates a fresh tensor used only there (SVG stages, RGB heads,
    ``act(norm(x))`` in the blocks, the final ``act(x)``), so it may overwrite it."""
    from .models.generators.scgan import UnconditionalNorm

    if any(isinstance(m, UnconditionalNorm) and isinstance(m.norm, nn.Identity) for m in G.modules()):
        return  # norm_type="batch" with param_free_norm="none": act(norm(x)) would overwrite x itself
    for m in G.modules():
        if isinstance(m, (nn.LeakyReLU, nn.ReLU)):
            m.inplace = True


@torch.no_grad()
def prepare_for_inference(G: nn.Module, *, copy: bool = True) -> nn.Module:
    """``G`` prepared for eval-mode inference (see the module docstring); equal outputs within float rounding.

    ``copy=True`` (default) leaves ``G`` untouched and prepares a copy rebuilt from ``G.config`` with G's weights
    (on G's device and dtype); ``copy=False`` prepares ``G`` itself, which then is an inference-only module."""
    from .layers import SPADE, SpatiallyConditionalNorm2d
    from .models.generators.scgan import SCGANGenerator
    from .portable import ExportError, fold_spectral_norm

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
    if isinstance(G, SCGANGenerator):
        _inplace_activations_scgan(G)
    for p in G.parameters():
        p.requires_grad_(False)
    G.prepared_for_inference = True
    return G
