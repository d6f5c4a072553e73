"""``unet``: a small U-Net (Ronneberger et al. 2015) for training an evaluator on any dataset, fast on a CPU.

Encoder: ``depth`` max-pool downsamplings, each level two 3x3 conv-BN-ReLU layers with ``width * 2**level``
channels; decoder: bilinear x2 upsampling, concatenation with the skip, two conv-BN-ReLU; a 1x1 head.
Inputs of any size work (padded to a multiple of ``2**depth``, the output cropped back). It sees images in
``[-1, 1]`` as they are (it is trained here, so no ImageNet statistics are involved).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import SEGMENTERS
from .base import Segmenter, check_images, check_label_space


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


@SEGMENTERS.register("unet", "small U-Net trained here on any dataset (label space: the dataset's ids); fast on CPU")
class UNet(Segmenter):
    """U-Net with ``depth`` levels below the input and ``width`` channels at full resolution."""

    def __init__(self, num_classes: int, width: int = 16, depth: int = 3, label_space: str = "dataset") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        self.num_classes, self.depth = num_classes, depth
        self.label_space = check_label_space(label_space)
        chans = [width * 2**i for i in range(depth + 1)]
        self.inc = _double_conv(3, chans[0])
        self.down = nn.ModuleList(_double_conv(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(_double_conv(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        h, w = images.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(images, (0, pw, 0, ph), mode="replicate") if ph or pw else images
        x = self.inc(x)
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[..., :h, :w]
