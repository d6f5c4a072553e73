"""CC-FPSE generator: "Learning to Predict Layout-to-image Conditional Convolutions for Semantic Image Synthesis"
(Liu et al., NeurIPS 2019), built as the official ``CondConvGenerator`` (``xh-liu/CC-FPSE``) so that its
checkpoints load (``semsynth convert --from ccfpse``).

Reading order follows the generator half of the paper's architecture figure:

1. The **label feature pyramid** (the paper's global-context-aware weight-prediction network): an encoder of the
   one-hot label map (a 3x3 conv, then stride-2 3x3 convs down to the generator's first scale) and an FPN-style
   top-down path (nearest x2 up-sampling + 1x1 lateral convs, then a 3x3 conv), giving a ``ngf``-channel feature
   map at every scale of the generator, coarse to fine. Each conv: spectral norm, batch norm, LReLU(0.2).
2. The **trunk**: ``z`` (the VAE's, or N(0, I)) through a linear layer to a ``16 ngf`` map at ``H/32`` (``H/64``
   for ``num_upsampling_layers="more"``), or, without a VAE, a 3x3 conv on the down-sampled label map; seven
   **conditional-convolution blocks** with nearest x2 up-sampling between them; ``tanh(conv(LReLU(x)))``.
3. Each **CC block** reads ``cond = [label map, pyramid features]`` at its scale and applies two
   **depthwise-separable conditional convolutions**::

       BN -> per-pixel depthwise 3x3 conv, kernels predicted from cond -> pointwise 1x1 conv
          -> x sigmoid attention predicted from cond (SE-style, per pixel and channel) -> LReLU

   with a SPADE + 1x1 conv shortcut where the width changes (widths 16, 16, 16, 8, 4, 2, 1 x ngf).

Differences from the official code a user could notice (docs/models.md):

* The official block also builds three BatchNorms that its forward never calls (``norm_0``, ``conv_0.norm_layer``,
  ``conv_2.norm_layer``: 26,112 parameters at ngf 64). semsynth builds them too, under the official names, but
  **inert** (:class:`CondConvBlock`): never called and frozen. They exist only so that the state dict has the
  official layout (a converted checkpoint loads as it is) and the parameter count is the official one (140,704,323
  with the VAE at the ADE20K setting). Being frozen, they are not trainable parameters here, where the official
  ones are trainable parameters that never get a gradient: a count of ``requires_grad`` parameters only is 26,112
  lower than the official one.
* ``num_upsampling_layers="most"`` (SPADE's 8-scale layout) does not exist in CC-FPSE: the label pyramid has no
  level for it, so only ``normal`` and ``more`` are offered.
* The official code picks ``more`` from ``--dataset_mode cityscapes``; here it is an option.

Official option names: ``ngf``, ``use_vae``, ``z_dim``, ``label_norm`` = the norm of ``--norm_G``
(``spectralsync_batch``), ``hidden`` and ``spade_hidden`` = the hard-coded 128 of the weight-prediction convs and
of SPADE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import SPADE, init_weights, spectral_norm
from ...layers.condconv import ConditionalDepthwiseConv2d
from ...layers.init import INIT_SCHEMES
from ...layers.norm import SyncableBatchNorm2d
from ...layers.onehot_conv import label_ids, labels_for_lookups, read_labels_by_lookups
from ...layers.recompute import RecomputeMixin
from ...layers.spade import resize_nearest
from ...layers.resize import up2_nearest
from ...registry import check_range
from .. import GENERATORS
from ..options import height_width as _as_hw
from ..outputs import GeneratorOutput

LEVELS = {"normal": 6, "more": 7}  # label-pyramid levels = generator scales
NORMS = ("syncbatch", "batch", "instance", "none")
KERNEL = 3  # the conditional depthwise convolutions are 3x3 (official: hard-coded)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def affine_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation with a learned per-channel affine (instance norm: without, as the official ``instance``)."""
    if kind == "syncbatch":
        return SyncableBatchNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}; valid choices are: {', '.join(NORMS)}")


def conv_norm_act(cin: int, cout: int, kernel: int, stride: int, norm: str, spectral: bool) -> nn.Sequential:
    """conv (spectral norm; bias only without a norm after it) -> norm -> LReLU(0.2)."""
    conv = spectral_norm(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=norm == "none"), spectral)
    if norm == "none":
        return nn.Sequential(conv, _lrelu())
    return nn.Sequential(conv, affine_norm(norm, cout), _lrelu())


# --------------------------------------------------------------------------------------------------------
# 1. Label feature pyramid


