"""CRN generator: "Photographic Image Synthesis with Cascaded Refinement Networks" (Chen & Koltun, ICCV 2017).

Reading order follows the paper's Figure 3 and its official code (``CQFIO/PhotographicImageSynthesis``):

1. **Label pyramid.** The one-hot label map is area-down-sampled (2x2 averages: class fractions) to the
   resolution of every refinement module, from ``start_size`` pixels on the short side (4: 4x4 for square
   images, 4x8 for Cityscapes' 1:2) up to the output resolution, doubling each time.
2. **Refinement modules** ``M_0 .. M_n``. ``M_0`` reads the coarsest label map; ``M_i`` reads the label map at
   its resolution concatenated with the bilinearly up-sampled (``align_corners=True``, as the official code)
   output of ``M_{i-1}``. Each module is two 3x3 convolutions, each followed by layer normalisation (over
   channels and pixels, with a per-channel gain and bias) and LReLU(0.2); the convolutions have no bias (the
   normalisation's bias takes its place), as TF-slim builds them.
3. **Output.** A 1x1 convolution of the last module to RGB: ``3 * num_outputs`` channels (``num_outputs`` > 1 is
   the paper's diversity variant, Sec. 3.4: k images at once; the official 256p model has k = 9).

Widths: the official rule per module (by its short side s): 1024 for s < 128, 512 for 128 <= s < 512, 128 at
512 and 32 from 1024 (``official_widths``); ``widths`` gives one per module instead.

Differences from the official code a user could notice: the output goes through ``tanh`` (the official 1x1
output is linear and clipped to [0, 255] only when saved; semsynth's generators return [-1, 1]); weights start
xavier-normal (TF-slim: xavier-uniform, the same variance); the normalisation's epsilon is PyTorch's 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import init_weights
from ...layers.init import INIT_SCHEMES
from ...layers.recompute import RecomputeMixin
from ...registry import check_range
from .. import GENERATORS
from ..options import height_width as _height_width
from ..outputs import GeneratorOutput


def num_modules(resolution: tuple[int, int], start_size: int) -> int:
    """How many resolutions there are from ``start_size`` (short side) up to ``resolution``, doubling each time.
    Raises ``ValueError`` when the short side is not ``start_size`` times a power of two, or the long side is not
    divisible by the same power of two."""
    h, w = resolution
    short = min(h, w)
    ratio = short // start_size
    if short % start_size or ratio < 1 or ratio & (ratio - 1):
        raise ValueError(f"resolution {h}x{w}: the short side {short} must be start_size ({start_size}) times a power "
                         f"of two (e.g. 64, 128, 256, 512 with start_size 4)")
    n = int(math.log2(ratio)) + 1
    if h % 2 ** (n - 1) or w % 2 ** (n - 1):
        raise ValueError(f"resolution {h}x{w} must be divisible by {2 ** (n - 1)} (the modules halve it {n - 1} "
                         f"times down to {start_size} pixels on the short side)")
    return n


def official_width(short_side: int) -> int:
    """The official code's width of the module whose short side is ``short_side`` pixels."""
    if short_side < 128:
        return 1024
    if short_side < 512:
        return 512
    if short_side < 1024:
        return 128
    return 32


