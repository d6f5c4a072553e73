"""Exponential moving average of the generator's weights (EDM/StyleGAN style, by half-life in images)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    return ema


def ema_beta(batch_images: int, halflife_images: int, cur_nimg: int, rampup: float | None) -> float:
    """Per-step decay so that a weight's share halves every ``halflife_images`` (shorter early with rampup)."""
    halflife = float(halflife_images)
    if rampup is not None:
        halflife = min(halflife, max(cur_nimg, 1) * rampup)
    return 0.5 ** (batch_images / max(halflife, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, G: nn.Module, beta: float) -> None:
    """Parameters: ``ema = beta * ema + (1 - beta) * G``; buffers (batch-norm statistics, spectral-norm
    vectors) are copied, since averaging them has no meaning."""
    for pe, p in zip(ema.parameters(), G.parameters()):
        pe.lerp_(p.detach(), 1.0 - beta)
    for be, b in zip(ema.buffers(), G.buffers()):
        be.copy_(b)
