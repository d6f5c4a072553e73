"""KL divergence of the VAE posterior N(mu, exp(logvar)) from N(0, I)."""

from __future__ import annotations

import torch


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``-1/2 sum(1 + logvar - mu^2 - exp(logvar))``. ``sum`` over batch and dimensions is the official
    SPADE/SC-GAN reduction (weighted by 0.05); ``mean`` divides by the batch size."""
    kld = -0.5 * torch.sum(1 + logvar.float() - mu.float().pow(2) - logvar.float().exp())
    if reduction == "sum":
        return kld
    if reduction == "mean":
        return kld / mu.shape[0]
    raise ValueError(f"unknown reduction {reduction!r}; valid choices are: sum, mean")
