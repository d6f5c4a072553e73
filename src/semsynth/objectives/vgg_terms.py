"""What the objectives with VGG19-based terms share: which enabled terms need the network, the weights file (a
missing one names those terms and the settings that switch each off), loading it once, and SC-GAN's L_s."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..losses import VGGLoss


class VGGTerms:
    """Mixed into an objective (an ``nn.Module``) that has ``vgg_weights``, ``vgg_imagenet_normalize``,
    ``semantic`` and ``semantic_loss`` and sets ``self.vgg = None`` in its constructor. Subclasses list their own
    VGG-based terms in :meth:`vgg_terms`; SC-GAN's L_s (``semantic_loss: vgg``) is added here."""

    vgg: VGGLoss | None

    def vgg_terms(self) -> list[tuple[str, str]]:
        """``(what needs VGG19, the setting that switches it off)`` for each enabled term of this objective."""
        return []

    def _all_vgg_terms(self) -> list[tuple[str, str]]:
        terms = list(self.vgg_terms())
        if self.semantic > 0 and self.semantic_loss == "vgg":
            terms.append(("the VGG variant of L_s (loss.semantic_loss=vgg)", "--set loss.semantic_loss=l1"))
        return terms

    @property
    def needs_vgg(self) -> bool:
        return bool(self._all_vgg_terms())

    def vgg_weights_path(self) -> Path:
        """The VGG19 weights file these settings need; when it is missing, the error names the terms that need it
        and the settings that remove the need (each fix fixes this error)."""
        from ..losses.perceptual import find_vgg19_weights

        terms = self._all_vgg_terms()
        skips = [s for _, s in terms]
        skip = ("switch " + ("it" if len(terms) == 1 else "both") + " off with " + " ".join(skips)) if skips else ""
        return find_vgg19_weights(self.vgg_weights, " and ".join(u for u, _ in terms) or "the perceptual loss", skip)

    def prepare(self, device: torch.device | str = "cpu", pretrained: bool = True):
        """Load VGG19 when a term needs it (``pretrained=False``: random weights, for tests and benchmarks)."""
        if self.needs_vgg and self.vgg is None:
            weights = self.vgg_weights_path() if pretrained else None
            self.vgg = VGGLoss(weights, pretrained=pretrained, imagenet_normalize=self.vgg_imagenet_normalize)
        return self.to(device)

    def _semantic_loss(self, coarse: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """SC-GAN's L_s: the SVG's coarse RGB against the image (``l1``, ``l2`` or ``vgg``)."""
        if self.semantic_loss == "l1":
            return F.l1_loss(coarse.float(), real.float())
        if self.semantic_loss == "l2":
            return F.mse_loss(coarse.float(), real.float())
        return self.vgg(coarse, real)
