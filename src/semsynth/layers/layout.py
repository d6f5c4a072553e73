"""The memory layout of feature maps.

A prepared SC-GAN on the CPU keeps its maps channels-last (``[B, C, H, W]`` stored as ``[B, H, W, C]``:
:func:`semsynth.inference_prep.prepare_for_inference`), so that oneDNN's convolutions read and write them as they
are; the layers that compute per pixel across channels (routing, SCN, SPADE) then keep that layout too.
"""

from __future__ import annotations

import torch


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` [B, C, H, W] is stored channels-last (and not also contiguous, as one channel or one pixel is)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
