"""Loss terms, as plain functions and small modules. The training objective combines them."""

from .adversarial import ADVERSARIAL_LOSSES, d_adversarial_loss, g_adversarial_loss
from .feature_matching import feature_matching_loss
from .kl import kl_divergence
from .perceptual import VGG19_FILENAME, VGGLoss, find_vgg19_weights

__all__ = [
    "ADVERSARIAL_LOSSES", "VGG19_FILENAME", "VGGLoss", "d_adversarial_loss", "feature_matching_loss",
    "find_vgg19_weights", "g_adversarial_loss", "kl_divergence",
]
