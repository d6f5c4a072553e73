"""Adversarial losses over a list of prediction maps (one per discriminator scale/head).

Each term is averaged over the maps, as the SPADE-family code does. ``hinge`` is SC-GAN's (paper Eqs. 8-9):

    L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(s)))],     L_G = -E[D(G(s))]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ADVERSARIAL_LOSSES = ("hinge", "ns", "ls")


def _mean_over_maps(maps: list[torch.Tensor], fn) -> torch.Tensor:
    return torch.stack([fn(m.float()).mean() for m in maps]).mean()


def d_adversarial_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor],
                       mode: str = "hinge") -> tuple[torch.Tensor, torch.Tensor]:
    """(real term, fake term) of the discriminator loss."""
    if mode == "hinge":
        return (_mean_over_maps(real_logits, lambda x: F.relu(1 - x)),
                _mean_over_maps(fake_logits, lambda x: F.relu(1 + x)))
    if mode == "ns":  # non-saturating (BCE with logits)
        return (_mean_over_maps(real_logits, lambda x: F.softplus(-x)),
                _mean_over_maps(fake_logits, lambda x: F.softplus(x)))
    if mode == "ls":  # least squares (pix2pixHD default)
        return (_mean_over_maps(real_logits, lambda x: (x - 1) ** 2),
                _mean_over_maps(fake_logits, lambda x: x**2))
    raise ValueError(f"unknown adversarial loss {mode!r}; valid choices are: {', '.join(ADVERSARIAL_LOSSES)}")


def g_adversarial_loss(fake_logits: list[torch.Tensor], mode: str = "hinge") -> torch.Tensor:
    """Generator side of the adversarial loss."""
    if mode == "hinge":
        return _mean_over_maps(fake_logits, lambda x: -x)
    if mode == "ns":
        return _mean_over_maps(fake_logits, lambda x: F.softplus(-x))
    if mode == "ls":
        return _mean_over_maps(fake_logits, lambda x: (x - 1) ** 2)
    raise ValueError(f"unknown adversarial loss {mode!r}; valid choices are: {', '.join(ADVERSARIAL_LOSSES)}")
