"""The objective of SC-GAN's unpaired translation (supplement B.2, Fig. 10), for the ``scgan-unpaired`` generator.

A batch holds unpaired images: ``semantic`` is the source image ``a`` (domain A) and ``real`` a target-domain image
``b`` (domain B), drawn independently. The generator translates ``a`` with ``b`` as its reference
(``fake = G(a, reference=b)``; its SVG reads ``b``). With D an image-only discriminator:

    L_G = gan * L_adv(D(fake))                                      adversarial, to the target domain
        + feature_matching * L_FM(D(fake), D(b))                    feature matching, to the target domain
        + perceptual * L_content(fake, a)                           content, to the source
        + semantic * L1(coarse_rgb, b)                              L_s: the SVG regresses its input image
    L_D = L_adv(D(b) real) + L_adv(D(fake) fake)

``content_loss``: ``vgg`` (the paper's perceptual loss, VGG19 relu1_1..relu5_1 with weights 1/32..1; needs the
ImageNet VGG19 weights) or ``edges`` (offline: ``losses/structure.py``, the distance between normalised edge maps
at 1/2, 1/4, 1/8 resolution, blind to colour and contrast). The official code's version of the model uses the same
terms: VGG between the fake and A, hinge GAN with D on images only, feature matching, L_s to B.

The discriminator must not see the source: a real ``b`` is not the translation of the ``a`` it would be shown
with, so a conditional D would learn to punish outputs that keep the source's layout. Only image-only
discriminators are accepted (``fp``, the FPSE pyramid without its label projection).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..losses.structure import edge_distance
from ..registry import check_range
from . import OBJECTIVES
from .gan import GANObjective

CONTENT_LOSSES = ("vgg", "edges")


def check_image_only(D_cls: type, name: str) -> None:
    """Refuse a discriminator that reads the label map / source (``semantic_embedding``, or a label input)."""
    image_only = getattr(D_cls, "semantic_embedding", True) is False
    if not image_only:
        raise ConfigError(f"the unpaired objective needs a discriminator that sees the image only (a real target "
                          f"image is not a translation of the source it would be shown with); discriminator "
                          f"{name!r} also reads the input map: use discriminator.name=fp")


@OBJECTIVES.register("unpaired", "SC-GAN unpaired translation (supp. B.2): adversarial + feature matching to the "
                                 "target domain, content (VGG or edges) to the source, L_s")
class UnpairedObjective(GANObjective):
    """Loss weights (0 switches a term off) and choices; see the module docstring.

    Args:
        adversarial: ``hinge`` (official), ``ls`` or ``ns``.
        gan, feature_matching: weights of the adversarial and feature-matching terms (to the target domain).
        perceptual: weight of the content term (to the source); ``content_loss`` picks it: ``vgg`` or ``edges``.
        content_scales: edge maps at 1/2 .. 1/2^content_scales resolution (``edges`` only).
        semantic, semantic_loss: L_s on the SVG's coarse RGB vs the reference (``l1``, ``l2`` or ``vgg``).
        vgg_weights, vgg_imagenet_normalize: as the ``gan`` objective.
    """

    uses_encoder = False

    def __init__(self, adversarial: str = "hinge", gan: float = 1.0, feature_matching: float = 10.0,
                 perceptual: float = 10.0, content_loss: str = "vgg", content_scales: int = 3,
                 semantic: float = 2.0, semantic_loss: str = "l1", vgg_weights: str | None = None,
                 vgg_imagenet_normalize: bool = False) -> None:
        if content_loss not in CONTENT_LOSSES:
            raise ValueError(f"loss.content_loss = {content_loss!r}; valid: {', '.join(CONTENT_LOSSES)}")
        check_range("loss.content_scales", content_scales, ge=1, le=6, integer=True)
        super().__init__(adversarial=adversarial, gan=gan, feature_matching=feature_matching, perceptual=perceptual,
                         semantic=semantic, semantic_loss=semantic_loss, kl=0.0, vgg_weights=vgg_weights,
                         vgg_imagenet_normalize=vgg_imagenet_normalize)
        self.content_loss, self.content_scales = content_loss, int(content_scales)

    def vgg_terms(self) -> list[tuple[str, str]]:
        if self.perceptual > 0 and self.content_loss == "vgg":
            return [(f"the content loss to the source (loss.content_loss=vgg, loss.perceptual={self.perceptual:g})",
                     "--set loss.content_loss=edges (offline)")]
        return []

    @staticmethod
    def check_discriminator(D_cls: type, name: str) -> None:
        check_image_only(D_cls, name)

    def content(self, fake: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The content term between translated images and their sources (a scalar)."""
        if self.content_loss == "vgg":
            return self.vgg(fake, source)
        return edge_distance(fake, source, self.content_scales)

    def generator_loss(self, G: nn.Module, D: nn.Module | None, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``semantic``: the source images (domain A); ``real``: target-domain images (domain B), unpaired.
        Returns (total loss, detached terms, the translated images detached)."""
        if self.needs_vgg and self.vgg is None:
            raise RuntimeError("call prepare() first: the VGG terms need the VGG19 network")
        if D is not None:
            check_image_only(type(D), (getattr(D, "config", None) or {}).get("name", type(D).__name__))
        source = semantic
        stats: dict[str, torch.Tensor] = {}
        terms: list[torch.Tensor] = []
        out = G(source, reference=real, return_aux=True)
        fake = out.image
        self._adversarial_terms(D, fake, real, source, stats, terms)
        if self.perceptual > 0:
            c = self.content(fake, source)
            stats["G/content"] = c.detach()
            terms.append(self.perceptual * c)
        if self.semantic > 0 and out.coarse_rgb is not None:
            ls = self._semantic_loss(out.coarse_rgb, real)
            stats["G/semantic"] = ls.detach()
            terms.append(self.semantic * ls)
        total = torch.stack([t.float() for t in terms]).sum()
        stats["G/total"] = total.detach()
        return total, stats, fake.detach()

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Fresh translations for the D step: each source with the batch's target image as its reference."""
        return G(semantic, reference=real)


__all__ = ["CONTENT_LOSSES", "UnpairedObjective", "check_image_only"]
