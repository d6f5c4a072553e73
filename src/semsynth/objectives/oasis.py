"""The OASIS objective (Sushko, Schönfeld et al., ICLR 2021, Sec. 3): the discriminator is an (N+1)-class
segmenter and the adversarial loss is a per-pixel cross-entropy, as the official ``models/losses.py``.

Discriminator:  L_D = CE_w(D(real), class + 1) + CE(D(fake), 0) + lambda_labelmix * L_LM
Generator:      L_G = CE_w(D(fake), class + 1) [+ lambda_vgg * L_VGG + semantic * L_s + feature_matching * L_FM]

* **(N+1)-class cross-entropy.** D's per-pixel logits ``[B, N + 1, H, W]`` (``discriminator: oasis``): channel 0 is
  "fake", channel ``1 + c`` the dataset's class ``c``. Real pixels should be their class, generated pixels "fake";
  the generator wants its pixels taken for their class.
* **Class balancing** (``CE_w``, ``class_balancing``): each real-class term is weighted by the inverse frequency of
  its class in the batch, ``w_c = (B H W) / (K * count_c)`` with ``K`` the number of classes present, and the
  don't-care channel (``dontcare_channel``; OASIS's datasets: 0) weighted 0 (and not counted in ``K``). The
  "fake" term is not weighted.
* **LabelMix** (``lambda_labelmix``, official 10, Cityscapes 5; 0 = ``--no_labelmix``): a binary mask ``M`` that
  gives every class present in the batch a random bit (one per class, shared by the batch); the image
  ``M * real + (1 - M) * fake`` goes through D, whose logits should equal ``M * D(real) + (1 - M) * D(fake)``
  (mean squared error over every logit, gradients through all three outputs).
* No VGG and no feature matching by default (OASIS's point); ``lambda_vgg`` adds the official ``--add_vgg_loss``
  term (official weight 10), ``feature_matching`` an L1 between D's block outputs on fake and real.
* ``semantic`` (L_s): SC-GAN's coarse-RGB regression, for SC-GAN's generator trained with OASIS's D (SC-GAN paper,
  Table 8; docs/models.md); generators without a coarse RGB ignore it.

Each D input goes through D in its own call (fake, real, mixed), as the official code does: spectral norm advances
its power iteration once per call, and the label maps are not copied. No VAE encoder (``encoder: null``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import VGGLoss, feature_matching_loss
from ..models.outputs import DiscriminatorOutput
from ..registry import check_range
from . import OBJECTIVES, Objective
from .vgg_terms import VGGTerms

# ------------------------------------------------------------------------------------------------------------
# The loss terms, as plain functions of one-hot labels [B, N, H, W] and logits [B, N + 1, H, W]


def class_balance_weights(label: torch.Tensor, dontcare: int | None) -> torch.Tensor:
    """Per-pixel weights ``[B, H, W]``: ``(B H W) / (K * count_c)`` for a pixel of class ``c`` (``count_c`` its
    pixels in the batch, ``K`` the classes present), 0 on the don't-care channel (which ``K`` does not count)."""
    counts = label.detach().float().sum(dim=(0, 2, 3))
    if dontcare is not None:
        counts[dontcare] = 0
    present = counts > 0
    k = present.sum().clamp(min=1)
    per_pixel = label.shape[0] * label.shape[2] * label.shape[3]
    coef = torch.where(present, per_pixel / (k * counts.clamp(min=1)), torch.zeros_like(counts))
    return coef[label.argmax(dim=1)]


def n1_targets(label: torch.Tensor, real: bool) -> torch.Tensor:
    """Targets ``[B, H, W]`` of the (N+1)-class loss: ``1 + class`` for real, ``0`` ("fake") for generated."""
    classes = label.argmax(dim=1)
    return classes + 1 if real else torch.zeros_like(classes)


def n1_cross_entropy(logits: torch.Tensor, label: torch.Tensor, real: bool, balance: bool = True,
                     dontcare: int | None = 0) -> torch.Tensor:
    """Mean per-pixel cross-entropy of ``logits`` against :func:`n1_targets`; the real term weighted by
    :func:`class_balance_weights` when ``balance``."""
    loss = F.cross_entropy(logits.float(), n1_targets(label, real), reduction="none")
    if real and balance:
        loss = loss * class_balance_weights(label, dontcare)
    return loss.mean()


