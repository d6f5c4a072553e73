"""OASIS generator: "You Only Need Adversarial Supervision for Semantic Image Synthesis" (Sushko, Schönfeld et al.,
ICLR 2021), built as the official code (``boschresearch/OASIS``, ``OASIS_Generator``) so that its checkpoints load.

Reading order follows the paper's Figure 2 (the generator half):

1. **3D noise.** A noise vector z (``z_dim`` 64) is drawn per image, replicated over every pixel and concatenated
   in front of the one-hot label map: the conditioning map is ``[z, label]`` (``z_dim + num_classes`` channels).
   (The paper speaks of sampling noise per pixel; the official code draws one vector per image and broadcasts it,
   OASIS#24.) A spatial z ``[B, z_dim, H, W]`` may be given instead, which makes local re-sampling possible
   (``Synthesizer.resample``): new noise inside a region, the rest kept.
2. **Input.** The conditioning map down-sampled (nearest) to ``H / 2**(n-1) x W / 2**(n-1)`` goes through a 3x3
   conv to ``16 * channels`` channels. There is no encoder: the noise is the only source of variety.
3. **SPADE residual blocks** (:class:`~semsynth.layers.SPADEResBlock`), ``n = num_res_blocks`` of them, each
   modulated by the conditioning map (noise included) at its own scale, with a 2x nearest up-sampling after every
   block but the last. Widths (x ``channels``): 16, 16, 16, 8, 4, 2, 1 for the official six blocks.
4. **Output.** LReLU(0.2), 3x3 conv to RGB, tanh.

Official option names: ``channels_G`` is ``channels``, ``spade_ks`` is ``spade_kernel_size``, ``no_3dnoise`` is
``noise_3d=False``, ``no_spectral_norm`` is ``spectral=False``; the SPADE hidden width (hard-coded 128 there) is
``spade_hidden``. The official code works only with six blocks (it always builds six); here ``num_res_blocks``
takes any value >= 1 with the same width schedule, six giving the official network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import SPADE, SPADEResBlock, init_weights
from ...layers.init import INIT_SCHEMES
from ...layers.norm import PARAM_FREE_NORMS
from ...layers.onehot_conv import label_ids, labels_for_lookups, read_labels_by_lookups
from ...layers.spade import resize_nearest
from ...layers.resize import up2_nearest
from ...registry import check_range
from .. import GENERATORS
from ..options import check_choice as _choice
from ..options import height_width as _height_width
from ..outputs import GeneratorOutput


def block_widths(num_res_blocks: int) -> list[int]:
    """Width multipliers of the ``num_res_blocks + 1`` feature maps, coarse to fine: 16, ..., 16, 8, 4, 2, 1
    (official, six blocks: 16, 16, 16, 8, 4, 2, 1)."""
    return ([16] * max(0, num_res_blocks - 3) + [8, 4, 2, 1])[-(num_res_blocks + 1):]


@GENERATORS.register("oasis", "OASIS (ICLR 2021): SPADE residual blocks on the label map + 3D noise, no encoder")
class OASISGenerator(nn.Module):
    """OASIS generator. ``forward(semantic [B, C, H, W], z=None) -> image [B, 3, H, W]`` in ``[-1, 1]``.

    Interface (from the dataset): ``num_classes`` one-hot channels (don't-care included), ``use_instance`` (one
    more, instance-edge channel; the official code has none), ``resolution`` (int or ``[height, width]``, divisible
    by ``2**(num_res_blocks - 1)``; any such size works at run time).

    ``z``: ``None`` (drawn from N(0, I), as the official code always does), ``[B, z_dim]`` (one vector per image,
    broadcast over space: the official "3D noise") or ``[B, z_dim, H, W]`` (spatially varying noise, e.g. for
    local re-sampling). ``latent_dim`` is ``z_dim`` (0 with ``noise_3d=False``).

    Args:
        channels: base width (official ``--channels_G`` 64); see :func:`block_widths`.
        num_res_blocks: SPADE residual blocks (official 6); the first map is ``H / 2**(n-1)``.
        param_free_norm: normalisation inside SPADE: ``syncbatch`` (official), ``batch``, ``instance``, ``none``.
        spade_kernel_size, spade_hidden: kernel size and hidden width of SPADE's convs (official 3 and 128).
        z_dim: noise channels (official 64).
        noise_3d: concatenate noise to the label map (official on; ``--no_3dnoise`` turns it off, and the
            generator is then deterministic).
        spectral: spectral norm on the residual blocks' convs (official on).
        init, init_gain: weight initialisation (official: xavier-normal, gain 0.02).
    """

    spatial_latent = True  # takes z as [B, z_dim, H, W] too (local re-sampling, inference.Synthesizer.resample)

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 channels: int = 64, num_res_blocks: int = 6, param_free_norm: str = "syncbatch",
                 spade_kernel_size: int = 3, spade_hidden: int = 128, z_dim: int = 64, noise_3d: bool = True,
                 spectral: bool = True, init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        _choice("param_free_norm", param_free_norm, PARAM_FREE_NORMS)
        _choice("init", init, INIT_SCHEMES)
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("channels", channels, ge=1, integer=True)
        check_range("num_res_blocks", num_res_blocks, ge=1, le=12, integer=True)
        check_range("spade_hidden", spade_hidden, ge=1, integer=True)
        check_range("z_dim", z_dim, ge=1, integer=True)
        check_range("spade_kernel_size", spade_kernel_size, ge=1, integer=True)
        if spade_kernel_size % 2 != 1:
            raise ValueError(f"spade_kernel_size = {spade_kernel_size} is out of range; valid: an odd integer >= 1 "
                             f"(SPADE's convs keep the map size)")
        check_range("init_gain", init_gain, gt=0)
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.num_res_blocks, self.z_dim, self.noise_3d = num_res_blocks, z_dim, noise_3d
        self.factor = 2 ** (num_res_blocks - 1)
        self.resolution = _height_width(resolution)
        h, w = self.resolution
        if h % self.factor or w % self.factor:
            raise ValueError(f"resolution {h}x{w} must be divisible by {self.factor} (2**(num_res_blocks - 1), "
                             f"num_res_blocks={num_res_blocks})")
        self.latent_dim = z_dim if noise_3d else 0  # the generator contract (models/__init__.py)
        cond = self.in_channels + (z_dim if noise_3d else 0)  # channels of the conditioning map [z, label]
        widths = [m * channels for m in block_widths(num_res_blocks)]

        # 2. input: the down-sampled conditioning map through a conv
        self.fc = nn.Conv2d(cond, widths[0], 3, padding=1)
        # 3. SPADE residual blocks, coarse to fine
        self.body = nn.ModuleList(
            SPADEResBlock(fin, fout, cond, hidden=spade_hidden, kernel_size=spade_kernel_size, norm=param_free_norm,
                          spectral=spectral)
            for fin, fout in zip(widths[:-1], widths[1:]))
        # 4. output
        self.conv_img = nn.Conv2d(widths[-1], 3, 3, padding=1)
        init_weights(self, init, init_gain)
        # the convs that read the conditioning map compute its one-hot label channels by look-ups (exact)
        start = z_dim if noise_3d else 0
        for m in [self.fc, *(s.mlp_shared[0] for s in self.modules() if isinstance(s, SPADE))]:
            read_labels_by_lookups(m, start, num_classes)

    @staticmethod
    def latent_dim_of(config) -> int:
        """The size of z this config takes: ``z_dim`` with 3D noise (the default), else 0."""
        return int(config.get("z_dim", 64)) if config.get("noise_3d", True) else 0

    def check_input(self, semantic: torch.Tensor) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"OASIS generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"input size {h}x{w} must be divisible by {self.factor} (2**(num_res_blocks - 1)); "
                             f"resize or crop the label map")

    def noise_map(self, semantic: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """1. The noise as a map ``[B, z_dim, H, W]``: drawn (one vector per image), broadcast, or as given."""
        b, _, h, w = semantic.shape
        if z is None:
            z = torch.randn(b, self.z_dim, device=semantic.device, dtype=semantic.dtype)
        if z.dim() == 2 and tuple(z.shape) == (b, self.z_dim):
            return z.to(semantic.dtype)[:, :, None, None].expand(b, self.z_dim, h, w)
        if z.dim() == 4 and tuple(z.shape) == (b, self.z_dim, h, w):
            return z.to(semantic.dtype)
        raise ShapeError(f"z has shape {tuple(z.shape)}; the OASIS generator takes [{b}, {self.z_dim}] (one noise "
                         f"vector per image) or [{b}, {self.z_dim}, {h}, {w}] (spatial noise at the label map's size)")

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic)
        with label_ids(labels_for_lookups(semantic, self.num_classes)):
            return self._forward(semantic, z, return_aux)

    def _forward(self, semantic: torch.Tensor, z: torch.Tensor | None,
                 return_aux: bool) -> torch.Tensor | GeneratorOutput:
        if self.noise_3d:
            cond = torch.cat([self.noise_map(semantic, z), semantic], dim=1)
        elif z is not None:
            raise ValueError("this OASIS generator takes no z (noise_3d=false); build it with noise_3d=true for "
                             "multi-modal synthesis")
        else:
            cond = semantic
        h, w = semantic.shape[2] // self.factor, semantic.shape[3] // self.factor
        x = self.fc(resize_nearest(cond, (h, w)))
        for i, block in enumerate(self.body):
            x = block(x, cond)
            if i < len(self.body) - 1:
                x = up2_nearest(x)
        image = torch.tanh(self.conv_img(F.leaky_relu(x, 0.2, inplace=True)))  # x: the last block's fresh sum
        return GeneratorOutput(image) if return_aux else image
