"""Return types shared by all generators and discriminators, so that losses work with any of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GeneratorOutput:
    """What a generator returns when asked for more than the image (``return_aux=True``).

    Attributes:
        image: ``[B, 3, H, W]`` in ``[-1, 1]``.
        coarse_rgb: SC-GAN's SVG prediction ``[B, 3, H, W]`` (the target of the L_s loss), else ``None``.
        semantic_features: raw SVG stage outputs, coarse to fine (``[B, C_k, H_k, W_k]``).
        conv_routing, norm_routing: routing maps after the mapping ``g`` (``[B, n, H_k, W_k]``), per stage.
        variants: CRN's diversity variant: all k predicted images ``[B, k, 3, H, W]`` (``image`` is the first).
        segmentation: SIMS's auxiliary label prediction, logits ``[B, num_classes, H, W]``.
        canvas: SIMS's input canvas ``[B, 4, H, W]`` (RGB in [-1, 1], 0 in holes, and the coverage mask).
    """

    image: torch.Tensor
    coarse_rgb: torch.Tensor | None = None
    semantic_features: list[torch.Tensor] = field(default_factory=list)
    conv_routing: list[torch.Tensor] = field(default_factory=list)
    norm_routing: list[torch.Tensor] = field(default_factory=list)
    variants: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    canvas: torch.Tensor | None = None


@dataclass
class DiscriminatorOutput:
    """Logits and intermediate features of a discriminator.

    Attributes:
        logits: one prediction map per scale/head; adversarial losses average over them.
        features: groups of intermediate features for feature matching. The feature-matching loss is
            ``mean over groups of (sum over the features in a group of L1)``, which reproduces both the
            FPSE convention (4 groups of 1 feature) and the multi-scale PatchGAN one (1 group per D).
    """

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]] = field(default_factory=list)
