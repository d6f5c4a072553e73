"""Segments of a label map: the connected regions of each class, SIMS's unit of storage and retrieval.

A label map ``[H, W]`` of class ids becomes a *component map* (0: no segment; k: the k-th segment) plus each
segment's class and area. Connectivity is 8-neighbour (MATLAB's ``bwlabel``, which the official SIMS code uses);
regions smaller than ``min_area`` pixels are not segments (the official code: 1000 pixels at 256x512). The
grids below summarise a map at a lower resolution for retrieval: a segment's *coverage* (the fraction of each
cell it covers: its mask at the grid's resolution, small segments never vanish) and the map's *mode grid* (the
most frequent class of each cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
MAX_SEGMENTS = 255  # per image: component ids are stored as uint8


@dataclass
class Segments:
    """``components`` ``[H, W]`` int32 (0: none, k >= 1: segment k), ``classes`` ``[K]`` and ``areas`` ``[K]``
    (pixels) of segments 1..K, ordered by class, then by decreasing area."""

    components: np.ndarray
    classes: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def find_segments(label: np.ndarray, min_area: int = 1, skip: tuple[int, ...] = (),
                  max_segments: int = MAX_SEGMENTS) -> Segments:
    """The segments of ``label`` (class ids ``[H, W]``): connected regions of each class (``skip``: classes that
    are never segments, e.g. the don't-care class) of at least ``min_area`` pixels; the ``max_segments``
    largest when there are more."""
    label = np.asarray(label)
    found = []  # (area, class, per-class component map, component id)
    maps = {}
    for c in np.unique(label):
        if int(c) in skip:
            continue
        cc, n = ndimage.label(label == c, structure=EIGHT_NEIGHBOURS)
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        maps[int(c)] = cc
        found += [(int(sizes[j]), int(c), j) for j in range(1, n + 1) if sizes[j] >= min_area]
    found = sorted(found, key=lambda f: (-f[0], f[1], f[2]))[:max_segments]
    found.sort(key=lambda f: (f[1], -f[0], f[2]))
    components = np.zeros(label.shape, dtype=np.int32)
    for c in sorted({f[1] for f in found}):
        cc = maps[c]
        lut = np.zeros(cc.max() + 1, dtype=np.int32)
        for k, (_, fc, j) in enumerate(found, start=1):
            if fc == c:
                lut[j] = k
        components += lut[cc]
    classes = np.array([f[1] for f in found], dtype=np.int64)
    areas = np.array([f[0] for f in found], dtype=np.int64)
    return Segments(components, classes, areas)


def grid_size(resolution: tuple[int, int], short_side: int) -> tuple[int, int]:
    """A grid with ``short_side`` cells on the image's short side and the image's aspect ratio."""
    h, w = resolution
    if h <= w:
        return short_side, max(1, round(short_side * w / h))
    return max(1, round(short_side * h / w)), short_side


def _cells(shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The grid cell of every pixel ``[H, W]`` (cells of equal size when the sizes divide)."""
    H, W = shape
    h, w = size
    ys = np.arange(H) * h // H
    xs = np.arange(W) * w // W
    return ys[:, None] * w + xs[None, :]


def coverage(components: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """``[count, h, w]`` float32: the fraction of each grid cell that segment k + 1 covers."""
    h, w = size
    cells = _cells(components.shape, size)
    counts = np.bincount((components.astype(np.int64) * (h * w) + cells).ravel(), minlength=(count + 1) * h * w)
    per_cell = np.bincount(cells.ravel(), minlength=h * w)
    return (counts.reshape(count + 1, h * w)[1:] / per_cell).astype(np.float32).reshape(count, h, w)


def mode_grid(label: np.ndarray, num_classes: int, size: tuple[int, int]) -> np.ndarray:
    """``[h, w]`` int64: the most frequent class of each grid cell (ties: the smaller id)."""
    h, w = size
    cells = _cells(label.shape, size)
    counts = np.bincount((cells * num_classes + label.astype(np.int64)).ravel(), minlength=h * w * num_classes)
    return counts.reshape(h * w, num_classes).argmax(1).reshape(h, w)
