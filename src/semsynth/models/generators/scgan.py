"""SC-GAN generator: "Image Synthesis via Semantic Composition" (Wang et al., ICCV 2021).

Reading order follows the paper's Figure 2:

1. The **Semantic Vector Generator (SVG)** refines the label pyramid coarse to fine (a CRN-like cascade) and
   returns one feature map per scale plus a coarse RGB prediction (trained by the L_s loss).
2. Each scale's features are pooled into ``n`` channel groups and mapped by ``g`` (softmax of tau * v):
   the per-pixel **semantic vectors**, which route the operators below.
3. The **Semantic Render Generator (SRG)** renders the image with **SC residual blocks** (Figure 4):
   SCN -> LReLU -> SCC, twice, plus a learned SPADE + conv shortcut where the width changes.

Defaults follow the official code (``dvlab-research/SCGAN``), so that its checkpoints load; where the paper
says otherwise, the paper's choice is an option (see ``docs/scgan.md``):

=========================  ==================================  ===================================
topic                      official (default)                  paper option
=========================  ==================================  ===================================
SRG input                  ``input_mode="label"`` (conv on the  ``input_mode="noise"``: z ~ N(0, I)
                           down-sampled one-hot map)           through a linear layer (also VAE z)
SVG upsampling             ``svg_upsample="nearest"``          ``"bilinear"`` (supplement, Sec. A)
SCB shortcut               ``shortcut="spade"``                ``"scn"`` (only SC operators)
=========================  ==================================  ===================================

Official option names: ``srg_width`` = ngf, ``fc_width`` = nff, ``svg_width`` = nrf, ``conv_candidates`` =
num_experts_conv, ``norm_candidates`` = num_experts_norm, ``svg_spectral`` = not no_spectral_on_routing,
``position_encoding`` = position, ``pyramid_position`` = pyr_pos, ``position_levels`` = pyr_rng.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import (
    SPADE,
    IterativeGaussian,
    SpatiallyConditionalConv2d,
    SpatiallyConditionalNorm2d,
    apply_mapping,
    channel_pool,
    init_weights,
    spectral_norm,
)
from ...layers.init import INIT_SCHEMES
from ...layers.norm import SyncableBatchNorm2d
from ...layers.onehot_conv import ids_of_map, label_ids, lazy_labels, onehot_conv3x3, read_labels_by_lookups
from ...layers.recompute import RecomputeMixin, rebuild_scope, rebuildable, saved_as
from ...layers.resize import up2_nearest
from ...layers.routing import MAPPINGS
from ...layers.spade import resize_nearest
from ...layers.spade_piecewise import one_hot_ids
from ...layers.up_conv import up2_conv3x3
from ...layers.winograd import is_same_3x3
from ...registry import check_range
from .. import GENERATORS
from ..options import check_choice as _choice
from ..options import height_width as _as_hw
from ..outputs import GeneratorOutput

LAYOUTS = {"normal": 6, "more": 7}  # number of SVG stages / label-pyramid levels


_up2 = up2_nearest


def _halve(t: torch.Tensor) -> torch.Tensor:
    """Bilinear 0.5x down-sampling. Of an even-sized map that is the 2x2 average, computed here as two strided sums:
    equal bit for bit on one-hot maps (every level a multiple of 1/4^k), to rounding otherwise, and 1.6x (256x256)
    to 12x (64x64) faster than ``upsample_bilinear2d`` on the CPU, which copies its input first."""
    if t.dim() != 4 or t.shape[2] % 2 or t.shape[3] % 2:
        return F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False)
    rows = t[:, :, 0::2] + t[:, :, 1::2]
    return (rows[..., 0::2] + rows[..., 1::2]).mul_(0.25)


def _lrelu(inplace: bool = True) -> nn.Module:
    """LeakyReLU(0.2), in place by default: every activation of this generator reads a fresh tensor used nowhere
    else (a conv's or a norm's output, a concatenation, a residual sum), which no operator keeps for backward, so
    overwriting it keeps one activation map less per layer in training (the LReLU's backward reads the sign from
    its output; docs/benchmarks.md). Autograd's version counters reject any misuse of this rule."""
    return nn.LeakyReLU(0.2, inplace=inplace)


