"""The training objective of SC-GAN (paper Eq. 6), written for any registered G, D and (optional) encoder.

Generator:      L = gan * L_adv + feature_matching * L_FM + perceptual * L_VGG + semantic * L_s (+ kl * KL)
Discriminator:  L = L_adv(real) + L_adv(fake)

Fake and real images go through D in one batch (its norms are per-sample, so this equals two calls).
The caller owns ``backward`` and the optimiser steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig
from ..losses import VGGLoss, d_adversarial_loss, feature_matching_loss, g_adversarial_loss, kl_divergence
from ..models.encoders import reparameterize
from ..models.outputs import DiscriminatorOutput


def _split(out: DiscriminatorOutput, n_fake: int) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    fake = DiscriminatorOutput([x[:n_fake] for x in out.logits], [[f[:n_fake] for f in g] for g in out.features])
    real = DiscriminatorOutput([x[n_fake:] for x in out.logits], [[f[n_fake:] for f in g] for g in out.features])
    return fake, real


class GANObjective:
    def __init__(self, loss: LossConfig, vgg: VGGLoss | None = None) -> None:
        self.cfg = loss
        self.vgg = vgg
        needs_vgg = loss.perceptual > 0 or (loss.semantic > 0 and loss.semantic_loss == "vgg")
        if needs_vgg and vgg is None:
            raise ValueError("the perceptual / VGG terms are on but no VGG network was given")

    def _z(self, E: nn.Module | None, real: torch.Tensor):
        if E is None:
            return None, None
        mu, logvar = E(real)
        z = reparameterize(mu.float(), logvar.float())
        kld = kl_divergence(mu, logvar) if self.cfg.kl > 0 else None
        return z, kld

    def _semantic_loss(self, coarse: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.semantic_loss
        if kind == "l1":
            return F.l1_loss(coarse.float(), real.float())
        if kind == "l2":
            return F.mse_loss(coarse.float(), real.float())
        return self.vgg(coarse, real)

    def generator_loss(self, G: nn.Module, D: nn.Module, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Returns (total loss, detached terms, the fake images detached).

        ``kl_scale``: the KL term is a sum over the batch (official); when a batch is split over processes or
        micro-batches whose gradients are averaged, scaling by their number keeps the sum over the whole batch.
        """
        c = self.cfg
        stats: dict[str, torch.Tensor] = {}
        terms: list[torch.Tensor] = []
        z, kld = self._z(E, real)
        if kld is not None:
            stats["G/kl"] = kld.detach()
            terms.append(c.kl * kl_scale * kld)
        out = G(semantic, z, return_aux=True)
        fake = out.image
        if c.gan > 0 or c.feature_matching > 0:
            d_out = D(torch.cat([fake, real]), torch.cat([semantic, semantic]))
            d_fake, d_real = _split(d_out, fake.shape[0])
            if c.gan > 0:
                adv = g_adversarial_loss(d_fake.logits, c.adversarial)
                stats["G/adv"] = adv.detach()
                terms.append(c.gan * adv)
            if c.feature_matching > 0:
                fm = feature_matching_loss(d_fake.features, d_real.features)
                stats["G/fm"] = fm.detach()
                terms.append(c.feature_matching * fm)
        if c.perceptual > 0:
            vgg = self.vgg(fake, real)
            stats["G/vgg"] = vgg.detach()
            terms.append(c.perceptual * vgg)
        if c.semantic > 0 and out.coarse_rgb is not None:
            ls = self._semantic_loss(out.coarse_rgb, real)
            stats["G/semantic"] = ls.detach()
            terms.append(c.semantic * ls)
        if not terms:
            raise ValueError("every generator loss term has weight 0; nothing to train")
        total = torch.stack([t.float() for t in terms]).sum()
        stats["G/total"] = total.detach()
        return total, stats, fake.detach()

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Fresh fakes for the D step (train mode, like the official code), without gradients."""
        z = None
        if E is not None:
            mu, logvar = E(real)
            z = reparameterize(mu.float(), logvar.float())
        return G(semantic, z)

    def discriminator_loss(self, D: nn.Module, semantic: torch.Tensor, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_out = D(torch.cat([fake.detach(), real]), torch.cat([semantic, semantic]))
        d_fake, d_real = _split(d_out, fake.shape[0])
        loss_real, loss_fake = d_adversarial_loss(d_real.logits, d_fake.logits, self.cfg.adversarial)
        total = loss_real + loss_fake
        stats = {"D/real": loss_real.detach(), "D/fake": loss_fake.detach(), "D/total": total.detach(),
                 "D/logit_real": torch.stack([x.float().mean() for x in d_real.logits]).mean().detach(),
                 "D/logit_fake": torch.stack([x.float().mean() for x in d_fake.logits]).mean().detach()}
        return total, stats