def labelmix_mask(label: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LabelMix's mask ``[B, 1, H, W]`` (float 0/1): one random bit per class present in the batch (in ascending
    class order, ``torch.randint(0, 2)``), painted over that class's pixels in every image of the batch."""
    classes = label.argmax(dim=1, keepdim=True)
    present = torch.unique(classes)
    bits = torch.zeros(label.shape[1], dtype=torch.long, device=label.device)
    drawn = torch.randint(0, 2, (present.numel(),), generator=generator,
                          device="cpu" if generator is not None else label.device)
    bits[present] = drawn.to(label.device)
    return bits[classes].float()


def labelmix_loss(mask: torch.Tensor, d_mixed: torch.Tensor, d_fake: torch.Tensor,
                  d_real: torch.Tensor) -> torch.Tensor:
    """Mean squared error between D's logits on the mixed image and the same mix of its logits on real and fake."""
    mask = mask.to(d_real.dtype)
    return F.mse_loss((mask * d_real + (1 - mask) * d_fake).float(), d_mixed.float())


# ------------------------------------------------------------------------------------------------------------
# The objective


@OBJECTIVES.register("oasis", "OASIS: class-balanced (N+1)-class cross-entropy with a segmentation D + LabelMix "
                              "(+ optional VGG, L_s)")
