"""SPADE generator (GauGAN): "Semantic Image Synthesis with Spatially-Adaptive Normalization" (Park et al.,
CVPR 2019), built as the official code (``NVlabs/SPADE``, ``--netG spade``) so that its checkpoints load.

Reading order follows the paper's Figure 4 (left):

1. **Input.** Without a style encoder, the label map down-sampled (nearest) to ``H / 2**n x W / 2**n`` goes
   through a 3x3 conv to ``16 * ngf`` channels (official: deterministic). With ``use_vae``, z (``z_dim``, from the
   VAE encoder or N(0, I)) goes through a linear layer to a ``16 * ngf x H / 2**n x W / 2**n`` map.
2. **SPADE residual blocks** (:class:`~semsynth.layers.SPADEResBlock`), each reading the label map at its own
   scale, with a 2x nearest up-sampling before each: ``head_0`` (16 ngf), ``G_middle_0``, ``G_middle_1`` (16 ngf),
   ``up_0`` .. ``up_3`` (8, 4, 2, 1 ngf).
3. **Output.** LReLU(0.2), 3x3 conv to RGB, tanh.

``num_upsampling_layers`` sets ``n``: ``normal`` 5 (ADE20K, COCO-Stuff), ``more`` 6 (one more up-sampling between
the two middle blocks; Cityscapes), ``most`` 7 (also a last block ``up_4`` to ``ngf / 2`` channels at 2x).

Official option names: ``norm_G = spectralspade<param_free_norm><k>x<k>`` is split into ``spectral``,
``param_free_norm`` and ``spade_kernel_size``; the SPADE hidden width (hard-coded 128 there) is ``spade_hidden``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...layers import SPADEResBlock, init_weights
from ...layers.init import INIT_SCHEMES
from ...layers.norm import PARAM_FREE_NORMS
from ...layers.spade import resize_nearest
from ...layers.resize import up2_nearest
from ...registry import check_range
from .. import GENERATORS
from ..options import check_choice as _choice
from ..options import height_width as _height_width
from ..outputs import GeneratorOutput

UPSAMPLING = {"normal": 5, "more": 6, "most": 7}  # number of 2x up-samplings from the first map to the image


@GENERATORS.register("spade", "SPADE / GauGAN (CVPR 2019): SPADE residual blocks up from the label map (or a VAE z)")
class SPADEGenerator(nn.Module):
    """SPADE generator. ``forward(semantic [B, C, H, W], z=None) -> image [B, 3, H, W]`` in ``[-1, 1]``.

    Interface (from the dataset): ``num_classes`` one-hot channels (don't-care included), ``use_instance`` (one
    more, instance-edge channel), ``resolution`` (int or ``[height, width]``, divisible by ``2**n``; fixed for
    ``use_vae``; without it any size divisible by ``2**n`` works).

    Args:
        ngf: base width (official ``--ngf``); blocks are 16, 16, 16, 8, 4, 2, 1 (and 1/2 for ``most``) x ngf wide.
        num_upsampling_layers: ``normal`` (5 up-samplings), ``more`` (6; Cityscapes) or ``most`` (7).
        param_free_norm: normalisation inside SPADE: ``syncbatch`` (official), ``batch``, ``instance``, ``none``.
        spectral: spectral norm on the residual blocks' convs (official: on).
        spade_kernel_size, spade_hidden: kernel size and hidden width of SPADE's convs (official: 3 and 128).
        use_vae: start from z (``z_dim``) through a linear layer instead of the down-sampled label map; the z
            comes from a VAE style encoder (``encoder: conv``) or, when not given, from N(0, I).
        z_dim: size of z (official 256, the encoder's output size).
        init, init_gain: weight initialisation (official: xavier-normal, gain 0.02).
    """

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 ngf: int = 64, num_upsampling_layers: str = "normal", param_free_norm: str = "syncbatch",
                 spectral: bool = True, spade_kernel_size: int = 3, spade_hidden: int = 128,
                 use_vae: bool = False, z_dim: int = 256, init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        _choice("num_upsampling_layers", num_upsampling_layers, list(UPSAMPLING))
        _choice("param_free_norm", param_free_norm, PARAM_FREE_NORMS)
        _choice("init", init, INIT_SCHEMES)
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("ngf", ngf, ge=2 if num_upsampling_layers == "most" else 1, integer=True)
        check_range("spade_hidden", spade_hidden, ge=1, integer=True)
        check_range("z_dim", z_dim, ge=1, integer=True)
        check_range("spade_kernel_size", spade_kernel_size, ge=1, integer=True)
        if spade_kernel_size % 2 != 1:
            raise ValueError(f"spade_kernel_size = {spade_kernel_size} is out of range; valid: an odd integer >= 1 "
                             f"(SPADE's convs keep the map size)")
        check_range("init_gain", init_gain, gt=0)
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.num_upsampling_layers = num_upsampling_layers
        self.factor = 2 ** UPSAMPLING[num_upsampling_layers]
        self.resolution = _height_width(resolution)
        h, w = self.resolution
        if h % self.factor or w % self.factor:
            raise ValueError(f"resolution {h}x{w} must be divisible by {self.factor} for num_upsampling_layers="
                             f"{num_upsampling_layers!r}")
        self.start_size = (h // self.factor, w // self.factor)
        self.use_vae, self.z_dim = use_vae, z_dim
        self.latent_dim = z_dim if use_vae else 0  # the generator contract (models/__init__.py)
        nf = ngf

        # 1. input: the down-sampled label map through a conv, or z through a linear layer
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.start_size[0] * self.start_size[1])
        else:
            self.fc = nn.Conv2d(self.in_channels, 16 * nf, 3, padding=1)

        # 2. SPADE residual blocks, coarse to fine
        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, self.in_channels, hidden=spade_hidden, kernel_size=spade_kernel_size,
                                 norm=param_free_norm, spectral=spectral)

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, nf)
        final = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2)
            final = nf // 2
        # (block, 2x up-sampling before it)
        self.schedule = [("head_0", False), ("G_middle_0", True),
                         ("G_middle_1", num_upsampling_layers in ("more", "most")),
                         ("up_0", True), ("up_1", True), ("up_2", True), ("up_3", True)]
        if num_upsampling_layers == "most":
            self.schedule.append(("up_4", True))

        # 3. output
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)
        init_weights(self, init, init_gain)

    @staticmethod
    def latent_dim_of(config) -> int:
        """The size of z this config takes: ``z_dim`` with ``use_vae``, else 0 (deterministic)."""
        return int(config.get("z_dim", 256)) if config.get("use_vae") else 0

    def check_input(self, semantic: torch.Tensor) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"SPADE generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"input size {h}x{w} must be divisible by {self.factor} (num_upsampling_layers="
                             f"{self.num_upsampling_layers!r}); resize or crop the label map")
        if self.use_vae and (h, w) != self.resolution:
            raise ShapeError(f"input size {h}x{w} differs from the resolution {self.resolution[0]}x"
                             f"{self.resolution[1]} this z-input (use_vae) generator was built for")

    def first_layer(self, semantic: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        b = semantic.shape[0]
        h, w = semantic.shape[2] // self.factor, semantic.shape[3] // self.factor
        if not self.use_vae:
            if z is not None:
                raise ValueError("this SPADE generator takes no z (use_vae=false); build it with use_vae=true for "
                                 "multi-modal synthesis")
            return self.fc(resize_nearest(semantic, (h, w)))
        if z is None:
            z = torch.randn(b, self.z_dim, device=semantic.device, dtype=semantic.dtype)
        if z.shape != (b, self.z_dim):
            raise ShapeError(f"z has shape {tuple(z.shape)}, expected [{b}, {self.z_dim}]")
        return self.fc(z).view(b, -1, h, w)

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic)
        x = self.first_layer(semantic, z)
        for name, upsample in self.schedule:
            if upsample:
                x = up2_nearest(x)
            x = getattr(self, name)(x, semantic)
        image = torch.tanh(self.conv_img(F.leaky_relu(x, 0.2, inplace=True)))  # x: the last block's fresh sum
        return GeneratorOutput(image) if return_aux else image
