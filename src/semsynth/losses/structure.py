"""Edge-structure distance between images: an offline content loss and content-preservation metric.

For unpaired translation the output must keep the source's layout while its colours and textures change. Where the
paper uses a VGG19 perceptual loss to the source (needs ImageNet weights), this compares where the edges are:

    Y = 0.299 R + 0.587 G + 0.114 B                       (luminance of [-1, 1] images)
    Y_s = Y average-pooled 2^s times, s = 1 .. scales     (half resolution and coarser: layout, not texture)
    E_s = |Sobel(Y_s)| / (mean over the image of |Sobel(Y_s)| + 0.01)
    d(a, b) = mean over s of mean |E_s(a) - E_s(b)|

The gradient magnitude ignores the sign of a contrast (snow brighter than the sky, grass darker: the same edge)
and the per-image normalisation ignores its strength (dusk is darker overall), so a change of colours alone costs
little and a moved or missing boundary costs a lot. ``d(a, a) = 0``; it is symmetric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, 1, H, W]``."""
    w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def sobel_magnitude(y: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``[B, 1, H, W]`` of a one-channel map (3x3 Sobel, replicated border)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=y.dtype, device=y.device) / 8
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # [2, 1, 3, 3]
    g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)
    return torch.sqrt(g.pow(2).sum(1, keepdim=True) + 1e-8)


def edge_maps(images: torch.Tensor, scales: int = 3) -> list[torch.Tensor]:
    """The normalised edge maps ``E_s`` of the module docstring, s = 1 .. ``scales``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"edge maps need RGB images [B, 3, H, W], got {tuple(images.shape)}")
    y = luminance(images.float())
    out = []
    for _ in range(scales):
        if min(y.shape[2:]) < 2:
            break
        y = F.avg_pool2d(y, 2)
        m = sobel_magnitude(y)
        out.append(m / (m.mean((2, 3), keepdim=True) + 0.01))
    return out


def edge_distance(a: torch.Tensor, b: torch.Tensor, scales: int = 3, reduce: bool = True) -> torch.Tensor:
    """``d(a, b)`` of the module docstring: a scalar (``reduce``) or one value per image ``[B]``."""
    if a.shape != b.shape:
        raise ValueError(f"edge distance of images of different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")
    per = [(ea - eb).abs().mean((1, 2, 3)) for ea, eb in zip(edge_maps(a, scales), edge_maps(b, scales))]
    if not per:
        raise ValueError(f"images of {a.shape[2]}x{a.shape[3]} are too small for edge maps (at least 4x4)")
    d = torch.stack(per).mean(0)
    return d.mean() if reduce else d