class OASISObjective(VGGTerms, Objective):
    """Loss weights and choices. Defaults: the official ADE20K / COCO-Stuff settings (Cityscapes: labelmix 5).

    Args:
        lambda_labelmix: weight of LabelMix (official 10; 5 for Cityscapes; 0 switches it off, ``--no_labelmix``).
        class_balancing: weight the real term by inverse class frequency (official; ``--no_balancing_inloss``
            turns it off).
        dontcare_channel: the one-hot channel of "unlabeled", weighted 0 in the balanced term (OASIS's datasets:
            0; semsynth's coco-stuff: 182; ``null`` for none). Must be the dataset's, see the presets.
        lambda_vgg: weight of the VGG19 perceptual term (official off; ``--add_vgg_loss`` uses 10).
        semantic, semantic_loss: SC-GAN's L_s on its coarse RGB (``l1``, ``l2`` or ``vgg``); 0 = off.
        feature_matching: L1 between D's block outputs on fake and real images; 0 = off (official).
        vgg_weights: torchvision's ``vgg19-dcbb9e9d.pth`` (default: the torch hub cache; never downloaded).
        vgg_imagenet_normalize: official: VGG sees [-1, 1] images as they are.
    """

    discriminator_kinds = ("segmentation",)  # the OASIS D's per-pixel N+1 logits

    uses_encoder = False

    def __init__(self, lambda_labelmix: float = 10.0, class_balancing: bool = True, dontcare_channel: int | None = 0,
                 lambda_vgg: float = 0.0, semantic: float = 0.0, semantic_loss: str = "l1",
                 feature_matching: float = 0.0, vgg_weights: str | None = None,
                 vgg_imagenet_normalize: bool = False) -> None:
        super().__init__()
        for name, v in (("lambda_labelmix", lambda_labelmix), ("lambda_vgg", lambda_vgg), ("semantic", semantic),
                        ("feature_matching", feature_matching)):
            check_range(f"loss.{name}", v, ge=0)
        if dontcare_channel is not None:
            check_range("loss.dontcare_channel", dontcare_channel, ge=0, integer=True)
        if semantic_loss not in ("l1", "l2", "vgg"):
            raise ValueError(f"loss.semantic_loss = {semantic_loss!r}; valid: l1, l2, vgg")
        self.lambda_labelmix, self.class_balancing = float(lambda_labelmix), bool(class_balancing)
        self.dontcare_channel = dontcare_channel
        self.lambda_vgg, self.semantic, self.semantic_loss = float(lambda_vgg), float(semantic), semantic_loss
        self.feature_matching = float(feature_matching)
        self.vgg_weights, self.vgg_imagenet_normalize = vgg_weights, vgg_imagenet_normalize
        self.vgg: VGGLoss | None = None
        # without L_s, SC-GAN's coarse-RGB head gets no gradient: DDP must not wait for it
        self.find_unused_parameters = self.semantic == 0

    def vgg_terms(self) -> list[tuple[str, str]]:
        if self.lambda_vgg > 0:
            return [(f"the VGG term (loss.lambda_vgg={self.lambda_vgg:g})", "--set loss.lambda_vgg=0")]
        return []

    # -- helpers -------------------------------------------------------------------------------------------------

    def _logits(self, out: DiscriminatorOutput, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's per-pixel (N+1)-class logits and the one-hot label ``[B, N, H, W]`` (instance edges dropped)."""
        if len(out.logits) != 1 or out.logits[0].dim() != 4:
            raise ValueError(f"the oasis objective needs a segmentation discriminator with one map of per-pixel "
                             f"N+1 logits (discriminator: oasis); this one returns {len(out.logits)} map(s)")
        logits = out.logits[0]
        n = logits.shape[1] - 1
        if semantic.shape[1] not in (n, n + 1) or logits.shape[2:] != semantic.shape[2:]:
            raise ValueError(f"the discriminator's logits {tuple(logits.shape)} do not fit the label map "
                             f"{tuple(semantic.shape)}: the oasis objective needs [B, classes + 1, H, W] at the "
                             f"image's size (discriminator: oasis)")
        if self.dontcare_channel is not None and self.dontcare_channel >= n:
            raise ValueError(f"loss.dontcare_channel = {self.dontcare_channel}, but the dataset has {n} channels "
                             f"(0..{n - 1}); set the dataset's don't-care channel, or null for none")
        return logits, semantic[:, :n]

    def _real_term(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return n1_cross_entropy(logits, label, True, self.class_balancing, self.dontcare_channel)

    # -- the interface -------------------------------------------------------------------------------------------

    def generator_loss(self, G: nn.Module, D: nn.Module | None, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Returns (total loss, detached terms, the fake images detached)."""
        if E is not None:
            raise ValueError("the oasis objective trains without a style encoder (the noise z gives the variety); "
                             "set encoder: null")
        if self.needs_vgg and self.vgg is None:
            raise RuntimeError("call prepare() first: the VGG terms need the VGG19 network")
        out = G(semantic, None, return_aux=True)
        fake = out.image
        d_fake = D(fake, semantic)
        logits, label = self._logits(d_fake, semantic)
        adv = self._real_term(logits, label)
        stats = {"G/adv": adv.detach()}
        terms = [adv]
        if self.feature_matching > 0:
            fm = feature_matching_loss(d_fake.features, D(real, semantic).features)
            stats["G/fm"] = fm.detach()
            terms.append(self.feature_matching * fm)
        if self.lambda_vgg > 0:
            vgg = self.vgg(fake, real)
            stats["G/vgg"] = vgg.detach()
            terms.append(self.lambda_vgg * vgg)
        coarse = getattr(out, "coarse_rgb", None)
        if self.semantic > 0 and coarse is not None:
            ls = self._semantic_loss(coarse, real)
            stats["G/semantic"] = ls.detach()
            terms.append(self.semantic * ls)
        total = torch.stack([t.float() for t in terms]).sum()
        stats["G/total"] = total.detach()
        return total, stats, fake.detach()

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Fresh fakes for the D step (train mode, fresh noise, like the official code), without gradients."""
        return G(semantic, None)

    def discriminator_loss(self, D: nn.Module, semantic: torch.Tensor, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fake = fake.detach()
        d_fake, label = self._logits(D(fake, semantic), semantic)
        d_real, _ = self._logits(D(real, semantic), semantic)
        loss_fake = n1_cross_entropy(d_fake, label, False)
        loss_real = self._real_term(d_real, label)
        total = loss_fake + loss_real
        stats = {"D/fake": loss_fake.detach(), "D/real": loss_real.detach()}
        if self.lambda_labelmix > 0:
            mask = labelmix_mask(label)
            mixed = mask.to(real.dtype) * real + (1 - mask.to(real.dtype)) * fake
            d_mixed, _ = self._logits(D(mixed, semantic), semantic)
            lm = labelmix_loss(mask, d_mixed, d_fake, d_real)
            stats["D/labelmix"] = lm.detach()
            total = total + self.lambda_labelmix * lm
        stats["D/total"] = total.detach()
        return total, stats