def official_widths(resolution: tuple[int, int], start_size: int = 4) -> list[int]:
    """Official widths of every module, coarse to fine, e.g. 256x512: [1024] * 5 + [512] * 2."""
    n = num_modules(resolution, start_size)
    short = min(resolution)
    return [official_width(short // 2 ** (n - 1 - i)) for i in range(n)]


def layer_norm(channels: int) -> nn.GroupNorm:
    """Layer normalisation of a feature map: statistics over channels and pixels of each sample, a learnt gain
    and bias per channel (TF-slim's ``layer_norm`` on NHWC maps)."""
    return nn.GroupNorm(1, channels)


class RefinementModule(RecomputeMixin, nn.Module):
    """``M_i``: ``LReLU(LN(conv3x3(LReLU(LN(conv3x3(input))))))``, the input being the label map at this
    resolution, concatenated with the up-sampled previous module's output (when there is one)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.norm1 = layer_norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm2 = layer_norm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        return F.leaky_relu(self.norm2(self.conv2(x)), 0.2)


def label_pyramid(semantic: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The label map at ``levels`` resolutions, coarse to fine, each an area down-sampling (2x2 mean) of the next
    (the official ``resize_area``)."""
    out = [semantic]
    for _ in range(levels - 1):
        out.insert(0, F.avg_pool2d(out[0], 2))
    return out


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear up-sampling with aligned corners (the official ``resize_bilinear(..., align_corners=True)``)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


@GENERATORS.register("crn", "CRN (ICCV 2017): cascaded refinement modules at doubling resolutions, regression-trained")
class CRNGenerator(nn.Module):
    """Cascaded refinement network. ``forward(semantic [B, C, H, W]) -> image [B, 3, H, W]`` in ``[-1, 1]``;
    deterministic (``latent_dim = 0``).

    Interface (from the dataset): ``num_classes`` one-hot channels, ``use_instance`` (one more, instance-edge
    channel), ``resolution`` (int or ``[height, width]``); any input whose short side is ``start_size`` times a
    power of two works when it gives the same number of modules.

    Args:
        widths: one width per refinement module, coarse to fine; ``None``: the official rule (1024 below 128
            pixels on the short side, 512 from 128, 128 at 512, 32 from 1024).
        start_size: short side of the first module (official: 4, i.e. 4x4 square or 4x8 for 1:2 images).
        num_outputs: images predicted at once (the paper's diversity variant, Sec. 3.4; official 256p: 9). The
            image is the first; ``forward(..., return_aux=True).variants`` holds all ``[B, k, 3, H, W]``.
        init, init_gain: weight initialisation (official TF-slim: xavier, gain 1).
    """

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 widths: list[int] | None = None, start_size: int = 4, num_outputs: int = 1, init: str = "xavier",
                 init_gain: float = 1.0) -> None:
        super().__init__()
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("start_size", start_size, ge=1, integer=True)
        check_range("num_outputs", num_outputs, ge=1, le=64, integer=True)
        check_range("init_gain", init_gain, gt=0)
        if init not in INIT_SCHEMES:
            raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.resolution = _height_width(resolution)
        self.start_size = start_size
        self.levels = num_modules(self.resolution, start_size)
        if widths is None:
            widths = official_widths(self.resolution, start_size)
        if len(widths) != self.levels:
            raise ValueError(f"widths = {list(widths)} has {len(widths)} entries, but a {self.resolution[0]}x"
                             f"{self.resolution[1]} output from start_size {start_size} has {self.levels} refinement "
                             f"modules; give one width per module, coarse to fine")
        for w in widths:
            check_range("widths[i]", w, ge=1, integer=True)
        self.widths = [int(w) for w in widths]
        self.num_outputs = num_outputs
        self.latent_dim = 0  # deterministic (the generator contract)

        # 2. refinement modules, coarse to fine
        self.refine = nn.ModuleList()
        previous = 0
        for width in self.widths:
            self.refine.append(RefinementModule(self.in_channels + previous, width))
            previous = width
        # 3. output: a 1x1 conv to k RGB images
        self.to_rgb = nn.Conv2d(previous, 3 * num_outputs, 1)
        init_weights(self, init, init_gain)

    @staticmethod
    def latent_dim_of(config) -> int:
        return 0

    def check_input(self, semantic: torch.Tensor) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"CRN generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        try:
            n = num_modules((h, w), self.start_size)
        except ValueError as e:
            raise ShapeError(f"input size {h}x{w}: {e}; resize the label map") from None
        if n != self.levels:
            raise ShapeError(f"input size {h}x{w} needs {n} refinement modules, this CRN has {self.levels} (built for "
                             f"{self.resolution[0]}x{self.resolution[1]}); resize the label map")

    def features(self, semantic: torch.Tensor) -> torch.Tensor:
        """The last refinement module's output ``[B, widths[-1], H, W]``."""
        x = None
        for module, labels in zip(self.refine, label_pyramid(semantic, self.levels)):
            inp = labels if x is None else torch.cat([upsample_to(x, labels.shape[2:]), labels], dim=1)
            x = module(inp)
        return x

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic)
        if z is not None:
            raise ValueError("the CRN generator takes no z (it is deterministic; num_outputs > 1 predicts several "
                             "images at once instead)")
        rgb = torch.tanh(self.to_rgb(self.features(semantic)))
        b, _, h, w = rgb.shape
        variants = rgb.view(b, self.num_outputs, 3, h, w)
        image = variants[:, 0]
        if not return_aux:
            return image
        return GeneratorOutput(image, variants=variants)
