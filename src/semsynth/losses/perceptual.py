"""VGG19 perceptual loss (paper Eq. 7): L1 between relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 features,
weighted 1/32, 1/16, 1/8, 1/4, 1 (as the official code). Images go in as they are, in [-1, 1], without
ImageNet normalisation (official behaviour; ``imagenet_normalize=True`` changes that).

ImageNet weights are read from a given file or from the standard torch hub cache
(``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth``); nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import MissingWeightsError

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_vgg19_weights(path: str | os.PathLike | None = None, used_by: str = "the perceptual loss",
                       how_to_skip: str = "switch the term off with --set loss.perceptual=0") -> Path:
    """Locate the torchvision VGG19 ImageNet state dict, or raise a message that says how to provide it
    (``used_by``: what needs it; ``how_to_skip``: the setting that removes the need)."""
    candidates = [Path(path).expanduser()] if path else [hub_checkpoint_dir() / VGG19_FILENAME]
    for c in candidates:
        if c.is_file():
            return c
    where = candidates[0]
    raise MissingWeightsError(
        f"VGG19 ImageNet weights for {used_by} were not found at {where}. Download {VGG19_URL} "
        f"(torchvision's vgg19 weights) on a machine with internet access and put the file at "
        f"{hub_checkpoint_dir() / VGG19_FILENAME}, or give its path with --set loss.vgg_weights=PATH"
        + (f", or {how_to_skip}" if how_to_skip else "")
    )


def load_vgg19_state(path: Path) -> dict[str, torch.Tensor]:
    """torchvision's VGG19 state dict from ``path``, read safely and checked (every conv of the features)."""
    from ..utils.files import safe_torch_load

    fix = (f"it should be torchvision's {VGG19_FILENAME} ({VGG19_URL}); download it again and put it at "
           f"{hub_checkpoint_dir() / VGG19_FILENAME}, or give its path with --set loss.vgg_weights=PATH")
    state = safe_torch_load(path, "VGG19 ImageNet weights", fix, error=MissingWeightsError)
    if not isinstance(state, dict):
        raise MissingWeightsError(f"VGG19 ImageNet weights: {path} holds a {type(state).__name__}, not a state dict; "
                                  f"{fix}")
    expected = {f"features.{k}": v.shape for k, v in _vgg19_features().state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        raise MissingWeightsError(f"VGG19 ImageNet weights: {path} lacks {len(missing)} of VGG19's convolution "
                                  f"tensors ({', '.join(missing[:3])}, ...); {fix}")
    for k, shape in expected.items():
        if not isinstance(state[k], torch.Tensor) or state[k].shape != shape:
            got = list(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
            raise MissingWeightsError(f"VGG19 ImageNet weights: {path}: {k} is {got}, expected {list(shape)}; {fix}")
    return state


def _vgg19_features() -> nn.Sequential:
    """VGG19's convolutional part only: the classifier (120M parameters, 0.5 GB) is never allocated."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["E"], batch_norm=False)
    except (ImportError, KeyError):  # a torchvision without these helpers: build it all, keep the features
        return torchvision.models.vgg19(weights=None).features


class VGG19Features(nn.Module):
    """The five VGG19 slices ending at relu1_1 .. relu5_1; frozen, eval mode."""

    def __init__(self, weights: str | os.PathLike | None = None, pretrained: bool = True) -> None:
        super().__init__()
        feats = _vgg19_features()
        if pretrained:
            state = load_vgg19_state(find_vgg19_weights(weights))
            feats.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        self.slices = nn.ModuleList(nn.Sequential(*[feats[i] for i in range(a, b)]) for a, b in _SLICES)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


class VGGLoss(nn.Module):
    """``forward(fake, real) = sum_i w_i * L1(phi_i(fake), phi_i(real))`` (real features detached)."""

    def __init__(self, weights: str | os.PathLike | None = None, pretrained: bool = True,
                 imagenet_normalize: bool = False) -> None:
        super().__init__()
        self.vgg = VGG19Features(weights, pretrained)
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet_normalize:
            return ((x + 1) / 2 - self.mean) / self.std
        return x

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_feats = self.vgg(self._prep(real))
        fake_feats = self.vgg(self._prep(fake))
        return sum(w * F.l1_loss(f, r) for w, f, r in zip(_WEIGHTS, fake_feats, real_feats))
