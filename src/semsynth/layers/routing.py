"""From SVG features to routing weights: channel-group pooling into ``n`` bins and the mapping ``g``.

The SC-GAN "semantic vector" at a pixel is a parameter-free mean over groups of the SVG stage's channels
(official code: an adaptive average pool along the channel axis; bin ``i`` covers channels
``[floor(i*C/n), ceil((i+1)*C/n))``, so bins overlap when ``n`` does not divide ``C``). The routing weights
are then ``g(tau * v)`` with ``g`` one of the paper's Table 6 mappings; tau *multiplies* the logits
(paper Eq. 2 and the official code: 0.05, a very flat softmax).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .layout import is_channels_last

MAPPINGS = ("softmax", "sigmoid", "tanh", "relu", "hardtanh", "none")


def channel_pool(features: torch.Tensor, bins: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, bins, H, W], mean over (possibly overlapping) channel groups."""
    b, c, h, w = features.shape
    if bins > c:
        raise ValueError(f"cannot pool {c} channels into {bins} bins; use at most {c} candidates")
    if torch.jit.is_tracing():
        # export path (ONNX, TorchScript): adaptive pooling to a traced (dynamic) size has no ONNX form; the same
        # bins as explicit channel-slice means (equal to the pooling up to float rounding, tests/test_portable.py)
        return torch.stack([features[:, a:e].mean(1) for a, e in channel_pool_bins(int(c), bins)], 1)
    # the same means as the official adaptive pooling along channels, as one [bins, C] x [C, H*W] product per image
    # (7-15x faster than adaptive_avg_pool3d on the CPU at the SC-GAN sizes; equal within float rounding)
    pool = _pool_matrix(int(c), bins, features.dtype, features.device)
    kind = features.device.type
    autocast = kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind)
    # in the input's dtype, as the pooling runs
    with torch.autocast(kind, enabled=False) if autocast else contextlib.nullcontext():
        if is_channels_last(features):  # a prepared model's maps: the same sums over the pixel-major rows
            rows = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
            return torch.matmul(rows, pool.t()).view(b, h, w, bins).permute(0, 3, 1, 2)
        return torch.matmul(pool, features.reshape(b, c, h * w)).view(b, bins, h, w)


_POOL_CACHE: dict[tuple, torch.Tensor] = {}


def _pool_matrix(channels: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[bins, channels]``: ``1 / len`` over each bin's channel range (:func:`channel_pool_bins`), else 0."""
    key = (channels, bins, dtype, str(device))
    m = _POOL_CACHE.get(key)
    if m is None:
        with torch.inference_mode(False):  # a normal tensor even when first made under inference mode: training
            m = torch.zeros(bins, channels, dtype=torch.float64)  # keeps it for backward later
            for i, (a, e) in enumerate(channel_pool_bins(channels, bins)):
                m[i, a:e] = 1.0 / (e - a)
            m = _POOL_CACHE[key] = m.to(device=device, dtype=dtype)
    return m


def channel_pool_bins(channels: int, bins: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` channel range of each bin (for documentation and tests)."""
    return [((i * channels) // bins, -((-(i + 1) * channels) // bins)) for i in range(bins)]


def apply_mapping(logits: torch.Tensor, mapping: str, temperature: float) -> torch.Tensor:
    """``g(temperature * logits)`` over the candidate axis (dim 1)."""
    x = logits * temperature
    if mapping == "softmax":
        return torch.softmax(x, dim=1)
    if mapping == "sigmoid":
        return torch.sigmoid(x)
    if mapping == "tanh":
        return torch.tanh(x)
    if mapping == "relu":
        return torch.relu(x)
    if mapping == "hardtanh":
        return F.hardtanh(x)
    if mapping == "none":
        return x
    raise ValueError(f"unknown mapping {mapping!r}; valid choices are: {', '.join(MAPPINGS)}")
