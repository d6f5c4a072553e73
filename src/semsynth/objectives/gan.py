"""The GAN objective of SC-GAN (paper Eq. 6), SPADE, CC-FPSE and pix2pixHD, for any registered G, D and encoder.

Generator:      L = gan * L_adv + feature_matching * L_FM + perceptual * L_VGG + semantic * L_s (+ kl * KL)
Discriminator:  L = L_adv(real) + L_adv(fake)

``adversarial`` picks hinge (SC-GAN, SPADE, CC-FPSE), least squares (pix2pixHD's LSGAN) or the non-saturating
loss. ``semantic`` (L_s on SC-GAN's coarse RGB) applies only to generators that return one. Fake and real images
go through D in one batch (its norms are per-sample, so this equals two calls). The caller owns ``backward`` and
the optimiser steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..losses import VGGLoss, d_adversarial_loss, feature_matching_loss, g_adversarial_loss, kl_divergence
from ..losses.adversarial import ADVERSARIAL_LOSSES
from ..models.encoders import reparameterize
from ..models.outputs import DiscriminatorOutput
from ..registry import check_range
from . import OBJECTIVES, Objective
from .vgg_terms import VGGTerms


def split_batch(out: DiscriminatorOutput, n_fake: int) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    """A discriminator's output on ``cat([fake, real])`` -> (its output on fake, on real)."""
    fake = DiscriminatorOutput([x[:n_fake] for x in out.logits], [[f[:n_fake] for f in g] for g in out.features])
    real = DiscriminatorOutput([x[n_fake:] for x in out.logits], [[f[n_fake:] for f in g] for g in out.features])
    return fake, real


def encode(E: nn.Module | None, real: torch.Tensor, with_kl: bool):
    """z from a VAE encoder (reparameterised) and its KL divergence to N(0, I) (``None`` without an encoder)."""
    if E is None:
        return None, None
    mu, logvar = E(real)
    z = reparameterize(mu.float(), logvar.float())
    return z, (kl_divergence(mu, logvar) if with_kl else None)


