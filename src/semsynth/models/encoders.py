"""VAE style encoder (SPADE's ConvEncoder, used by SC-GAN's CelebAMask-HQ preset) and its reparameterisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from ..layers import init_weights, spectral_norm
from ..layers.init import INIT_SCHEMES
from ..registry import check_range
from . import ENCODERS


@ENCODERS.register("conv", "VAE style encoder: stride-2 convs to 4x4, then linear heads for mu and log-variance")
class ConvEncoder(nn.Module):
    """``forward(image [B, 3, H, W]) -> (mu, logvar)``, each ``[B, z_dim]``.

    The image is resized (bilinear) to ``input_size`` and reduced by stride-2 3x3 convs (widths
    ``width * min(2**i, 8)``) to 4x4, each conv spectrally normed without bias and followed by instance norm
    and LReLU(0.2); two linear heads read the flattened 4x4 map. Official: width 64 (SC-GAN CelebA: 48, the
    generator's ngf), input_size 256.
    """

    def __init__(self, z_dim: int = 256, *, width: int = 64, input_size: int = 256, spectral: bool = True,
                 init: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()
        check_range("z_dim", z_dim, ge=1, integer=True)
        check_range("width", width, ge=1, integer=True)
        check_range("input_size", input_size, ge=8, integer=True)
        if input_size < 8 or input_size & (input_size - 1):
            raise ValueError(f"input_size must be a power of two >= 8, got {input_size}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
        check_range("init_gain", init_gain, gt=0)
        self.z_dim, self.input_size = z_dim, input_size
        num_layers = int(math.log2(input_size // 4))
        layers, cin = [], 3
        for i in range(num_layers):
            cout = width * min(2**i, 8)
            layers.append(nn.Sequential(
                spectral_norm(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), spectral),
                nn.InstanceNorm2d(cout, affine=False)))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.act = nn.LeakyReLU(0.2)
        self.fc_mu = nn.Linear(cin * 16, z_dim)
        self.fc_var = nn.Linear(cin * 16, z_dim)
        init_weights(self, init, init_gain)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ShapeError(f"encoder expects an RGB image [B, 3, H, W], got {tuple(image.shape)}")
        x = image
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        for layer in self.layers:
            x = self.act(layer(x))
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)