class LabelFeaturePyramid(nn.Module):
    """``forward(semantic [B, C, H, W]) -> [f_1, ..., f_L]``, ``width`` channels each, coarse (``H / 2**(L-1)``)
    to fine (``H``).

    Bottom-up: ``encode[0]`` (3x3, stride 1), then ``encode[1..L-1]`` (3x3, stride 2). Top-down: ``f_1`` is the
    coarsest encoding; ``f_{k+1} = decode[k-1](up2(f_k) + lateral[k-1](encoding at that scale))``.
    """

    def __init__(self, in_channels: int, width: int, levels: int, norm: str, spectral: bool) -> None:
        super().__init__()
        self.levels = levels
        self.encode = nn.ModuleList(
            [conv_norm_act(in_channels, width, 3, 1, norm, spectral)]
            + [conv_norm_act(width, width, 3, 2, norm, spectral) for _ in range(levels - 1)])
        self.lateral = nn.ModuleList([conv_norm_act(width, width, 1, 1, norm, spectral) for _ in range(levels - 1)])
        self.decode = nn.ModuleList([conv_norm_act(width, width, 3, 1, norm, spectral) for _ in range(levels - 1)])

    def forward(self, semantic: torch.Tensor) -> list[torch.Tensor]:
        encodings = []
        x = semantic
        for enc in self.encode:
            x = enc(x)
            encodings.append(x)  # fine to coarse
        features = [encodings[-1]]
        for lateral, decode, skip in zip(self.lateral, self.decode, reversed(encodings[:-1])):
            up = up2_nearest(features[-1])
            features.append(decode(up + lateral(skip)))
        return features


# --------------------------------------------------------------------------------------------------------
# 2. Depthwise-separable conditional convolution and the CC block


def _predictor(cond_channels: int, hidden: int, out_channels: int, gate: bool) -> nn.Sequential:
    """3x3 conv -> ReLU -> 3x3 conv (-> sigmoid): a per-pixel prediction from the condition map."""
    layers = [nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(),
              nn.Conv2d(hidden, out_channels, 3, padding=1)]
    if gate:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class DepthwiseSeparableCC(nn.Module):
    """``forward(x [B, cin, H, W], cond [B, C_cond, H, W]) -> [B, cout, H, W]``:

        LReLU( pointwise( CC_depthwise( norm(x); kernels(cond) ) ) * attention(cond) )

    ``kernels`` predicts one 3x3 kernel per channel and pixel (``cin * 9`` channels); ``attention`` one sigmoid
    gate per output channel and pixel.
    """

    def __init__(self, cin: int, cout: int, cond_channels: int, hidden: int, norm: str) -> None:
        super().__init__()
        self.norm = affine_norm(norm, cin)
        self.kernels = _predictor(cond_channels, hidden, cin * KERNEL * KERNEL, gate=False)
        self.depthwise = ConditionalDepthwiseConv2d(KERNEL)
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.attention = _predictor(cond_channels, hidden, cout, gate=True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(self.norm(x), self.kernels(cond)))
        return F.leaky_relu(y * self.attention(cond), 0.2)


def inert_batchnorm(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm that no forward calls, frozen (``requires_grad_(False)``): it keeps its initial values through
    training. Only for the official state layout and parameter count (see :class:`CondConvBlock`)."""
    return nn.BatchNorm2d(channels, affine=True).requires_grad_(False)


class InertDepthConvNorm(nn.Module):
    """Stands where the official block has a ``DepthConv``, holding only its ``norm_layer`` (an inert BatchNorm:
    the official ``DepthConv.forward`` never calls it). Has no forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_layer = inert_batchnorm(channels)


class CondConvBlock(RecomputeMixin, nn.Module):
    """``x + cc_1(cc_0(x))`` (middle width ``min(fin, fout)``), with ``conv_1x1(SPADE(x))`` as the shortcut when
    the width changes. Both convolutions and the shortcut read the same condition map.

    ``norm_0``, ``conv_0.norm_layer`` and ``conv_2.norm_layer`` are **inert**: three BatchNorms the official block
    (``DepthsepCCBlock``) builds but its forward never calls. They are kept, under the official names, only so that
    the state dict has the official layout (official checkpoints load as they are) and the parameter count equals
    the official one; :meth:`forward` never calls them and they are frozen, so they keep their initial values."""

    def __init__(self, fin: int, fout: int, cond_channels: int, hidden: int, spade_hidden: int, norm: str,
                 spectral: bool) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.cc_0 = DepthwiseSeparableCC(fin, fmid, cond_channels, hidden, norm)
        self.cc_1 = DepthwiseSeparableCC(fmid, fout, cond_channels, hidden, norm)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.shortcut_norm = SPADE(fin, cond_channels, spade_hidden, 3, norm)
            self.shortcut_conv = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False), spectral)
        # inert: never called, frozen (the official layout and parameter count; see the class docstring)
        self.norm_0 = inert_batchnorm(fmid)
        self.conv_0 = InertDepthConvNorm(fin)
        self.conv_2 = InertDepthConvNorm(fmid)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        xs = self.shortcut_conv(self.shortcut_norm(x, cond)) if self.learned_shortcut else x
        return xs + self.cc_1(self.cc_0(x, cond), cond)


