"""SC-GAN for unpaired image-to-image translation (SC-GAN supplement B.2, Fig. 10; paper Sec. 4.4, Table 7).

The semantic-synthesis generator with two inputs changed (supplement B.2):

1. the **SRG** starts from the *down-sampled source image* instead of noise / the down-sampled label map: its first
   layer is a conv on the source resized to the SRG's start size (H/32 for the 6-stage layout);
2. the **SVG** reads a *target-domain image* (the reference) instead of the label map, and its coarse RGB head
   regresses that image (L_s, "like an autoencoder"): its stage features are the semantic vectors that route the
   SCC/SCN operators of the SRG.

The objective (``objectives/unpaired.py``) adds a content loss between the output and the source and adversarial +
feature-matching losses against target-domain images. The official code's version of this model
(``pix2pixunpaired_model.py``) does not run as shipped (``../shared/spec/scgan_official.md`` Sec. 6); its wiring is
followed: ``G(input=reference, z=source)``, label channels C = 3 (RGB), the SRG's first feature
``fc(nearest_resize(source, H/32))``, and the SPADE shortcuts conditioned on the SVG's input (the reference).

One semsynth option departs from that wiring, off by default: ``shortcut_condition="source"`` conditions the SPADE
shortcuts of the width-changing blocks on the source image instead of the reference, which gives the source's
layout a path at every scale (at 64x64 the down-sampled source is 2x2 pixels; docs/unpaired.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...errors import ShapeError
from ...layers.spade import resize_nearest
from ...layers.resize import up2_nearest
from .. import GENERATORS
from ..outputs import GeneratorOutput
from .scgan import SCGANGenerator, _choice

IMAGE_CHANNELS = 3


@GENERATORS.register("scgan-unpaired", "SC-GAN for unpaired image translation (supp. B.2): SRG from the "
                                       "down-sampled source, SVG on a target-domain reference")
class SCGANUnpairedGenerator(SCGANGenerator):
    """``forward(source [B, 3, H, W], z=None, *, reference [B, 3, H, W] = None) -> image [B, 3, H, W]`` in [-1, 1].

    ``source``: the image to translate (domain A), in [-1, 1]. ``reference``: a target-domain image (domain B) that
    the SVG reads; ``None`` uses the source as its own reference (a shape check, or a reconstruction). Takes no latent
    (``z`` must be ``None``): the output is a deterministic function of (source, reference).

    Interface (from the dataset): ``num_classes`` = 3 (the RGB channels of the source, as the official code's
    ``label_nc = 3``), ``resolution``; ``use_instance`` must be false. Any size divisible by 32 works (64 for
    ``layout="more"``).

    Args (the SC-GAN generator's, see ``scgan.py``), plus:
        shortcut_condition: what the SPADE shortcuts of width-changing blocks read: ``reference`` (the official
            wiring: the SVG's input) or ``source``.
        source_downsample: how the source reaches the SRG's start size: ``nearest`` (official) or ``area``
            (the mean of each cell).
    """

    translates_images = True  # semsynth generate / evaluate / serve refuse it; semsynth translate runs it
    portable_unsupported = ("it translates an image using a second, reference image (two image inputs), and the "
                            "portable graphs take a label map; use semsynth translate")

    def __init__(self, num_classes: int = IMAGE_CHANNELS, resolution: int | Sequence[int] = 256,
                 use_instance: bool = False, *,
                 srg_width: int = 32, fc_width: int = 32, svg_width: int = 32,
                 conv_candidates: int = 3, norm_candidates: int = 4,
                 mapping: str = "softmax", temperature: float = 0.05, layout: str = "normal",
                 param_free_norm: str = "syncbatch", shortcut: str = "spade", spade_hidden: int = 128,
                 spectral: bool = True, svg_spectral: bool = True, svg_upsample: str = "nearest",
                 shortcut_condition: str = "reference", source_downsample: str = "nearest",
                 output_activation: str = "hardtanh", init: str = "xavier", init_gain: float = 0.02) -> None:
        if num_classes != IMAGE_CHANNELS or use_instance:
            raise ValueError(f"scgan-unpaired translates RGB images: its data must serve image pairs (3 input "
                             f"channels, no instance map: datasets unpaired-folder or synthetic-unpaired), got "
                             f"{num_classes} label channels" + (" + an instance channel" if use_instance else ""))
        _choice("shortcut_condition", shortcut_condition, ["reference", "source"])
        _choice("source_downsample", source_downsample, ["nearest", "area"])
        super().__init__(num_classes, resolution, False, srg_width=srg_width, fc_width=fc_width,
                         svg_width=svg_width, conv_candidates=conv_candidates, norm_candidates=norm_candidates,
                         mapping=mapping, temperature=temperature, layout=layout, input_mode="label",
                         param_free_norm=param_free_norm, shortcut=shortcut, spade_hidden=spade_hidden,
                         spectral=spectral, svg_spectral=svg_spectral, svg_upsample=svg_upsample,
                         output_activation=output_activation, init=init, init_gain=init_gain)
        self.shortcut_condition, self.source_downsample = shortcut_condition, source_downsample

    @staticmethod
    def latent_dim_of(config) -> int:
        return 0

    def _check_image(self, x: torch.Tensor, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != IMAGE_CHANNELS or not x.is_floating_point():
            raise ShapeError(f"scgan-unpaired expects the {what} as RGB images [B, 3, H, W] in [-1, 1], got "
                             f"{tuple(x.shape)} ({x.dtype})")
        h, w = x.shape[2:]
        if h % self.factor or w % self.factor:
            raise ShapeError(f"{what} size {h}x{w} must be divisible by {self.factor}; resize the image")

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *,
                reference: torch.Tensor | None = None, return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        source = semantic
        if z is not None:
            raise ValueError("scgan-unpaired takes no latent z: the target-domain reference image sets the style "
                             "(reference=...)")
        self._check_image(source, "source")
        if reference is None:
            reference = source
        self._check_image(reference, "reference")
        if reference.shape != source.shape:
            raise ShapeError(f"the reference {tuple(reference.shape)} and the source {tuple(source.shape)} must have "
                             f"the same shape; resize the reference")
        # SVG on the target-domain image: semantic vectors -> routing of every SC block; RGB head -> L_s
        features, coarse_rgb = self.svg(reference)
        conv_r, norm_r = self.routing(features)
        # SRG from the down-sampled source image (supplement B.2: instead of the noise input)
        h, w = source.shape[2] // self.factor, source.shape[3] // self.factor
        small = resize_nearest(source, (h, w)) if self.source_downsample == "nearest" \
            else F.adaptive_avg_pool2d(source, (h, w))
        x = self.fc(small)
        cond = reference if self.shortcut_condition == "reference" else source
        for name, stage, upsample in self.schedule:
            if upsample:
                x = up2_nearest(x)
            x = getattr(self, name)(x, cond, conv_r[stage], norm_r[stage])
        image = self.out_act(self.conv_img(self.act(x)))
        if not return_aux:
            return image
        return GeneratorOutput(image, coarse_rgb, features, conv_r, norm_r)
