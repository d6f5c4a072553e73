"""CRN's objective: the perceptual regression loss alone (Chen & Koltun, ICCV 2017, Eq. 1-3), no discriminator.

Generator:  L = CRN regression (``losses/regression.py``: class-masked VGG19 feature L1 of pixels and
            conv1_2 .. conv5_2, each class charged to the best of the k images when the generator predicts k)
            [+ gan * adversarial, optional; not in the paper]

With ``gan: 0`` (the paper) the config has ``discriminator: null`` and the training loop skips the D step. A
positive ``gan`` adds an adversarial term (``adversarial``: hinge, ns or ls) against a registered discriminator.

Offline: VGG19's ImageNet weights are never downloaded. ``features: random`` replaces them by VGG19's
architecture with frozen random weights (a fixed seed), and ``features: none`` keeps the pixel term only; both
are departures from the paper, for machines without the weights (the synthetic-faces presets use ``random``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses import d_adversarial_loss, g_adversarial_loss
from ..losses.adversarial import ADVERSARIAL_LOSSES
from ..losses.regression import DEFAULT_WEIGHTS, LAYERS, CRNFeatures, perceptual_regression, vgg19_weights
from ..registry import check_range
from . import OBJECTIVES, Objective
from .gan import split_batch

FEATURES = ("vgg19", "random", "none")


def plain_module(module: nn.Module) -> nn.Module:
    """The module under torch.compile and DDP wrappers."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