# --------------------------------------------------------------------------------------------------------
# 1. Semantic Vector Generator


class SVGStage(RecomputeMixin, nn.Sequential):
    """A refining SVG stage: ``forward(previous, labels) = layers(cat(up2(previous), labels))`` with the layers
    ``LReLU, conv, LReLU, conv`` (state-dict keys ``0`` to ``3``, as a plain ``nn.Sequential``). A recompute unit
    (``train.recompute``): the up-sampled concatenation at the stage's full resolution and its activation are not
    kept for backward (at 256x256 with 151 classes, 46 MiB each in the finest stage).

    The finest stage (``onehot_labels``) reads the generator's one-hot map itself. There the LReLU leaves the labels
    as they are (they are >= 0), so the first conv splits into a conv of the up-sampled previous stage plus a conv
    of the labels, and the latter is computed by look-ups (:mod:`semsynth.layers.onehot_conv`, exact, with its
    weight gradient); an instance-edge channel after the classes keeps a dense 1-channel conv. The concatenation is
    then never built. Where the map is not one-hot, or the label conv is small (classes x out channels below
    ``onehot_min_work``), the stage runs as written above."""

    onehot_min_work = 4096  # as SPADE's piecewise_min_work: below it the dense conv is as cheap as the look-ups
    # how the class ids of the labels are found (None: from the forward's label state when the labels are the
    # generator's own map, else by one_hot_ids): semsynth.inference_prep gives a prepared model's stage the
    # per-forward cache its SPADE layers use, so that the one-hot map is read once for both
    find_ids = None

    def __init__(self, *layers: nn.Module, upsample: str = "nearest", label_channels: int = 0,
                 onehot_labels: bool = False) -> None:
        super().__init__(*layers)
        self.upsample = upsample
        self.label_channels, self.onehot_labels = label_channels, onehot_labels

    def forward(self, previous: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ids, phases = self._onehot_ids(labels), self._by_phases(previous)
        if ids is None and not phases:
            x = torch.cat([self._up(previous), labels], dim=1)
            for layer in self:
                x = layer(x)
            return x
        # the first conv split by input channels: the up-sampled previous stage, then the labels
        act, conv1 = self[0], self[1]
        w = conv1.weight  # read once: one power iteration of its spectral norm, as conv1(x) would
        cp, L = previous.shape[1], self.label_channels
        if phases:  # act(up2(p)) = up2(act(p)), and a 3x3 conv of up2(.) is computed on the small map
            x = up2_conv3x3(self._activate(previous), w[:, :cp], conv1.bias)
        else:
            x = F.conv2d(act(self._up(previous)), w[:, :cp], conv1.bias, padding=1)
        if ids is None:  # the activated labels kept by the conv as the label map (rebuilt: SC-GAN's pyramid level)
            x = x + F.conv2d(rebuildable(self._activate(labels), (labels,), self._activate), w[:, cp:], padding=1)
        else:
            x = x + onehot_conv3x3(ids, w[:, cp : cp + L])
            if labels.shape[1] > L:  # the instance-edge channel (not activated in place: it is the caller's input)
                x = x + F.conv2d(self._activate(labels[:, L:]), w[:, cp + L :], padding=1)
        for layer in list(self)[2:]:
            x = layer(x)
        return x

    phases_min_pixels = 256  # up2_conv3x3 from a 16x16 previous stage up (measured: 0.37-0.70x the dense conv;
    #                          at 8x8 its kernel sums and small 2x2 convs made it 1.3x)

    def _up(self, previous: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return up2_nearest(previous)
        return F.interpolate(previous, scale_factor=2.0, mode=self.upsample, align_corners=False)

    def _splittable(self, t: torch.Tensor) -> bool:
        """Whether the first conv may run split by input channels: an LReLU or ReLU before a same-size 3x3 conv,
        in eager mode (not tracing or compiling), on real tensors."""
        return isinstance(self[0], (nn.LeakyReLU, nn.ReLU)) and is_same_3x3(self[1]) and not t.is_meta \
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()

    def _by_phases(self, previous: torch.Tensor) -> bool:
        """Whether the first conv's part on the up-sampled previous stage runs on the small map (up2_conv3x3)."""
        return self.upsample == "nearest" and previous.shape[2] * previous.shape[3] >= self.phases_min_pixels \
            and self._splittable(previous)

    def _activate(self, t: torch.Tensor) -> torch.Tensor:
        """The stage's first activation, never in place (``t`` is still used: a feature, or the caller's map)."""
        act = self[0]
        return F.leaky_relu(t, act.negative_slope) if isinstance(act, nn.LeakyReLU) else F.relu(t)

    def _onehot_ids(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Class ids ``[B, 1, H, W]`` of the one-hot labels of the finest stage when the look-up path applies."""
        conv1, L = self[1], self.label_channels
        if not self.onehot_labels or L * conv1.out_channels < self.onehot_min_work or labels.requires_grad \
                or labels.shape[1] not in (L, L + 1) or labels.dtype not in (torch.float32, torch.float64) \
                or not self._splittable(labels):
            return None
        if self.find_ids is not None:
            return self.find_ids(labels if labels.shape[1] == L else labels[:, :L])
        known, ids = ids_of_map(labels, L, labels.shape[2], labels.shape[3])
        return ids if known else one_hot_ids(labels if labels.shape[1] == L else labels[:, :L])


class SemanticVectorGenerator(nn.Module):
    """SVG: ``forward(semantic [B, C, H, W]) -> (features coarse-to-fine, coarse_rgb [B, 3, H, W])``.

    Stage widths are ``16f, 8f, 4f, 2f, f, f`` (``+ f`` for the 7-stage layout). Stage 1 reads the coarsest
    label map; each later stage reads ``LReLU(cat(up2(previous), labels at its scale))``. A stage's output is
    the raw output of its last conv (no activation).
    """

    def __init__(self, in_channels: int, label_channels: int, width: int = 32, num_stages: int = 6,
                 spectral: bool = True, upsample: str = "nearest", position_encoding: bool = False,
                 pyramid_position: bool = False, position_levels: int = 5, ig_size: int = 7,
                 ig_sigma: float = 1.5, ig_iters: int = 1, ig_relative: bool = False) -> None:
        super().__init__()
        self.num_stages, self.label_channels, self.upsample = num_stages, label_channels, upsample
        self.position_encoding, self.pyramid_position = position_encoding, pyramid_position
        self.position_levels = position_levels
        self.ig = IterativeGaussian(ig_size, ig_sigma, ig_iters, ig_relative) if position_encoding else None
        widths = [16 * width, 8 * width, 4 * width, 2 * width] + [width] * (num_stages - 4)
        self.widths = widths

        def conv(cin: int, cout: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, 3, padding=1), spectral)

        stages = [nn.Sequential(conv(in_channels, widths[0]), _lrelu(), conv(widths[0], widths[0]))]
        for k in range(1, num_stages):
            # the finest stage reads the one-hot map itself (without position encoding; see SVGStage)
            stages.append(SVGStage(_lrelu(), conv(widths[k - 1] + in_channels, widths[k]), _lrelu(),
                                   conv(widths[k], widths[k]), upsample=upsample, label_channels=label_channels,
                                   onehot_labels=k == num_stages - 1 and not position_encoding))
        self.stages = nn.ModuleList(stages)
        self.to_rgb = nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), _lrelu(),
                                    nn.Conv2d(width // 2, 3, 3, padding=1), nn.Hardtanh())

    def _encode_position(self, x: torch.Tensor) -> torch.Tensor:
        """IG on the label channels; an instance-edge channel (last) passes through."""
        labels, rest = x[:, : self.label_channels], x[:, self.label_channels :]
        return torch.cat([self.ig(labels), rest], dim=1)

    def pyramid(self, semantic: torch.Tensor) -> list[torch.Tensor]:
        """Label maps at every stage's scale, coarse to fine."""
        levels = [semantic]
        if self.ig is not None and self.pyramid_position:
            # official CelebA path: nearest down-sampling from the top, IG on the finest few levels
            n = self.num_stages
            for i in range(n - 2, -1, -1):
                x = resize_nearest(levels[0], (levels[0].shape[2] // 2, levels[0].shape[3] // 2))
                if n - i < self.position_levels:
                    x = self._encode_position(x)
                levels.insert(0, x)
            levels[-1] = self._encode_position(levels[-1])
            return levels
        if self.ig is not None:
            levels = [self._encode_position(semantic)]
        for _ in range(self.num_stages - 1):
            # bilinear 0.5x of an even-sized map = 2x2 average: class area fractions (kept for backward, where
            # a stage's conv keeps its labels, as the finer level they are computed from)
            levels.insert(0, rebuildable(_halve(levels[0]), (levels[0],), _halve))
        return levels

    def forward(self, semantic: torch.Tensor, rgb: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``rgb=False``: no coarse image (None): it only feeds a training loss, and the image does not depend on it."""
        labels = self.pyramid(semantic)
        x = self.stages[0](labels[0])
        features = [x]
        for k in range(1, len(self.stages)):
            lab, labels[k - 1] = labels[k], None  # a level read is not kept here (what backward needs, autograd keeps)
            x = self.stages[k](x, lab)
            features.append(x)
        return features, self.to_rgb(x) if rgb else None


# --------------------------------------------------------------------------------------------------------
# 2. Operators of the SC residual block and their ablation replacements (paper Tables 3 and 5)


class RoutedConcatConv(nn.Module):
    """Ablation "conv": ``n`` plain convs in a chain, each reading its input concatenated with the routing
    map V (paper Sec. 4.3: "we triple its Conv number ... use extra input (concatenating V)")."""

    def __init__(self, in_channels: int, out_channels: int, num_routing: int, num_convs: int,
                 spectral: bool) -> None:
        super().__init__()
        convs = []
        for i in range(num_convs):
            cin = (in_channels if i == 0 else out_channels) + num_routing
            convs.append(spectral_norm(nn.Conv2d(cin, out_channels, 3, padding=1, bias=False), spectral))
        self.convs = nn.ModuleList(convs)
        self.act = _lrelu()

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = self.act(x)
            x = conv(torch.cat([x, routing.to(x.dtype)], dim=1))
        return x


class UnconditionalNorm(nn.Module):
    """Ablation "batch": normalisation with a learned per-channel affine; the routing map is ignored."""

    def __init__(self, num_features: int, norm: str) -> None:
        super().__init__()
        if norm == "syncbatch":
            self.norm = SyncableBatchNorm2d(num_features, affine=True)
        elif norm == "batch":
            self.norm = nn.BatchNorm2d(num_features, affine=True)
        elif norm == "instance":
            self.norm = nn.InstanceNorm2d(num_features, affine=True)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


# --------------------------------------------------------------------------------------------------------
# 3. SC residual block (paper Figure 4)


class SCResBlock(RecomputeMixin, nn.Module):
    """``x + SCC(LReLU(SCN(SCC(LReLU(SCN(x)))))``, with ``conv_s(SPADE(x))`` as the shortcut when the
    width changes. Both convs use the stage's conv routing, both norms its norm routing."""

    def __init__(self, fin: int, fout: int, label_channels: int, conv_candidates: int, norm_candidates: int,
                 conv_type: str, norm_type: str, param_free_norm: str, shortcut: str, spade_hidden: int,
                 spectral: bool) -> None:
        super().__init__()
        fmid = min(fin, fout)

        def conv(cin: int, cout: int) -> nn.Module:
            if conv_type == "scc":
                return SpatiallyConditionalConv2d(cin, cout, conv_candidates, 3, spectral=spectral)
            return RoutedConcatConv(cin, cout, conv_candidates, conv_candidates, spectral)

        def norm(c: int) -> nn.Module:
            if norm_type == "scn":
                return SpatiallyConditionalNorm2d(c, norm_candidates, param_free_norm)
            return UnconditionalNorm(c, param_free_norm)

        self.in_channels, self.out_channels = fin, fout
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.shortcut_kind = shortcut
            if shortcut == "spade":
                self.norm_s = SPADE(fin, label_channels, spade_hidden, 3, param_free_norm)
            else:
                self.norm_s = SpatiallyConditionalNorm2d(fin, norm_candidates, param_free_norm)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 3, padding=1, bias=True), spectral)
        self.norm_0, self.conv_0 = norm(fin), conv(fin, fmid)
        self.norm_1, self.conv_1 = norm(fmid), conv(fmid, fout)
        # not in place after an identity norm (norm_type="batch", param_free_norm="none"): it would overwrite x
        self.act = _lrelu(inplace=not (norm_type != "scn" and param_free_norm == "none"))

    def forward(self, x: torch.Tensor, semantic: torch.Tensor, conv_routing: torch.Tensor,
                norm_routing: torch.Tensor) -> torch.Tensor:
        if self.learned_shortcut:
            cond = semantic if self.shortcut_kind == "spade" else norm_routing
            xs = self.conv_s(self.norm_s(x, cond))
        else:
            xs = x
        dx = self.conv_0(self._norm_act(self.norm_0, x, norm_routing), conv_routing)
        dx = self.conv_1(self._norm_act(self.norm_1, dx, norm_routing), conv_routing)
        return xs + dx

    def _norm_act(self, norm: nn.Module, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        """``LReLU(norm(x))``; an SCN applies the activation itself (in training, one operator whose output the
        conv after it does not keep: it is rebuilt in backward)."""
        if isinstance(norm, SpatiallyConditionalNorm2d):
            return norm(x, routing, negative_slope=self.act.negative_slope)
        return self.act(norm(x, routing))


# --------------------------------------------------------------------------------------------------------
# 4. The generator: SVG -> semantic vectors -> SRG


@GENERATORS.register("scgan", "SC-GAN (ICCV 2021): SVG semantic vectors routing SCC/SCN residual blocks")
class SCGANGenerator(nn.Module):
    """SC-GAN generator. ``forward(semantic [B, C, H, W], z=None) -> image [B, 3, H, W]`` in ``[-1, 1]``.

    Interface (from the dataset): ``num_classes`` one-hot channels (don't-care included), ``use_instance``
    (one more, instance-edge channel), ``resolution`` (int or ``[height, width]``; needed for
    ``input_mode="noise"``; with ``input_mode="label"`` any size divisible by 32 (64 for ``layout="more"``)
    works).

    Args:
        srg_width: SRG width g (official ngf); blocks are 16g, 16g, 16g, 8g, 4g, 2g, g wide.
        fc_width: q (official nff): the first layer outputs 16q channels.
        svg_width: f (official nrf); SVG stages are 16f, 8f, 4f, 2f, f, f wide.
        conv_candidates, norm_candidates: n for SCC and for SCN (official ADE20K: 3 and 4).
        mapping, temperature: g and tau of paper Eq. 2 (``softmax(tau * v)``, tau multiplies the logits).
        layout: ``normal`` (6 scales, SRG starts at H/32) or ``more`` (7 scales, H/64; Cityscapes).
        input_mode: ``label`` (conv on the nearest-down-sampled label map; official, deterministic) or
            ``noise`` (z [B, z_dim] through a linear layer; z ~ N(0, I) when not given, or a VAE encoder's z).
        conv_type: ``scc`` or ``conv`` (ablation: n plain convs reading cat(F, V)).
        norm_type: ``scn`` or ``batch`` (ablation: normalisation with a learned affine, no routing).
        param_free_norm: normalisation inside SCN/SPADE: ``syncbatch``, ``batch``, ``instance``, ``none``.
        shortcut: ``spade`` (official learned shortcut) or ``scn``.
        spectral: spectral norm on the SRG convs (SCC candidates and shortcut convs).
        svg_spectral: spectral norm on the SVG convs (official: on for ADE20K/COCO, off for CelebA).
        svg_upsample: ``nearest`` (official) or ``bilinear`` (supplement).
        position_encoding, pyramid_position, position_levels, ig_*: iterative-Gaussian position encoding
            of the label pyramid (official CelebA preset).
        output_activation: ``hardtanh`` (official) or ``tanh``.
        init, init_gain: weight initialisation (official: xavier-normal, gain 0.02).
    """

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 srg_width: int = 32, fc_width: int = 32, svg_width: int = 32,
                 conv_candidates: int = 3, norm_candidates: int = 4,
                 mapping: str = "softmax", temperature: float = 0.05,
                 layout: str = "normal", input_mode: str = "label", z_dim: int = 256,
                 conv_type: str = "scc", norm_type: str = "scn", param_free_norm: str = "syncbatch",
                 shortcut: str = "spade", spade_hidden: int = 128,
                 spectral: bool = True, svg_spectral: bool = True, svg_upsample: str = "nearest",
                 position_encoding: bool = False, pyramid_position: bool = False, position_levels: int = 5,
                 ig_size: int = 7, ig_sigma: float = 1.5, ig_iters: int = 1, ig_relative: bool = False,
                 output_activation: str = "hardtanh", init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        _choice("layout", layout, list(LAYOUTS))
        _choice("input_mode", input_mode, ["label", "noise"])
        _choice("conv_type", conv_type, ["scc", "conv"])
        _choice("norm_type", norm_type, ["scn", "batch"])
        _choice("param_free_norm", param_free_norm, ["syncbatch", "batch", "instance", "none"])
        _choice("shortcut", shortcut, ["spade", "scn"])
        _choice("svg_upsample", svg_upsample, ["nearest", "bilinear"])
        _choice("mapping", mapping, MAPPINGS)
        _choice("output_activation", output_activation, ["hardtanh", "tanh"])
        _choice("init", init, INIT_SCHEMES)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, v in (("srg_width", srg_width), ("fc_width", fc_width), ("svg_width", svg_width),
                        ("conv_candidates", conv_candidates), ("norm_candidates", norm_candidates)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name, v in (("z_dim", z_dim), ("spade_hidden", spade_hidden), ("position_levels", position_levels),
                        ("ig_size", ig_size), ("ig_iters", ig_iters)):
            check_range(name, v, ge=1, integer=True)
        if ig_size % 2 != 1:
            raise ValueError(f"ig_size = {ig_size} is out of range; valid: an odd integer >= 1 (the IG window is "
                             f"centred on a pixel)")
        check_range("temperature", temperature, gt=0)  # tau multiplies the routing logits: <= 0 flips/flattens g
        check_range("ig_sigma", ig_sigma, gt=0)
        check_range("init_gain", init_gain, gt=0)
        if svg_width < 2:
            raise ValueError(f"svg_width must be >= 2 (the RGB head has svg_width // 2 channels), got {svg_width}")
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.num_stages = LAYOUTS[layout]
        self.factor = 2 ** (self.num_stages - 1)  # SRG start = resolution / factor
        self.resolution = _as_hw(resolution)
        h, w = self.resolution
        if h % self.factor or w % self.factor:
            raise ValueError(f"resolution {h}x{w} must be divisible by {self.factor} for layout={layout!r}")
        self.start_size = (h // self.factor, w // self.factor)
        self.input_mode, self.z_dim = input_mode, z_dim
        self.latent_dim = z_dim if input_mode == "noise" else 0  # the generator contract (models/__init__.py)
        self.conv_candidates, self.norm_candidates = conv_candidates, norm_candidates
        self.mapping, self.temperature = mapping, temperature

        # 1. SVG
        self.svg = SemanticVectorGenerator(
            self.in_channels, num_classes, svg_width, self.num_stages, svg_spectral, svg_upsample,
            position_encoding, pyramid_position, position_levels, ig_size, ig_sigma, ig_iters, ig_relative)
        for k, width in enumerate(self.svg.widths):
            if max(conv_candidates, norm_candidates) > width:
                raise ValueError(f"SVG stage {k + 1} has {width} channels, fewer than the number of candidates "
                                 f"({max(conv_candidates, norm_candidates)}); raise svg_width")

        # 3. SRG: first layer, then SC residual blocks
        first = 16 * fc_width
        if input_mode == "label":
            self.fc = nn.Conv2d(self.in_channels, first, 3, padding=1)
        else:
            self.fc = nn.Linear(z_dim, first * self.start_size[0] * self.start_size[1])
        g = srg_width
        block_args = dict(label_channels=self.in_channels, conv_candidates=conv_candidates,
                          norm_candidates=norm_candidates, conv_type=conv_type, norm_type=norm_type,
                          param_free_norm=param_free_norm, shortcut=shortcut, spade_hidden=spade_hidden,
                          spectral=spectral)
        self.head_0 = SCResBlock(first, 16 * g, **block_args)
        self.G_middle_0 = SCResBlock(16 * g, 16 * g, **block_args)
        self.G_middle_1 = SCResBlock(16 * g, 16 * g, **block_args)
        self.up_0 = SCResBlock(16 * g, 8 * g, **block_args)
        self.up_1 = SCResBlock(8 * g, 4 * g, **block_args)
        self.up_2 = SCResBlock(4 * g, 2 * g, **block_args)
        self.up_3 = SCResBlock(2 * g, g, **block_args)
        self.conv_img = nn.Conv2d(g, 3, 3, padding=1)
        self.act = _lrelu()
        self.out_act = nn.Hardtanh() if output_activation == "hardtanh" else nn.Tanh()
        # (block, SVG stage whose routing it uses, upsample before it). The official "normal" layout reuses
        # stage 2 for both middle blocks; "more" up-samples between them and moves every later block one
        # stage down.
        if layout == "normal":
            self.schedule = [("head_0", 0, False), ("G_middle_0", 1, True), ("G_middle_1", 1, False),
                             ("up_0", 2, True), ("up_1", 3, True), ("up_2", 4, True), ("up_3", 5, True)]
        else:
            self.schedule = [("head_0", 0, False), ("G_middle_0", 1, True), ("G_middle_1", 2, True),
                             ("up_0", 3, True), ("up_1", 4, True), ("up_2", 5, True), ("up_3", 6, True)]
        init_weights(self, init, init_gain)
        # the shortcut SPADEs' first conv reads the one-hot label map: by look-ups where their piecewise path
        # declines the layout (too much boundary band) and the dense convs run
        for block in self.children():
            if isinstance(block, SCResBlock) and block.learned_shortcut and block.shortcut_kind == "spade":
                read_labels_by_lookups(block.norm_s.mlp_shared[0], 0, num_classes)

    # -- helpers ------------------------------------------------------------------------------------------

    def check_input(self, semantic: torch.Tensor) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(
                f"SC-GAN generator expects a semantic map [B, {self.in_channels}, H, W] "
                f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}"
            )
        h, w = semantic.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"input size {h}x{w} must be divisible by {self.factor}; resize or crop the label map")
        if self.input_mode == "noise" and (h, w) != self.resolution:
            raise ShapeError(f"input size {h}x{w} differs from the resolution {self.resolution[0]}x"
                             f"{self.resolution[1]} this noise-input generator was built for")

    def block_sizes(self, size: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """The map size ``(h, w)`` each SRG block runs at for an input of ``size`` (default: the resolution)."""
        h, w = self.resolution if size is None else size
        h, w = h // self.factor, w // self.factor
        sizes = {}
        for name, _, upsample in self.schedule:
            if upsample:
                h, w = 2 * h, 2 * w
            sizes[name] = (h, w)
        return sizes

    def routing(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Semantic vectors -> (conv routing, norm routing) per stage: ``g(tau * chanpool(V_k, n))``."""
        conv_r = [apply_mapping(channel_pool(f, self.conv_candidates), self.mapping, self.temperature)
                  for f in features]
        if self.norm_candidates == self.conv_candidates:
            return conv_r, conv_r
        norm_r = [apply_mapping(channel_pool(f, self.norm_candidates), self.mapping, self.temperature)
                  for f in features]
        return conv_r, norm_r

    def first_layer(self, semantic: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        b = semantic.shape[0]
        h, w = semantic.shape[2] // self.factor, semantic.shape[3] // self.factor
        if self.input_mode == "label":
            if z is not None:
                raise ValueError("this generator takes no z (input_mode='label'); build it with "
                                 "input_mode='noise' for multi-modal synthesis")
            return self.fc(resize_nearest(semantic, (h, w)))
        if z is None:
            z = torch.randn(b, self.z_dim, device=semantic.device, dtype=semantic.dtype)
        if z.shape != (b, self.z_dim):
            raise ShapeError(f"z has shape {tuple(z.shape)}, expected [{b}, {self.z_dim}]")
        return self.fc(z).view(b, -1, h, w)

    # -- forward ------------------------------------------------------------------------------------------

    @staticmethod
    def latent_dim_of(config) -> int:
        """The size of z this config takes: ``z_dim`` with ``input_mode="noise"``, else 0 (no latent)."""
        return int(config.get("z_dim", 256)) if config.get("input_mode") == "noise" else 0

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        # in training, spectrally normalised weights and SCN outputs are kept for backward as what rebuilds them
        with rebuild_scope(), label_ids(lazy_labels(semantic, self.num_classes)):
            return self._forward(semantic, z, return_aux)

    def _forward(self, semantic: torch.Tensor, z: torch.Tensor | None,
                 return_aux: bool) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic)
        features, coarse_rgb = self.svg(semantic, rgb=return_aux)  # the coarse image only for the aux output
        conv_r, norm_r = self.routing(features)
        if not return_aux:
            features = None  # not kept beside the SRG's maps (the finest is [B, f, H, W])
        x = self.first_layer(semantic, z)
        for i, (name, stage, upsample) in enumerate(self.schedule):
            block = getattr(self, name)
            if not upsample:
                x = block(x, semantic, conv_r[stage], norm_r[stage])
                continue
            if i == len(self.schedule) - 1 and not return_aux and self._in_stripes(x, semantic):
                return self._finest_in_stripes(block, x, semantic, conv_r[stage], norm_r[stage])
            small, x = x, _up2(x)
            # in training the block's norms keep the quarter-size map for backward and up-sample it again there
            with contextlib.nullcontext() if block.recompute else saved_as(x, small, _up2):
                x = block(x, semantic, conv_r[stage], norm_r[stage])
        image = self.out_act(self.conv_img(self.act(x)))
        if not return_aux:
            return image
        return GeneratorOutput(image, coarse_rgb, features, conv_r, norm_r)

    # Inference only: the last block and the output conv run in this many horizontal stripes of the map, so that
    # only a stripe's activations at full resolution exist at once (the largest maps of a forward). Exact: each
    # stripe reads ``finest_halo`` more rows of the block's inputs on each side, the rows the output conv and the
    # block read beyond their own (official layers: the output conv 1, the shortcut's two SPADE convs over the
    # labels and its conv 3), and keeps only its own rows. Valid only where every norm of the block is a per-pixel
    # map: semsynth.inference_prep.set_finest_stripes sets both where that holds (prepare_for_inference).
    finest_stripes: int = 1
    finest_halo: int = 4  # rows of the full-resolution map

    def _in_stripes(self, small: torch.Tensor, semantic: torch.Tensor) -> bool:
        h, w = small.shape[2:]
        return (self.finest_stripes > 1 and not self.training and not torch.is_grad_enabled()
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
                and tuple(semantic.shape[2:]) == (2 * h, 2 * w) and h >= 2 * self.finest_stripes)

    def _finest_in_stripes(self, block: nn.Module, small: torch.Tensor, semantic: torch.Tensor,
                           conv_routing: torch.Tensor, norm_routing: torch.Tensor) -> torch.Tensor:
        """The image from the last block's quarter-size input ``small``, stripe by stripe (see ``finest_stripes``)."""
        h = small.shape[2]
        halo = -(-self.finest_halo // 2)  # in rows of the quarter-size map
        bounds = [round(i * h / self.finest_stripes) for i in range(self.finest_stripes + 1)]
        image = None
        for top, bottom in itertools.pairwise(bounds):
            a, b = max(top - halo, 0), min(bottom + halo, h)
            rows = slice(2 * a, 2 * b)
            part = semantic[:, :, rows]
            with label_ids(lazy_labels(part, self.num_classes)):  # the look-up convs read this stripe's labels
                x = block(_up2(small[:, :, a:b]), part, conv_routing[:, :, rows], norm_routing[:, :, rows])
            out = self.out_act(self.conv_img(self.act(x)))
            del x
            if image is None:
                image = out.new_empty(out.shape[0], out.shape[1], 2 * h, out.shape[3])
            image[:, :, 2 * top : 2 * bottom] = out[:, :, 2 * (top - a) : 2 * (bottom - a)]
        return image
