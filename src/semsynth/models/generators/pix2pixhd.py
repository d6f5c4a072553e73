"""pix2pixHD generator: "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs" (Wang et
al., CVPR 2018), Figure 3.

Reading order follows the figure:

1. **G1, the global generator** (a ResNet encoder-decoder, on the input at ``1 / 2**n_local_enhancers`` of the
   resolution): ``head`` (reflection pad + 7x7 conv to ``g`` channels, norm, ReLU), ``down`` (``n_downsample``
   stride-2 3x3 convs, doubling the width), ``blocks`` (``n_blocks`` residual blocks of two reflection-padded 3x3
   convs), ``up`` (as many stride-2 transposed convs, halving the width), then ``to_rgb`` (reflection pad + 7x7 conv
   to RGB, tanh). ``g = ngf * 2**n_local_enhancers``.
2. **G2, the local enhancers** (``n_local_enhancers`` of them, each doubling the resolution): a front-end on the
   input at its own scale (7x7 conv, one stride-2 conv) whose output is *added* to the previous generator's last
   feature map (G1's ``to_rgb`` is then dropped), ``n_blocks_local`` residual blocks, one transposed conv; the last
   enhancer ends with ``to_rgb``. The coarser inputs are 3x3 average-pooled (stride 2) from the full one.

Two builds, both official, two typed options apart:

* as SPADE's codebase builds it (``NVlabs/SPADE --netG pix2pixhd``), the default: a conv followed by a norm has no
  bias, and it has spectral norm (that code runs only with a ``spectral...`` norm_G, e.g. ``spectralinstance``);
* as ``NVIDIA/pix2pixHD`` builds it (its released ``label2city_*`` checkpoints): ``norm_bias=true`` (every conv
  keeps its bias), ``spectral=false``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import init_weights, spectral_norm
from ...layers.gemm_grad import conv2d_gemm_grad
from ...layers.init import INIT_SCHEMES
from ...layers.norm import SyncableBatchNorm2d
from ...layers.onehot_conv import labels_for_lookups, onehot_conv
from ...layers.recompute import RecomputeMixin
from ...registry import check_range
from .. import GENERATORS
from ..options import check_choice as _choice
from ..options import height_width as _height_width
from ..outputs import GeneratorOutput

NORMS = ("instance", "batch", "syncbatch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    """pix2pixHD's norm layers: instance norm without affine, batch norm with it."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "syncbatch":
        return SyncableBatchNorm2d(channels, affine=True)
    return nn.Identity()


# --------------------------------------------------------------------------------------------------------
# Building blocks


