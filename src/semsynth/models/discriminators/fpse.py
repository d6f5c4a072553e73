"""Feature-pyramid semantics-embedding discriminator (FPSE), from CC-FPSE (Liu et al., NeurIPS 2019), as
used by SC-GAN for ADE20K and COCO-Stuff; and the FP-only variant without the semantic-embedding term.

Bottom-up: five stride-2 3x3 conv blocks (spectral norm, no bias, instance norm, LReLU) to H/32. Top-down:
1x1 lateral blocks and bilinear x2 up-sampling, as a feature pyramid. At H/4, H/8 and H/16 a 3x3 block gives
a feature ``f`` and the prediction is

    pred = tf(f) + sum_c E(S)_c * seg(f)_c        (FP-only: pred = tf(f))

with ``E`` a 1x1 embedding of the label map average-pooled to that scale (projection-discriminator style).
``tf`` and ``seg`` (1x1 convs) are shared by the three scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import init_weights, spectral_norm
from ...layers.init import INIT_SCHEMES
from ...layers.recompute import rebuild_scope
from ...registry import check_range
from .. import DISCRIMINATORS
from ..outputs import DiscriminatorOutput


def check_options(*, num_classes: int, width: int, image_channels: int, init: str, init_gain: float) -> None:
    """The constructor options every discriminator here shares; ``ValueError`` naming the option and range."""
    for name, v in (("num_classes", num_classes), ("width", width), ("image_channels", image_channels)):
        check_range(name, v, ge=1, integer=True)
    if init not in INIT_SCHEMES:
        raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
    check_range("init_gain", init_gain, gt=0)


def conv_block(cin: int, cout: int, kernel: int, stride: int, spectral: bool) -> nn.Sequential:
    """SN conv (no bias) -> InstanceNorm -> LReLU(0.2). The LReLU works in place on the norm's fresh output, which
    no operator keeps (instance norm's backward reads its input): in training one map fewer per block (31 MiB of a
    G+D step at the ADE20K preset, batch 2 through D); the same values and gradients."""
    conv = spectral_norm(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), spectral)
    return nn.Sequential(conv, nn.InstanceNorm2d(cout, affine=False), nn.LeakyReLU(0.2, inplace=True))


@DISCRIMINATORS.register("fpse", "FPSE (CC-FPSE): feature pyramid + semantic-embedding projection at 3 scales")
class FPSEDiscriminator(nn.Module):
    """``forward(image [B, 3, H, W], semantic [B, C, H, W]) -> DiscriminatorOutput`` (H, W divisible by 32).

    ``logits``: predictions at H/4, H/8, H/16. ``features``: the bottom-up features e2..e5, one per group
    (so feature matching averages over the four, as the official code does).
    """

    semantic_embedding = True

    def __init__(self, num_classes: int, use_instance: bool = False, *, width: int = 64, spectral: bool = True,
                 image_channels: int = 3, init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        check_options(num_classes=num_classes, width=width, image_channels=image_channels, init=init,
                      init_gain=init_gain)
        nf = width
        self.in_channels = num_classes + int(use_instance)
        self.image_channels = image_channels
        self.enc1 = conv_block(image_channels, nf, 3, 2, spectral)
        self.enc2 = conv_block(nf, 2 * nf, 3, 2, spectral)
        self.enc3 = conv_block(2 * nf, 4 * nf, 3, 2, spectral)
        self.enc4 = conv_block(4 * nf, 8 * nf, 3, 2, spectral)
        self.enc5 = conv_block(8 * nf, 8 * nf, 3, 2, spectral)
        self.lat2 = conv_block(2 * nf, 4 * nf, 1, 1, spectral)
        self.lat3 = conv_block(4 * nf, 4 * nf, 1, 1, spectral)
        self.lat4 = conv_block(8 * nf, 4 * nf, 1, 1, spectral)
        self.lat5 = conv_block(8 * nf, 4 * nf, 1, 1, spectral)
        self.final2 = conv_block(4 * nf, 2 * nf, 3, 1, spectral)
        self.final3 = conv_block(4 * nf, 2 * nf, 3, 1, spectral)
        self.final4 = conv_block(4 * nf, 2 * nf, 3, 1, spectral)
        self.tf = nn.Conv2d(2 * nf, 1, 1)
        if self.semantic_embedding:
            self.seg = nn.Conv2d(2 * nf, 2 * nf, 1)
            self.embedding = nn.Conv2d(self.in_channels, 2 * nf, 1)
        init_weights(self, init, init_gain)

    def forward(self, image: torch.Tensor, semantic: torch.Tensor) -> DiscriminatorOutput:
        if image.dim() != 4 or image.shape[1] != self.image_channels:
            raise ShapeError(f"discriminator expects images [B, {self.image_channels}, H, W], got {tuple(image.shape)}")
        h, w = image.shape[2:]
        if h % 32 or w % 32 or h < 64 or w < 64:
            raise ShapeError(f"FPSE discriminator needs H and W divisible by 32 and at least 64 (its coarsest "
                             f"level is H/32 and is instance-normalised), got {h}x{w}")
        with rebuild_scope():  # in training its spectrally normalised weights are kept as the weight and sigma
            return self._forward(image, semantic, h, w)

    def _forward(self, image: torch.Tensor, semantic: torch.Tensor, h: int, w: int) -> DiscriminatorOutput:
        e1 = self.enc1(image)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        e5 = self.enc5(e4)
        p5 = self.lat5(e5)
        p4 = F.interpolate(p5, scale_factor=2.0, mode="bilinear", align_corners=False) + self.lat4(e4)
        p3 = F.interpolate(p4, scale_factor=2.0, mode="bilinear", align_corners=False) + self.lat3(e3)
        p2 = F.interpolate(p3, scale_factor=2.0, mode="bilinear", align_corners=False) + self.lat2(e2)
        feats = [self.final2(p2), self.final3(p3), self.final4(p4)]
        logits = [self.tf(f) for f in feats]
        if self.semantic_embedding:
            if semantic.dim() != 4 or semantic.shape[1] != self.in_channels or tuple(semantic.shape[2:]) != (h, w):
                raise ShapeError(f"FPSE: semantic map has shape {tuple(semantic.shape)}, expected "
                                 f"[B, {self.in_channels}, {h}, {w}]")
            # The 1x1 embedding commutes with average pooling, so pool the label map first (exact, far cheaper
            # than embedding at full resolution and pooling 128 channels).
            sem = semantic.to(feats[0].dtype)
            for i, f in enumerate(feats):
                emb = self.embedding(F.avg_pool2d(sem, 2 ** (i + 2)))
                logits[i] = logits[i] + (emb * self.seg(f)).sum(dim=1, keepdim=True)
        return DiscriminatorOutput(logits=logits, features=[[e2], [e3], [e4], [e5]])


@DISCRIMINATORS.register("fp", "FP-only: the FPSE feature pyramid without the semantic-embedding term")
class FPDiscriminator(FPSEDiscriminator):
    """FPSE without the projection term (CC-FPSE ablation); the label map is accepted and ignored."""

    semantic_embedding = False