@OBJECTIVES.register("gan", "hinge/LSGAN + feature matching + VGG + L_s + KL (SC-GAN, SPADE, CC-FPSE, pix2pixHD)")
class GANObjective(VGGTerms, Objective):
    """Loss weights (0 switches a term off) and choices. Defaults: SC-GAN paper Eq. 6 / official code.

    Args:
        adversarial: ``hinge`` (SC-GAN, SPADE, CC-FPSE), ``ls`` (pix2pixHD's LSGAN) or ``ns`` (non-saturating).
        gan, feature_matching, perceptual, semantic, kl: weights of the adversarial, D feature-matching, VGG19
            perceptual, L_s (SC-GAN's coarse RGB vs the real image) and VAE KL terms.
        semantic_loss: L_s as ``l1``, ``l2`` or ``vgg`` (paper Table 4).
        vgg_weights: torchvision's ``vgg19-dcbb9e9d.pth`` (default: the torch hub cache; never downloaded).
        vgg_imagenet_normalize: official: VGG sees [-1, 1] images as they are.
    """

    uses_encoder = True

    def __init__(self, adversarial: str = "hinge", gan: float = 1.0, feature_matching: float = 10.0,
                 perceptual: float = 10.0, semantic: float = 2.0, semantic_loss: str = "l1", kl: float = 0.05,
                 vgg_weights: str | None = None, vgg_imagenet_normalize: bool = False) -> None:
        super().__init__()
        if adversarial not in ADVERSARIAL_LOSSES:
            raise ValueError(f"loss.adversarial = {adversarial!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")
        if semantic_loss not in ("l1", "l2", "vgg"):
            raise ValueError(f"loss.semantic_loss = {semantic_loss!r}; valid: l1, l2, vgg")
        for name, v in (("gan", gan), ("feature_matching", feature_matching), ("perceptual", perceptual),
                        ("semantic", semantic), ("kl", kl)):
            check_range(f"loss.{name}", v, ge=0)
        if gan == feature_matching == perceptual == semantic == 0:
            raise ValueError("every generator loss term has weight 0 (gan, feature_matching, perceptual, semantic); "
                             "nothing would train")
        self.adversarial, self.gan, self.feature_matching = adversarial, float(gan), float(feature_matching)
        self.perceptual, self.semantic, self.semantic_loss = float(perceptual), float(semantic), semantic_loss
        self.kl, self.vgg_weights, self.vgg_imagenet_normalize = float(kl), vgg_weights, vgg_imagenet_normalize
        self.vgg: VGGLoss | None = None
        # without L_s the SVG's RGB head gets no gradient: DDP must not wait for it
        self.find_unused_parameters = self.semantic == 0

    def vgg_terms(self) -> list[tuple[str, str]]:
        if self.perceptual > 0:
            return [(f"the perceptual loss (loss.perceptual={self.perceptual:g})", "--set loss.perceptual=0")]
        return []

    def generator_loss(self, G: nn.Module, D: nn.Module | None, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Returns (total loss, detached terms, the fake images detached).

        ``kl_scale``: the KL term is a sum over the batch (official); when a batch is split over processes or
        micro-batches whose gradients are averaged, scaling by their number keeps the sum over the whole batch.
        """
        if self.needs_vgg and self.vgg is None:
            raise RuntimeError("call prepare() first: the VGG terms need the VGG19 network")
        stats: dict[str, torch.Tensor] = {}
        terms: list[torch.Tensor] = []
        z, kld = encode(E, real, self.kl > 0)
        if kld is not None:
            stats["G/kl"] = kld.detach()
            terms.append(self.kl * kl_scale * kld)
        out = G(semantic, z, return_aux=True)
        fake = out.image
        self._adversarial_terms(D, fake, real, semantic, stats, terms)
        if self.perceptual > 0:
            vgg = self.vgg(fake, real)
            stats["G/vgg"] = vgg.detach()
            terms.append(self.perceptual * vgg)
        coarse = getattr(out, "coarse_rgb", None)
        if self.semantic > 0 and coarse is not None:
            ls = self._semantic_loss(coarse, real)
            stats["G/semantic"] = ls.detach()
            terms.append(self.semantic * ls)
        if not terms:
            raise ValueError("every generator loss term has weight 0; nothing to train")
        total = torch.stack([t.float() for t in terms]).sum()
        stats["G/total"] = total.detach()
        return total, stats, fake.detach()

    def _adversarial_terms(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor, condition: torch.Tensor,
                           stats: dict[str, torch.Tensor], terms: list[torch.Tensor]) -> None:
        """G's adversarial and D feature-matching terms (one D pass on ``cat([fake, real])``), appended to
        ``terms`` with their weights and logged in ``stats``; nothing when both weights are 0."""
        if self.gan <= 0 and self.feature_matching <= 0:
            return
        d_out = D(torch.cat([fake, real]), torch.cat([condition, condition]))
        d_fake, d_real = split_batch(d_out, fake.shape[0])
        if self.gan > 0:
            adv = g_adversarial_loss(d_fake.logits, self.adversarial)
            stats["G/adv"] = adv.detach()
            terms.append(self.gan * adv)
        if self.feature_matching > 0:
            fm = feature_matching_loss(d_fake.features, d_real.features)
            stats["G/fm"] = fm.detach()
            terms.append(self.feature_matching * fm)

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Fresh fakes for the D step (train mode, like the official code), without gradients."""
        z, _ = encode(E, real, False)
        return G(semantic, z)

    def discriminator_loss(self, D: nn.Module, semantic: torch.Tensor, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_out = D(torch.cat([fake.detach(), real]), torch.cat([semantic, semantic]))
        d_fake, d_real = split_batch(d_out, fake.shape[0])
        loss_real, loss_fake = d_adversarial_loss(d_real.logits, d_fake.logits, self.adversarial)
        total = loss_real + loss_fake
        stats = {"D/real": loss_real.detach(), "D/fake": loss_fake.detach(), "D/total": total.detach(),
                 "D/logit_real": torch.stack([x.float().mean() for x in d_real.logits]).mean().detach(),
                 "D/logit_fake": torch.stack([x.float().mean() for x in d_fake.logits]).mean().detach()}
        return total, stats
