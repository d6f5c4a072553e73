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


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` keeps batch-norm running statistics (which an EMA of the weights does not average)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in module.modules())


@torch.no_grad()
def refresh_batchnorm(ema: nn.Module, semantic_batches, device: torch.device, seed: int) -> int:
    """Re-estimate the batch-norm running statistics of ``ema`` for its own weights (OASIS: before the EMA is used
    for samples, checkpoints or FID). :func:`update_ema` copies G's statistics, which belong to G's weights, not to
    their average.

    Runs ``ema`` in training mode on each semantic map of ``semantic_batches`` (the running statistics move with the
    norms' momentum, as the official code does; spectral norm advances its power iteration on the averaged weights
    too), with fresh noise from a private RNG seeded with ``seed``: the training run's random stream is not touched.
    Returns the number of batches run (0 when ``ema`` has no batch norm)."""
    if not has_batchnorm(ema):
        return 0
    was_training = ema.training
    ema.train()
    n = 0
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for semantic in semantic_batches:
                ema(semantic.to(device))
                n += 1
    finally:
        ema.train(was_training)
    return n
