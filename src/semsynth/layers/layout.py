"""The memory layout of feature maps.

A prepared SC-GAN on the CPU keeps its maps channels-last (``[B, C, H, W]`` stored as ``[B, H, W, C]``:
:func:`semsynth.inference_prep.prepare_for_inference`), so that oneDNN's convolutions read and write them as they
are; the layers that compute per pixel across channels (routing, SCN, SPADE) then keep that layout too.
"""

from __future__ import annotations

import torch
from torch import nn


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` [B, C, H, W] is stored channels-last (and not also contiguous, as one channel or one pixel is)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def to_channels_last(module: nn.Module, skip: tuple[type[nn.Module], ...] = ()) -> nn.Module:
    """NHWC storage for every 4-D parameter of ``module`` (in place; ``Module.to(memory_format=...)`` rejects the
    5-D SCC stacks, which :meth:`~semsynth.layers.scc.SpatiallyConditionalConv2d.channels_last_` stores so that
    their stacked view is channels-last), except inside modules of the ``skip`` types."""
    from .scc import SpatiallyConditionalConv2d

    kept = {id(m) for s in module.modules() if isinstance(s, skip) for m in s.modules()}
    for m in module.modules():
        if id(m) in kept:
            continue
        if isinstance(m, SpatiallyConditionalConv2d):
            m.channels_last_()
        for p in m.parameters(recurse=False):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return module


def pixel_rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last map ``[B, C, H, W]`` as its ``[B*H*W, C]`` pixel rows: a view when the map is stored densely
    (writes to it reach the map), else a copy."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