class ConvNormReLU(nn.Module):
    """``ReLU(norm(conv(pad(x))))``: a 7x7 reflection-padded conv, a stride-2 3x3 conv or a stride-2 transposed
    conv (``transposed``), as pix2pixHD's c7s1-k, dk and uk units.

    ``onehot_classes`` (the first unit, which reads the label map): where the input's first ``onehot_classes``
    channels are one-hot, the conv of those channels is computed by look-ups (:mod:`semsynth.layers.onehot_conv`:
    a per-class vector inside regions, ``k^2`` look-ups near boundaries, exact, with its weight gradient); a
    binary instance-edge channel after them makes the map one-hot over (class, edge) pairs (the kernel of the pair
    ``(c, 1)``: class ``c``'s plus the edge channel's), other extra channels take a dense conv; elsewhere, or where
    the conv over the classes is small (``k^2`` x classes x out channels below ``onehot_min_work``), the conv runs
    as written."""

    onehot_min_work = 9 * 4096  # as the SVG's 3x3 look-ups: below it the dense conv is as cheap

    def __init__(self, cin: int, cout: int, kernel_size: int, *, stride: int = 1, reflect: int = 0,
                 transposed: bool = False, norm: str = "instance", norm_bias: bool = False,
                 spectral: bool = False, onehot_classes: int = 0) -> None:
        super().__init__()
        bias = norm == "none" or norm_bias
        self.pad = nn.ReflectionPad2d(reflect) if reflect else nn.Identity()
        if transposed:
            conv = nn.ConvTranspose2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2,
                                      output_padding=stride - 1, bias=bias)
        else:
            conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=0 if reflect else kernel_size // 2,
                             bias=bias)
        self.conv = spectral_norm(conv, spectral)
        self.norm = _norm(norm, cout)
        self.reflect = reflect
        self.onehot_classes = onehot_classes if not transposed and stride == 1 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = self._onehot_ids(x)
        y = self.conv(self.pad(x)) if ids is None else self._onehot_conv(x, ids)
        # in place: the norm's (or with no norm, the conv's) output is fresh and its backward does not read it
        return F.relu(self.norm(y), inplace=True)

    def _onehot_ids(self, x: torch.Tensor) -> torch.Tensor | None:
        """Class ids ``[B, 1, H, W]`` of the input's one-hot channels where the look-up path applies, else None."""
        L, conv = self.onehot_classes, self.conv
        k = conv.kernel_size[0]
        pad = self.reflect or conv.padding[0]
        if (not L or k * k * L * conv.out_channels < self.onehot_min_work or x.dim() != 4
                or x.shape[1] != conv.in_channels or min(x.shape[2:]) <= pad):
            return None  # (a map no larger than the reflection pad: the dense path raises torch's error)
        return labels_for_lookups(x, L)  # None for a map that is not one-hot, wants a gradient, is traced ...

    def _onehot_conv(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        conv, L = self.conv, self.onehot_classes
        w = conv.weight  # read once: one power iteration of its spectral norm, as conv(x) would
        pad = self.reflect or conv.padding[0]
        extra = x[:, L:]
        if extra.shape[1] == 0:
            return onehot_conv(ids, w, conv.bias, pad, reflect=bool(self.reflect))
        if extra.shape[1] == 1 and bool(((extra == 0) | (extra == 1)).all()):
            # a binary instance-edge channel: one-hot over (class, edge) pairs, the pair (c, 1) with the kernel of
            # class c plus the edge channel's
            joint = torch.cat([w[:, :L], w[:, :L] + w[:, L:]], 1)
            return onehot_conv(ids + L * extra, joint, conv.bias, pad, reflect=bool(self.reflect))
        y = onehot_conv(ids, w[:, :L], conv.bias, pad, reflect=bool(self.reflect))
        return y + F.conv2d(self.pad(extra), w[:, L:], None, 1, conv.padding)  # other channels: a dense conv


class ResnetBlock(RecomputeMixin, nn.Module):
    """``x + norm(conv(pad(ReLU(norm(conv(pad(x)))))))`` with reflection padding (pix2pixHD's residual block)."""

    def __init__(self, channels: int, kernel_size: int = 3, *, norm: str = "instance", norm_bias: bool = False,
                 spectral: bool = False) -> None:
        super().__init__()
        bias = norm == "none" or norm_bias
        pad = (kernel_size - 1) // 2
        self.pad_0 = nn.ReflectionPad2d(pad)
        self.conv_0 = spectral_norm(nn.Conv2d(channels, channels, kernel_size, bias=bias), spectral)
        self.norm_0 = _norm(norm, channels)
        self.pad_1 = nn.ReflectionPad2d(pad)
        self.conv_1 = spectral_norm(nn.Conv2d(channels, channels, kernel_size, bias=bias), spectral)
        self.norm_1 = _norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 1024-channel convs on small maps: differentiated by matrix products where that pays (gemm_grad.py)
        dx = F.relu(self.norm_0(conv2d_gemm_grad(self.conv_0, self.pad_0(x))), inplace=True)  # a fresh tensor
        return x + self.norm_1(conv2d_gemm_grad(self.conv_1, self.pad_1(dx)))


class ToRGB(nn.Module):
    """Reflection pad, 7x7 conv to RGB (with bias, no norm), tanh."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(channels, 3, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(self.pad(x)))


# --------------------------------------------------------------------------------------------------------
# 1. G1, the global generator; 2. G2, a local enhancer


class GlobalGenerator(nn.Module):
    """G1: head, ``n_downsample`` down, ``n_blocks`` residual blocks, ``n_downsample`` up, and ``to_rgb`` unless a
    local enhancer follows (``with_rgb=False``: it returns the last feature map, ``width`` channels)."""

    def __init__(self, in_channels: int, width: int, n_downsample: int, n_blocks: int, kernel_size: int,
                 first_kernel_size: int, with_rgb: bool, onehot_classes: int = 0, **unit) -> None:
        super().__init__()
        self.head = ConvNormReLU(in_channels, width, first_kernel_size, reflect=first_kernel_size // 2,
                                 onehot_classes=onehot_classes, **unit)
        self.down = nn.Sequential(*[ConvNormReLU(width * 2**i, width * 2 ** (i + 1), 3, stride=2, **unit)
                                    for i in range(n_downsample)])
        inner = width * 2**n_downsample
        self.blocks = nn.Sequential(*[ResnetBlock(inner, kernel_size, **unit) for _ in range(n_blocks)])
        self.up = nn.Sequential(*[ConvNormReLU(inner // 2**i, inner // 2 ** (i + 1), 3, stride=2, transposed=True,
                                               **unit) for i in range(n_downsample)])
        self.to_rgb = ToRGB(width, first_kernel_size) if with_rgb else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.blocks(self.down(self.head(x))))
        return self.to_rgb(x) if self.to_rgb is not None else x


class LocalEnhancer(nn.Module):
    """G2: ``front`` (7x7 conv to ``width``, stride-2 conv to ``2 width``) on the input at this scale, plus the
    coarser generator's features (``2 width`` channels), ``blocks``, one transposed conv back to ``width``, and
    ``to_rgb`` on the last enhancer."""

    def __init__(self, in_channels: int, width: int, n_blocks: int, first_kernel_size: int, with_rgb: bool,
                 onehot_classes: int = 0, **unit) -> None:
        super().__init__()
        self.front = nn.Sequential(
            ConvNormReLU(in_channels, width, first_kernel_size, reflect=first_kernel_size // 2,
                         onehot_classes=onehot_classes, **unit),
            ConvNormReLU(width, 2 * width, 3, stride=2, **unit))
        self.blocks = nn.Sequential(*[ResnetBlock(2 * width, 3, **unit) for _ in range(n_blocks)])
        self.up = ConvNormReLU(2 * width, width, 3, stride=2, transposed=True, **unit)
        self.to_rgb = ToRGB(width, first_kernel_size) if with_rgb else None

    def forward(self, semantic: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        x = self.up(self.blocks(self.front(semantic) + coarser))
        return self.to_rgb(x) if self.to_rgb is not None else x


# --------------------------------------------------------------------------------------------------------
# The generator


@GENERATORS.register("pix2pixhd", "pix2pixHD (CVPR 2018): ResNet global generator (+ optional local enhancers)")
class Pix2PixHDGenerator(nn.Module):
    """pix2pixHD generator. ``forward(semantic [B, C, H, W]) -> image [B, 3, H, W]`` in ``[-1, 1]``; deterministic.

    Interface (from the dataset): ``num_classes``, ``use_instance`` (one more, instance-edge channel) and
    ``resolution``; any input size divisible by ``2**(n_downsample + n_local_enhancers)`` works.

    Args:
        ngf: width of the finest network's first layer (official ``--ngf``; G1 is ``ngf * 2**n_local_enhancers``
            wide). SPADE's and pix2pixHD's 512p models: 64; ``label2city_1024p``: 32 with one local enhancer.
        n_downsample, n_blocks: G1's down-samplings and residual blocks (official 4 and 9: SPADE's
            ``--resnet_n_downsample/--resnet_n_blocks``, pix2pixHD's ``--n_downsample_global/--n_blocks_global``).
        kernel_size, first_kernel_size: kernel of G1's residual blocks (SPADE ``--resnet_kernel_size``, 3) and of
            the first and last convs (``--resnet_initial_kernel_size``, 7).
        norm: ``instance`` (official), ``batch``, ``syncbatch`` or ``none``.
        norm_bias: keep the bias of the convs followed by a norm (pix2pixHD's own code: true; SPADE's: false).
        spectral: spectral norm on the convs followed by a norm (SPADE's code with ``--norm_G spectralinstance``:
            true; pix2pixHD's: false).
        n_local_enhancers, n_blocks_local: G2 (pix2pixHD ``--netG local``): enhancers (each doubles the
            resolution) and residual blocks in each (official 3).
        init, init_gain: weight initialisation (SPADE: xavier 0.02; pix2pixHD: normal 0.02).
    """

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 ngf: int = 64, n_downsample: int = 4, n_blocks: int = 9, kernel_size: int = 3,
                 first_kernel_size: int = 7, norm: str = "instance", norm_bias: bool = False, spectral: bool = True,
                 n_local_enhancers: int = 0, n_blocks_local: int = 3, init: str = "xavier",
                 init_gain: float = 0.02) -> None:
        super().__init__()
        _choice("norm", norm, NORMS)
        _choice("init", init, INIT_SCHEMES)
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("ngf", ngf, ge=1, integer=True)
        check_range("n_downsample", n_downsample, ge=0, le=10, integer=True)
        check_range("n_blocks", n_blocks, ge=0, integer=True)
        check_range("n_local_enhancers", n_local_enhancers, ge=0, le=5, integer=True)
        check_range("n_blocks_local", n_blocks_local, ge=0, integer=True)
        for name, k in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            check_range(name, k, ge=1, integer=True)
            if k % 2 != 1:
                raise ValueError(f"{name} = {k} is out of range; valid: an odd integer >= 1 (the convs keep the map "
                                 f"size)")
        check_range("init_gain", init_gain, gt=0)
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.factor = 2 ** (n_downsample + n_local_enhancers)
        self.resolution = _height_width(resolution)
        h, w = self.resolution
        if h % self.factor or w % self.factor:
            raise ValueError(f"resolution {h}x{w} must be divisible by {self.factor} (2**(n_downsample + "
                             f"n_local_enhancers))")
        self.latent_dim = 0  # deterministic (the generator contract)
        self.n_local_enhancers = n_local_enhancers
        unit = {"norm": norm, "norm_bias": norm_bias, "spectral": spectral}

        # 1. G1 at 1 / 2**n_local_enhancers of the resolution
        self.global_generator = GlobalGenerator(self.in_channels, ngf * 2**n_local_enhancers, n_downsample,
                                                n_blocks, kernel_size, first_kernel_size,
                                                with_rgb=n_local_enhancers == 0,
                                                onehot_classes=0 if n_local_enhancers else num_classes, **unit)
        # 2. G2: local enhancers, coarse to fine
        self.local_enhancers = nn.ModuleList([
            LocalEnhancer(self.in_channels, ngf * 2 ** (n_local_enhancers - n), n_blocks_local, first_kernel_size,
                          with_rgb=n == n_local_enhancers, onehot_classes=num_classes, **unit)
            for n in range(1, n_local_enhancers + 1)])
        init_weights(self, init, init_gain)

    @staticmethod
    def latent_dim_of(config) -> int:
        return 0

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"pix2pixHD generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"input size {h}x{w} must be divisible by {self.factor}; resize or crop the label map")
        if z is not None:
            raise ValueError("the pix2pixHD generator takes no z (it is deterministic)")
        # the input pyramid: 3x3 average pooling, stride 2, per local enhancer
        pyramid = [semantic]
        for _ in range(self.n_local_enhancers):
            pyramid.insert(0, F.avg_pool2d(pyramid[0], 3, stride=2, padding=1, count_include_pad=False))
        x = self.global_generator(pyramid[0])
        for enhancer, level in zip(self.local_enhancers, pyramid[1:]):
            x = enhancer(level, x)
        return GeneratorOutput(x) if return_aux else x