# --------------------------------------------------------------------------------------------------------
# 3. The generator


@GENERATORS.register("ccfpse", "CC-FPSE (NeurIPS 2019): label feature pyramid predicting per-pixel depthwise "
                               "conditional convolutions")
class CondConvGenerator(nn.Module):
    """CC-FPSE generator. ``forward(semantic [B, C, H, W], z=None) -> image [B, 3, H, W]`` in ``[-1, 1]``.

    Interface (from the dataset): ``num_classes`` one-hot channels (don't-care included), ``use_instance`` (one
    more, instance-edge channel), ``resolution`` (int or ``[height, width]``; fixes the size of the first map
    with ``use_vae``; without, any size divisible by 32 (64 for ``more``) works).

    Args:
        ngf: width; the blocks are 16, 16, 16, 8, 4, 2, 1 x ngf wide, the label pyramid ngf.
        num_upsampling_layers: ``normal`` (first map at H/32; official for ADE20K and COCO-Stuff) or ``more``
            (H/64, one more pyramid level; official for Cityscapes).
        use_vae: start from ``z [B, z_dim]`` through a linear layer (the VAE encoder's z in training, N(0, I)
            when not given; all official scripts) instead of a conv on the down-sampled label map.
        z_dim: size of z.
        hidden: width of the convs that predict the conditional kernels and attention gates (official 128).
        spade_hidden: hidden width of the SPADE shortcut (official 128).
        norm: normalisation in the CC blocks (with a learned affine) and, parameter-free, in SPADE: ``syncbatch``
            (official), ``batch``, ``instance``, ``none``.
        label_norm: normalisation in the label pyramid (official ``--norm_G spectralsync_batch``: sync batch).
        spectral: spectral norm on the label-pyramid convs and the shortcut convs (official: on).
        init, init_gain: weight initialisation (official: xavier-normal, gain 0.02).
    """

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 ngf: int = 64, num_upsampling_layers: Literal["normal", "more"] = "normal", use_vae: bool = True,
                 z_dim: int = 256, hidden: int = 128, spade_hidden: int = 128,
                 norm: Literal["syncbatch", "batch", "instance", "none"] = "syncbatch",
                 label_norm: Literal["syncbatch", "batch", "instance", "none"] = "syncbatch",
                 spectral: bool = True, init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        if num_upsampling_layers not in LEVELS:
            raise ValueError(f"num_upsampling_layers = {num_upsampling_layers!r} is not valid; choose one of: "
                             f"{', '.join(LEVELS)} (CC-FPSE has no 'most' layout)")
        for name, kind in (("norm", norm), ("label_norm", label_norm)):
            if kind not in NORMS:
                raise ValueError(f"{name} = {kind!r} is not valid; choose one of: {', '.join(NORMS)}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
        for name, v in (("num_classes", num_classes), ("ngf", ngf), ("z_dim", z_dim), ("hidden", hidden),
                        ("spade_hidden", spade_hidden)):
            check_range(name, v, ge=1, integer=True)
        check_range("init_gain", init_gain, gt=0)
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.levels = LEVELS[num_upsampling_layers]
        self.factor = 2 ** (self.levels - 1)  # first map = resolution / factor
        self.resolution = _as_hw(resolution)
        h, w = self.resolution
        if h % self.factor or w % self.factor:
            raise ValueError(f"resolution {h}x{w} must be divisible by {self.factor} for "
                             f"num_upsampling_layers={num_upsampling_layers!r}")
        self.start_size = (h // self.factor, w // self.factor)
        self.use_vae, self.z_dim, self.ngf = use_vae, z_dim, ngf
        self.latent_dim = z_dim if use_vae else 0  # the generator contract (models/__init__.py)

        # 1. label feature pyramid
        self.label_pyramid = LabelFeaturePyramid(self.in_channels, ngf, self.levels, label_norm, spectral)

        # 2. trunk: first map, CC blocks, output
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * ngf * self.start_size[0] * self.start_size[1])
        else:
            self.fc = nn.Conv2d(self.in_channels, 16 * ngf, 3, padding=1)
        cond = self.in_channels + ngf
        args = {"cond_channels": cond, "hidden": hidden, "spade_hidden": spade_hidden, "norm": norm, "spectral": spectral}
        self.head_0 = CondConvBlock(16 * ngf, 16 * ngf, **args)
        self.G_middle_0 = CondConvBlock(16 * ngf, 16 * ngf, **args)
        self.G_middle_1 = CondConvBlock(16 * ngf, 16 * ngf, **args)
        self.up_0 = CondConvBlock(16 * ngf, 8 * ngf, **args)
        self.up_1 = CondConvBlock(8 * ngf, 4 * ngf, **args)
        self.up_2 = CondConvBlock(4 * ngf, 2 * ngf, **args)
        self.up_3 = CondConvBlock(2 * ngf, ngf, **args)
        self.conv_img = nn.Conv2d(ngf, 3, 3, padding=1)
        # (block, pyramid level it reads, up-sample before it). "normal": both middle blocks at the second
        # level; "more" up-samples between them, so every later block reads one level further down.
        if num_upsampling_layers == "normal":
            self.schedule = [("head_0", 0, False), ("G_middle_0", 1, True), ("G_middle_1", 1, False),
                             ("up_0", 2, True), ("up_1", 3, True), ("up_2", 4, True), ("up_3", 5, True)]
        else:
            self.schedule = [("head_0", 0, False), ("G_middle_0", 1, True), ("G_middle_1", 2, True),
                             ("up_0", 3, True), ("up_1", 4, True), ("up_2", 5, True), ("up_3", 6, True)]
        init_weights(self, init, init_gain)
        # the convs that read the label map (alone, or concatenated with the label features) compute its one-hot
        # channels by look-ups (exact)
        readers = [self.label_pyramid.encode[0][0], *([] if use_vae else [self.fc])]
        for m in self.modules():
            if isinstance(m, DepthwiseSeparableCC):
                readers += [m.kernels[0], m.attention[0]]
            elif isinstance(m, SPADE):
                readers.append(m.mlp_shared[0])
        for m in readers:
            read_labels_by_lookups(m, 0, num_classes)

    @staticmethod
    def latent_dim_of(config) -> int:
        """The size of z this config takes: ``z_dim`` with ``use_vae`` (the default), else 0."""
        return int(config.get("z_dim", 256)) if config.get("use_vae", True) else 0

    def check_input(self, semantic: torch.Tensor) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"CC-FPSE generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"input size {h}x{w} must be divisible by {self.factor}; resize or crop the label map")
        if self.use_vae and (h, w) != self.resolution:
            raise ShapeError(f"input size {h}x{w} differs from the resolution {self.resolution[0]}x"
                             f"{self.resolution[1]} this generator (use_vae: a linear first layer) was built for")

    def first_map(self, semantic: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        b = semantic.shape[0]
        h, w = semantic.shape[2] // self.factor, semantic.shape[3] // self.factor
        if not self.use_vae:
            if z is not None:
                raise ValueError("this generator takes no z (use_vae=false); build it with use_vae=true for "
                                 "multi-modal synthesis")
            return self.fc(resize_nearest(semantic, (h, w)))
        if z is None:
            z = torch.randn(b, self.z_dim, device=semantic.device, dtype=semantic.dtype)
        if z.shape != (b, self.z_dim):
            raise ShapeError(f"z has shape {tuple(z.shape)}, expected [{b}, {self.z_dim}]")
        return self.fc(z).view(b, 16 * self.ngf, h, w)

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic)
        with label_ids(labels_for_lookups(semantic, self.num_classes)):
            return self._forward(semantic, z, return_aux)

    def _forward(self, semantic: torch.Tensor, z: torch.Tensor | None,
                 return_aux: bool) -> torch.Tensor | GeneratorOutput:
        features = self.label_pyramid(semantic)
        x = self.first_map(semantic, z)
        for name, level, upsample in self.schedule:
            if upsample:
                x = up2_nearest(x)
            labels = resize_nearest(semantic, x.shape[2:])
            x = getattr(self, name)(x, torch.cat([labels, features[level]], dim=1))
        image = torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
        return GeneratorOutput(image) if return_aux else image
