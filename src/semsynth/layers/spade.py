"""SPADE: spatially-adaptive denormalisation (Park et al. 2019).

    y = norm(x) * (1 + gamma(S)) + beta(S),   gamma, beta = convs over a shared conv+ReLU of the label map S

The label map is resized to the feature map with nearest neighbour (:func:`resize_nearest`: a view where it can be). Used by SC-GAN's learned shortcuts
(official code: 3x3 convs, 128 hidden channels, sync-batch parameter-free norm) and, inside
:class:`SPADEResBlock`, by the SPADE generator (paper Fig. 4).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .modulated_norm import modulated_batch_norm
from .norm import param_free_norm
from .onehot_conv import ids_of_map
from .recompute import RecomputeMixin, saved_as
from .resize import resize_nearest
from .spade_piecewise import PiecewiseRecipe, interior, one_hot_ids, piecewise_modulation
from .spectral import spectral_norm
from .winograd import is_same_3x3


def _scale_from_recipe(recipe: PiecewiseRecipe, channels: int) -> torch.Tensor:
    return 1 + recipe.assemble(slice(0, channels))


def _modulation_from_recipe(recipe: PiecewiseRecipe, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _scale_from_recipe(recipe, channels), recipe.assemble(slice(channels, 2 * channels))


def _plain_3x3(m: nn.Module) -> bool:
    """A plain 3x3 conv, stride 1, zero padding 1, with a bias (what the piecewise algebra covers)."""
    return is_same_3x3(m, plain=True) and m.bias is not None


class SPADE(nn.Module):
    """``forward(x [B, C, H, W], semantic [B, L, H0, W0]) -> [B, C, H, W]``."""

    def __init__(self, num_features: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "syncbatch") -> None:
        super().__init__()
        self.num_features, self.label_channels = num_features, label_channels
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm, num_features)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, num_features, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        if semantic.dim() != 4 or semantic.shape[1] != self.label_channels:
            raise ShapeError(
                f"SPADE: label map has shape {tuple(semantic.shape)}, expected [B, {self.label_channels}, H, W]"
            )
        semantic = semantic.to(x.dtype)
        seg = resize_nearest(semantic, x.shape[2:])
        recipe: list = []
        mod = self._piecewise(seg, recipe, semantic)
        if mod is not None:
            c = self.num_features
            gamma, beta = mod
            scale = 1 + gamma
            # in training the normalisation keeps the few pieces mod is made of instead of the [B, C, H, W] scale,
            # and assembles it again in backward (the same gathers, the same values; 30 MiB at SC-GAN's preset);
            # the conv after it keeps them too, not the output (rebuilt: 30 MiB more)
            with saved_as(scale, recipe[0], functools.partial(_scale_from_recipe, channels=c)):
                return modulated_batch_norm(self.param_free_norm, x, scale, beta,
                                            modulation=((recipe[0], c), _modulation_from_recipe))
        actv = self.mlp_shared(seg)
        return modulated_batch_norm(self.param_free_norm, x, 1 + self.mlp_gamma(actv), self.mlp_beta(actv))

    # Above this fraction of band pixels (within 2 pixels of a class boundary or the border) the dense convs run:
    # measured break-even 0.7-0.8 in eval (forward only), 0.3-0.45 in training (docs/benchmarks.md); 0 switches
    # the piecewise path off. Below piecewise_min_work (label channels x hidden channels) the dense convs are
    # cheap and always run: at 15 x 32 (the faces preset) the piecewise training step took twice their time.
    piecewise_max_band = 0.7
    piecewise_max_band_train = 0.35
    piecewise_min_work = 4096

    def _piecewise(self, seg: torch.Tensor, recipe: list | None = None, semantic: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(gamma, beta)`` by :mod:`.spade_piecewise` (exact, with its own backward) when ``seg`` is a one-hot
        map without gradient, the convs are plain 3x3 ones and enough of the map is region interior; else None.
        ``semantic``: the map ``seg`` was resized from, whose ids the forward's label state may hold already."""
        shared, gamma, beta = self.mlp_shared[0], self.mlp_gamma, self.mlp_beta
        if self.piecewise_max_band <= 0 or seg.requires_grad or seg.dtype not in (torch.float32, torch.float64) \
                or min(seg.shape[2:]) < 5 or seg.is_meta or torch.jit.is_tracing() or torch.compiler.is_compiling() \
                or not all(_plain_3x3(m) for m in (shared, gamma, beta)):
            return None
        if self.label_channels * shared.out_channels < self.piecewise_min_work:
            return None
        limit = self.piecewise_max_band
        if torch.is_grad_enabled() and any(p.requires_grad for p in (shared.weight, gamma.weight, beta.weight)):
            limit = min(limit, self.piecewise_max_band_train)
        known, ids = (False, None) if semantic is None else ids_of_map(semantic, self.label_channels, *seg.shape[2:])
        if not known:
            ids = one_hot_ids(seg)
        if ids is None or (~interior(ids, 5)).sum().item() > limit * ids.numel():
            return None
        w2 = torch.cat([gamma.weight, beta.weight])
        b2 = torch.cat([gamma.bias, beta.bias])
        return piecewise_modulation(ids, shared.weight, shared.bias, w2, b2, recipe, split=self.num_features)


class SPADEResBlock(RecomputeMixin, nn.Module):
    """The SPADE residual block (paper Fig. 4, right): ``forward(x [B, fin, H, W], semantic) -> [B, fout, H, W]``.

        dx = conv_1(LReLU(SPADE_1(conv_0(LReLU(SPADE_0(x))))))          (3x3 convs, middle width min(fin, fout))
        out = shortcut + dx,   shortcut = conv_s(SPADE_s(x)) (1x1, no bias) when fin != fout, else x

    ``spectral`` puts spectral norm on the three convs (not inside SPADE). The attribute names are those of the
    official ``SPADEResnetBlock`` (``conv_0``, ``conv_1``, ``conv_s``, ``norm_0``, ``norm_1``, ``norm_s``).
    """

    def __init__(self, fin: int, fout: int, label_channels: int, *, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "syncbatch", spectral: bool = True) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3, padding=1), spectral)
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3, padding=1), spectral)
        self.norm_0 = SPADE(fin, label_channels, hidden, kernel_size, norm)
        self.norm_1 = SPADE(fmid, label_channels, hidden, kernel_size, norm)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, label_channels, hidden, kernel_size, norm)

    def forward(self, x: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, semantic)) if self.learned_shortcut else x
        # in place: a SPADE output is a fresh tensor that no operator keeps for backward (LReLU's backward reads
        # the sign from its output), so the conv after it keeps the one map
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, semantic), 0.2, inplace=True))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, semantic), 0.2, inplace=True))
        return shortcut + dx
