"""Multi-scale PatchGAN discriminator (pix2pixHD / SPADE), used by SC-GAN's CelebAMask-HQ preset.

``num_scales`` PatchGANs see ``cat(label map, image)``, the i-th at the input average-pooled i times
(3x3, stride 2). Each has 4x4 convs: the first without norm, then spectral norm + instance norm, widths
doubling to 512 at most, the last hidden layer with stride 1, and a 1-channel output conv.

SPADE's ``--n_layers_D 4`` (its default) is ``num_layers=4``; pix2pixHD counts the same network as
``--n_layers_D 3`` (it does not count the stride-1 layer). SPADE's D (``--norm_D spectralinstance``) drops the bias
of the convs followed by instance norm; pix2pixHD's own D keeps it and has no spectral norm:
``spectral=false, conv_bias=true``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import init_weights, spectral_norm
from .. import DISCRIMINATORS
from ..outputs import DiscriminatorOutput
from .fpse import check_options


class PatchDiscriminator(nn.Module):
    """One PatchGAN; ``forward(x) -> list`` of every layer's output (the last is the logit map)."""

    def __init__(self, in_channels: int, num_layers: int = 4, width: int = 64, spectral: bool = True,
                 conv_bias: bool = False) -> None:
        super().__init__()
        kw, pad = 4, int(math.ceil((4 - 1) / 2))
        layers = [nn.Sequential(nn.Conv2d(in_channels, width, kw, 2, pad), nn.LeakyReLU(0.2))]
        nf = width
        for n in range(1, num_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == num_layers - 1 else 2
            conv = spectral_norm(nn.Conv2d(prev, nf, kw, stride, pad, bias=conv_bias), spectral)
            layers.append(nn.Sequential(conv, nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, 1, pad)))
        for i, layer in enumerate(layers):
            self.add_module(f"model{i}", layer)
        self.num_layers = len(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(self.num_layers):
            x = getattr(self, f"model{i}")(x)
            outs.append(x)
        return outs


@DISCRIMINATORS.register("multiscale", "multi-scale PatchGAN (pix2pixHD/SPADE) on cat(label map, image)")
class MultiscaleDiscriminator(nn.Module):
    """``forward(image [B, 3, H, W], semantic [B, C, H, W]) -> DiscriminatorOutput``.

    ``logits``: the last output of each scale. ``features``: one group per scale holding its intermediate
    outputs (feature matching sums within a scale and averages over scales, as the official code does).
    """

    def __init__(self, num_classes: int, use_instance: bool = False, *, num_scales: int = 2, num_layers: int = 4,
                 width: int = 64, spectral: bool = True, conv_bias: bool = False, image_channels: int = 3,
                 init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        if num_scales < 1 or num_layers < 1:
            raise ValueError(f"num_scales and num_layers must be >= 1, got {num_scales}, {num_layers}")
        check_options(num_classes=num_classes, width=width, image_channels=image_channels, init=init,
                      init_gain=init_gain)
        self.in_channels = num_classes + int(use_instance)
        self.image_channels = image_channels
        for i in range(num_scales):
            self.add_module(f"discriminator_{i}",
                            PatchDiscriminator(self.in_channels + image_channels, num_layers, width, spectral,
                                               conv_bias))
        self.num_scales = num_scales
        init_weights(self, init, init_gain)

    def forward(self, image: torch.Tensor, semantic: torch.Tensor) -> DiscriminatorOutput:
        if image.dim() != 4 or image.shape[1] != self.image_channels:
            raise ShapeError(f"discriminator expects images [B, {self.image_channels}, H, W], got {tuple(image.shape)}")
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels or semantic.shape[2:] != image.shape[2:]:
            raise ShapeError(f"multiscale D: semantic map has shape {tuple(semantic.shape)}, expected "
                             f"[B, {self.in_channels}, {image.shape[2]}, {image.shape[3]}]")
        x = torch.cat([semantic.to(image.dtype), image], dim=1)
        logits, features = [], []
        for i in range(self.num_scales):
            outs = getattr(self, f"discriminator_{i}")(x)
            logits.append(outs[-1])
            features.append(outs[:-1])
            if i + 1 < self.num_scales:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return DiscriminatorOutput(logits=logits, features=features)
