"""OASIS discriminator: a U-Net that segments the image into N + 1 classes, the N semantic classes and "fake"
(Sushko, Schönfeld et al., ICLR 2021, Figure 2), built as the official ``OASIS_Discriminator``
(``boschresearch/OASIS``) so that its checkpoints load.

Reading order:

1. **Encoder.** ``n = num_res_blocks`` residual blocks, each halving the size (average pooling); widths (x
   ``channels``) 2, 2, 4, 4, 8, 8 for the official six blocks. The first block has no activation before its first
   conv, and it pools before its learned 1x1 shortcut.
2. **Decoder.** ``n`` residual blocks, each doubling the size (nearest up-sampling); every block after the first
   takes the encoder's output at its scale concatenated in front of its input (the U-Net skips). The last one ends
   at ``channels`` (official 64) channels, at the image's size.
3. **Head.** A 1x1 conv to ``num_classes + 1`` channels: per-pixel logits.

Every conv but the head is spectrally normalised (official). There is no normalisation layer. The D sees only the
image: the label map enters through the loss (``objectives/oasis.py``), which asks it to segment real images into
their classes and fake images into "fake".

The official code fixes the widths (``--channels_D`` is never read) and works only with six blocks; here
``channels`` and ``num_res_blocks`` scale the same schedule, the defaults giving the official network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import init_weights, spectral_norm
from ...layers.init import INIT_SCHEMES
from ...registry import check_range
from .. import DISCRIMINATORS
from ..outputs import DiscriminatorOutput


class OASISResBlock(nn.Module):
    """A residual block of the OASIS U-Net, ``mode`` ``down`` (halves the size) or ``up`` (doubles it).

        down:  dx = pool(conv2(LReLU(conv1(LReLU(x)))))          shortcut = pool(conv_s(x))
        first: dx = pool(conv2(LReLU(conv1(x))))                 shortcut = conv_s(pool(x))
        up:    dx = conv2(LReLU(conv1(up(LReLU(x)))))            shortcut = conv_s(up(x))

    3x3 convs (both ``fout`` wide), a 1x1 conv ``conv_s`` (with bias) on the shortcut only when ``fin != fout``;
    LReLU slope 0.2, average pooling 2x2, nearest up-sampling. The activations and the up-sampling sit inside the
    ``conv1`` / ``conv2`` sequences, so that the parameter names are the official ones (``conv1.0`` first,
    ``conv1.1`` down, ``conv1.2`` up, ``conv2.1``).
    """

    def __init__(self, fin: int, fout: int, mode: str, first: bool = False, spectral: bool = True) -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode = {mode!r}; valid: down, up")
        self.mode, self.first = mode, first
        conv1 = spectral_norm(nn.Conv2d(fin, fout, 3, padding=1), spectral)
        if first:
            self.conv1 = nn.Sequential(conv1)
        elif mode == "up":
            self.conv1 = nn.Sequential(nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), conv1)
        else:
            self.conv1 = nn.Sequential(nn.LeakyReLU(0.2), conv1)
        self.conv2 = nn.Sequential(nn.LeakyReLU(0.2), spectral_norm(nn.Conv2d(fout, fout, 3, padding=1), spectral))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1), spectral)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        elif self.first:
            x = F.avg_pool2d(x, 2)
        if self.learned_shortcut:
            x = self.conv_s(x)
        if self.mode == "down" and not self.first:
            x = F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.conv2(self.conv1(x))
        if self.mode == "down":
            dx = F.avg_pool2d(dx, 2)
        return self.shortcut(x) + dx


def encoder_widths(channels: int, num_res_blocks: int) -> list[int]:
    """Output widths of the encoder blocks: 2, 2, 4, 4, 8, 8, ... x ``channels`` (official: 128 .. 512)."""
    return [channels * 2 ** (1 + k // 2) for k in range(num_res_blocks)]


@DISCRIMINATORS.register("oasis", "OASIS U-Net segmentation D: per-pixel logits of the N classes + 'fake'")
class OASISDiscriminator(nn.Module):
    """``forward(image [B, 3, H, W], semantic) -> DiscriminatorOutput``; ``H, W`` divisible by ``2**n``.

    ``logits`` is a list of **one** tensor ``[B, num_classes + 1, H, W]``: per-pixel, unnormalised scores of the
    N + 1 classes at the image's resolution. **Channel 0 is "fake"; channel 1 + c is the dataset's class c** (its
    one-hot channel c). These are not PatchGAN real/fake scores: the ``gan`` objective's hinge/LSGAN terms do not
    apply; train this D with the ``oasis`` objective (class-balanced (N+1)-way cross-entropy).
    ``features`` is one group holding the outputs of the 2n residual blocks (encoder then decoder), for an optional
    feature-matching term. ``semantic`` is accepted for the common interface and not read: the D sees only the
    image.

    Args:
        num_classes: the dataset's one-hot channels (don't-care included); the head predicts ``num_classes + 1``.
        use_instance: interface only (the image is the only input).
        channels: base width (official 64, fixed there); encoder widths :func:`encoder_widths`, decoder output
            ``channels``.
        num_res_blocks: blocks in each half (official 6).
        spectral: spectral norm on every conv but the head (official on).
        init, init_gain: weight initialisation (official: xavier-normal, gain 0.02).
    """

    output_kind = "segmentation"  # per-pixel N+1 class logits, read by the ``oasis`` objective

    def __init__(self, num_classes: int, use_instance: bool = False, *, channels: int = 64, num_res_blocks: int = 6,
                 spectral: bool = True, init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        if init not in INIT_SCHEMES:
            raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("channels", channels, ge=1, integer=True)
        check_range("num_res_blocks", num_res_blocks, ge=2, le=12, integer=True)
        check_range("init_gain", init_gain, gt=0)
        self.num_classes, self.use_instance, self.num_res_blocks = num_classes, use_instance, num_res_blocks
        enc = [3] + encoder_widths(channels, num_res_blocks)

        # 1. encoder
        self.body_down = nn.ModuleList(
            OASISResBlock(enc[i], enc[i + 1], "down", first=i == 0, spectral=spectral) for i in range(num_res_blocks))
        # 2. decoder: the first block takes the bottleneck alone, the others [skip, x]
        up = [OASISResBlock(enc[-1], enc[-2], "up", spectral=spectral)]
        for i in range(1, num_res_blocks - 1):
            up.append(OASISResBlock(2 * enc[-1 - i], enc[-2 - i], "up", spectral=spectral))
        up.append(OASISResBlock(2 * enc[1], channels, "up", spectral=spectral))
        self.body_up = nn.ModuleList(up)
        # 3. head
        self.layer_up_last = nn.Conv2d(channels, num_classes + 1, 1)
        init_weights(self, init, init_gain)

    def forward(self, image: torch.Tensor, semantic: torch.Tensor | None = None) -> DiscriminatorOutput:
        factor = 2 ** self.num_res_blocks
        if image.dim() != 4 or image.shape[1] != 3:
            raise ShapeError(f"OASIS discriminator expects images [B, 3, H, W], got {tuple(image.shape)}")
        if image.shape[2] % factor or image.shape[3] % factor:
            raise ShapeError(f"OASIS discriminator: image size {image.shape[2]}x{image.shape[3]} must be divisible "
                             f"by {factor} (2**num_res_blocks)")
        x = image
        skips = []
        for block in self.body_down:
            x = block(x)
            skips.append(x)
        features = list(skips)
        x = self.body_up[0](x)
        features.append(x)
        for i in range(1, len(self.body_up)):
            x = self.body_up[i](torch.cat([skips[-1 - i], x], dim=1))
            features.append(x)
        return DiscriminatorOutput([self.layer_up_last(x)], [features])