@OBJECTIVES.register("crn", "CRN (ICCV 2017): perceptual regression (class-masked VGG19 L1, min over k images); no D")
class CRNObjective(Objective):
    """The perceptual regression of CRN. Defaults: the paper / official code, balanced as ``losses/regression.py``
    explains.

    Args:
        features: ``vgg19`` (the paper: ImageNet VGG19), ``random`` (frozen random VGG19 weights, for offline
            machines) or ``none`` (the pixel term only).
        layer_weights: weights of pixels, conv1_2, conv2_2, conv3_2, conv4_2, conv5_2 (one, for the pixels, with
            ``features: none``); ``None``: 1, 1, 1, 1, 1, 10 (the official balance, conv5_2 x10).
        normalize_terms: divide each term by its batch mean before weighting (the paper's "normalise the expected
            contribution of each term"); false: the weights apply to the raw errors (images in [-1, 1]).
        mean_share: the share of the mean over the k images in the diversity loss (official 0.001).
        vgg_weights: torchvision's ``vgg19-dcbb9e9d.pth`` (default: the torch hub cache; never downloaded).
        vgg_pooling: pooling between VGG blocks: ``avg`` (official CRN) or ``max`` (torchvision's).
        random_seed, random_width: the seed of ``features: random``'s weights, and the channels of its first
            block (64: VGG19's widths; fewer: a narrower, cheaper random network).
        gan, adversarial: weight and kind of an optional adversarial term (0: none, ``discriminator: null``).
    """

    needs_discriminator = False

    def __init__(self, features: str = "vgg19", layer_weights: list[float] | None = None,
                 normalize_terms: bool = True, mean_share: float = 0.001, vgg_weights: str | None = None,
                 vgg_pooling: str = "avg", random_seed: int = 0, random_width: int = 64, gan: float = 0.0,
                 adversarial: str = "hinge") -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"loss.features = {features!r}; valid: {', '.join(FEATURES)}")
        if vgg_pooling not in ("avg", "max"):
            raise ValueError(f"loss.vgg_pooling = {vgg_pooling!r}; valid: avg, max")
        if adversarial not in ADVERSARIAL_LOSSES:
            raise ValueError(f"loss.adversarial = {adversarial!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")
        n_terms = 1 if features == "none" else len(LAYERS)
        if layer_weights is None:
            layer_weights = list(DEFAULT_WEIGHTS[:n_terms])
        if len(layer_weights) != n_terms:
            names = ", ".join(LAYERS[:n_terms])
            raise ValueError(f"loss.layer_weights = {list(layer_weights)} has {len(layer_weights)} entries; "
                             f"features={features} has {n_terms} terms ({names})")
        for w in layer_weights:
            check_range("loss.layer_weights[i]", w, ge=0)
        if not any(w > 0 for w in layer_weights):
            raise ValueError("every loss.layer_weights entry is 0; nothing would train")
        check_range("loss.mean_share", mean_share, ge=0, le=1)
        check_range("loss.gan", gan, ge=0)
        check_range("loss.random_seed", random_seed, ge=0, lt=2**63, integer=True)
        check_range("loss.random_width", random_width, ge=1, le=512, integer=True)
        self.features, self.layer_weights = features, [float(w) for w in layer_weights]
        self.normalize_terms, self.mean_share = normalize_terms, float(mean_share)
        self.vgg_weights, self.vgg_pooling, self.random_seed = vgg_weights, vgg_pooling, random_seed
        self.random_width = random_width
        self.gan, self.adversarial = float(gan), adversarial
        self.needs_discriminator = self.gan > 0  # the config then needs a discriminator
        self.net: CRNFeatures | None = None

    def prepare(self, device: torch.device | str = "cpu", pretrained: bool = True) -> CRNObjective:
        """Build the feature network: VGG19's ImageNet weights (``features: vgg19``; ``pretrained=False``: random
        weights instead, for tests), random weights (``random``), or none."""
        if self.net is None and self.features != "none":
            if self.features == "vgg19" and pretrained:
                path = vgg19_weights(self.vgg_weights, "CRN's perceptual regression (loss.features=vgg19)")
                self.net = CRNFeatures(path, pooling=self.vgg_pooling)
            else:
                width = self.random_width if self.features == "random" else 64
                self.net = CRNFeatures(random_seed=self.random_seed, pooling=self.vgg_pooling, random_width=width)
        return self.to(device)

    # -- the terms -------------------------------------------------------------------------------------------

    def regression(self, out, real: torch.Tensor, semantic: torch.Tensor, num_classes: int
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CRN's loss of a generator output (its k images when it has several) against ``real``."""
        if self.features != "none" and self.net is None:
            raise RuntimeError("call prepare() first: the regression needs its feature network")
        images = out.variants if getattr(out, "variants", None) is not None else out.image[:, None]
        loss, terms = perceptual_regression(images, real, semantic[:, :num_classes], self.net, self.layer_weights,
                                            self.normalize_terms, self.mean_share)
        stats = {f"G/{name}": value for name, value in terms.items()}
        stats["G/regression"] = loss.detach()
        return loss, stats

    def adversarial_term(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor,
                         semantic: torch.Tensor) -> torch.Tensor:
        d_out = D(torch.cat([fake, real]), torch.cat([semantic, semantic]))
        d_fake, _ = split_batch(d_out, fake.shape[0])
        return g_adversarial_loss(d_fake.logits, self.adversarial)

    def run_generator(self, G: nn.Module, semantic: torch.Tensor, real: torch.Tensor):
        """The generator's output for a training batch (SIMS also gives G its training canvas)."""
        return G(semantic, None, return_aux=True)

    def generator_loss(self, G: nn.Module, D: nn.Module | None, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        num_classes = getattr(plain_module(G), "num_classes", semantic.shape[1])
        out = self.run_generator(G, semantic, real)
        total, stats = self.regression(out, real, semantic, num_classes)
        total, stats = self.extra_terms(out, real, semantic, num_classes, total, stats)
        if self.gan > 0:
            if D is None:
                raise ConfigError(f"loss.gan = {self.gan:g} needs a discriminator; give discriminator: {{name: ...}}")
            adv = self.adversarial_term(D, out.image, real, semantic)
            stats["G/adv"] = adv.detach()
            total = total + self.gan * adv
        stats["G/total"] = total.detach()
        return total, stats, out.image.detach()

    def extra_terms(self, out, real, semantic, num_classes, total, stats):
        """Terms a subclass adds to the regression (SIMS: the segmentation head's cross-entropy)."""
        return total, stats

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.run_generator(G, semantic, real).image

    def discriminator_loss(self, D: nn.Module, semantic: torch.Tensor, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_out = D(torch.cat([fake.detach(), real]), torch.cat([semantic, semantic]))
        d_fake, d_real = split_batch(d_out, fake.shape[0])
        loss_real, loss_fake = d_adversarial_loss(d_real.logits, d_fake.logits, self.adversarial)
        total = loss_real + loss_fake
        return total, {"D/real": loss_real.detach(), "D/fake": loss_fake.detach(), "D/total": total.detach()}


def cross_entropy_to_layout(logits: torch.Tensor, semantic: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy of predicted label logits ``[B, C, H, W]`` against the layout's classes."""
    return F.cross_entropy(logits.float(), semantic[:, :num_classes].argmax(1))
