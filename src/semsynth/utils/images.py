"""Image tensors <-> files, and sample grids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import atomic_write


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` (or ``[B, 3, H, W]``) in ``[-1, 1]`` -> uint8 ``[H, W, 3]`` (``[B, H, W, 3]``), rounded."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[3, H, W]`` in ``[-1, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 127.5 - 1


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 array atomically (temp file + rename) as PNG."""
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def image_grid(columns: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """Columns of images ``[B, 3, H, W]`` in ``[-1, 1]`` (all the same B, H, W) -> one uint8 grid with one
    row per sample and one column per entry (e.g. layout | real | fake | coarse RGB)."""
    b, _, h, w = columns[0].shape
    ncol = len(columns)
    grid = np.full((b * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for j, col in enumerate(columns):
        imgs = to_uint8(col)
        for i in range(b):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = imgs[i]
    return grid
