"""CRN's perceptual regression loss (Chen & Koltun, ICCV 2017, Sec. 3.3-3.4; SIMS reuses it).

For layers l = pixels, conv1_2, conv2_2, conv3_2, conv4_2, conv5_2 of VGG19 (after their ReLU, average pooling
between blocks, as the official code builds its network):

    e_l(k, c) = mean over pixels of  [ |phi_l(fake_k) - phi_l(real)| averaged over channels ]  x  label_c

(the label map area-down-sampled to the layer's size, so ``sum_c e_l(k, c)`` is the layer's mean L1 error), and

    content(k, c) = sum_l lambda_l e_l(k, c),
    loss = 0.999 * sum_c min_k content(k, c) + 0.001 * sum_c mean_k content(k, c)

(Eq. 2-3: with k images, each class region is charged to the image that renders it best; with k = 1 it is the
plain layer-weighted L1). The official code's lambda_l (1/1.6, 1/2.3, 1/1.8, 1/2.8 and 10/0.8 for conv5_2 in
the 256p model, "collected at the 100th epoch") are the inverse magnitudes of the terms for its own MatConvNet
VGG19 on 0..255 images, i.e. every term contributes about equally except conv5_2 (x10): the paper's rule of
rescaling lambda_l to normalise each term's expected contribution. semsynth's network is torchvision's VGG19
(ImageNet-normalised input), whose features have other magnitudes, so by default (``normalize=True``) each term is
divided by its own batch mean (detached) before the weights (default 1, 1, 1, 1, 1, 10) apply: the same
balance, without constants tied to one VGG file. ``normalize=False`` uses the weights as they are, on images in
[-1, 1].

``CRNFeatures(random_seed=...)`` is VGG19's architecture with frozen random weights (a fixed seed; optionally
narrower, ``random_width`` channels in the first block instead of 64): the offline stand-in when the ImageNet
weights are not available (a departure from the paper, documented in docs/models.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .perceptual import _vgg19_features, find_vgg19_weights, load_vgg19_state

LAYERS = ("pixels", "conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
DEFAULT_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 10.0)
# torchvision's VGG19 ``features`` indices: each slice ends after the ReLU of conv{1..5}_2
_SLICES = ((0, 4), (4, 9), (9, 14), (14, 23), (23, 32))
_POOLS = (4, 9, 18, 27)


class CRNFeatures(nn.Module):
    """VGG19's conv1_2 .. conv5_2 (after ReLU) on images in [-1, 1] (ImageNet-normalised inside); frozen.

    ``weights``: torchvision's ``vgg19-dcbb9e9d.pth`` (found like the other VGG terms; never downloaded), or
    ``None`` with ``random_seed`` for frozen random weights (kaiming-normal, drawn from that seed only: the same
    network on every machine and run, and the training's random stream is not touched; ``random_width``: channels
    of the first block, 64 as VGG19, fewer for a cheaper network). ``pooling``: ``avg``
    (official CRN: average pooling between blocks) or ``max`` (torchvision's).
    """

    def __init__(self, weights: str | os.PathLike | None = None, *, random_seed: int | None = None,
                 pooling: str = "avg", random_width: int = 64) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling = {pooling!r}; valid: avg, max")
        if (weights is None) == (random_seed is None):
            raise ValueError("give either the VGG19 weights file or a random_seed")
        with torch.random.fork_rng(devices=[]):
            if random_seed is not None:
                torch.manual_seed(random_seed)
            feats = _vgg19_features() if weights is not None or random_width == 64 else _narrow_vgg19(random_width)
            if random_seed is not None:
                for m in feats.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                        nn.init.zeros_(m.bias)
        if weights is not None:
            state = load_vgg19_state(weights)
            feats.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        if pooling == "avg":
            for i in _POOLS:
                feats[i] = nn.AvgPool2d(2, 2)
        self.slices = nn.ModuleList(nn.Sequential(*[feats[i] for i in range(a, b)]) for a, b in _SLICES)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> CRNFeatures:  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.float() + 1) / 2 - self.mean) / self.std
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


def _narrow_vgg19(width: int) -> nn.Sequential:
    """VGG19's layers with ``width``, 2, 4, 8, 8 x ``width`` channels per block (VGG19: 64)."""
    from torchvision.models.vgg import make_layers

    cfg = [width, width, "M", 2 * width, 2 * width, "M"] + [4 * width] * 4 + ["M"] + [8 * width] * 4 + ["M"] \
        + [8 * width] * 4 + ["M"]
    return make_layers(cfg, batch_norm=False)


def vgg19_weights(path: str | None, what: str) -> os.PathLike:
    """The VGG19 file for CRN's regression, or a MissingWeightsError whose fix is the offline option."""
    return find_vgg19_weights(path, what, "train without them with --set loss.features=random (pixels + a frozen "
                                          "random VGG19 network; a departure from the paper, see docs/models.md)")


def class_errors(error: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``error`` ``[B, k, h, w]`` (per-pixel L1) and one-hot ``labels`` ``[B, C, H, W]`` -> ``[B, k, C]``: the
    error of each class region, as a share of the image's mean (area-down-sampled labels: class fractions)."""
    h, w = error.shape[-2:]
    masks = labels if labels.shape[-2:] == (h, w) else F.adaptive_avg_pool2d(labels, (h, w))
    return torch.einsum("bkhw,bchw->bkc", error, masks.float()) / (h * w)


def perceptual_regression(images: torch.Tensor, real: torch.Tensor, labels: torch.Tensor,
                          features: nn.Module | None, weights: Sequence[float] = DEFAULT_WEIGHTS,
                          normalize: bool = True, mean_share: float = 0.001
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CRN's loss of ``images`` ``[B, k, 3, H, W]`` against ``real`` ``[B, 3, H, W]`` with the class masks
    ``labels`` ``[B, C, H, W]`` (one-hot). ``features``: a :class:`CRNFeatures` (``None``: the pixel term only,
    ``weights`` then has one entry). Returns the loss and each layer's raw mean error (mean over the k images)."""
    b, k = images.shape[:2]
    errors = [(images.float() - real.float()[:, None]).abs().mean(2)]  # pixels: [B, k, H, W]
    if features is not None:
        with torch.no_grad():
            real_feats = features(real)
        fake_feats = features(images.flatten(0, 1))
        for f, r in zip(fake_feats, real_feats):
            f = f.view(b, k, *f.shape[1:])
            errors.append((f - r[:, None]).abs().mean(2))
    if len(weights) != len(errors):
        raise ValueError(f"{len(weights)} layer weights for {len(errors)} terms ({', '.join(LAYERS[:len(errors)])})")
    content = 0.0
    stats: dict[str, torch.Tensor] = {}
    for name, weight, error in zip(LAYERS, weights, errors):
        per_class = class_errors(error, labels)  # [B, k, C]
        total = per_class.sum(-1).mean()
        stats[name] = total.detach()
        scale = weight / total.detach().clamp_min(1e-8) if normalize else weight
        content = content + scale * per_class
    loss = (1 - mean_share) * content.min(1).values.sum(-1) + mean_share * content.mean(1).sum(-1)
    return loss.mean(), stats
