"""The canvas: the retrieved segments composed into one picture, the synthesis network's photographic input.

Composition (SIMS Sec. 3.3, without the learnt spatial transformer: retrieval already matches shapes in the
image frame, and the official code finds the transformer of no use on Cityscapes):

1. Every retrieved segment is placed where it was in its own photo, with its own mask (at the layout's size).
2. Where segments overlap, the one whose class is further in front in the bank's depth order wins (a smaller
   segment wins within a class): the *owner* of each pixel.
3. A pixel keeps its owner's colour only where the layout has the owner's class there: the canvas never
   contradicts the layout; elsewhere it is a hole.

The canvas is ``[B, 4, H, W]``: RGB in [-1, 1] (0 in holes) and the coverage mask (1: a photo pixel).

Training canvases (the official recipe, ``train_generate_synthesis.m``): the shapes come from segments
retrieved from *other* photos (``retrieval.py``), the colours from the training photo itself, so that the
network learns to complete and repair a canvas whose pieces do not fit exactly; with probability
``colour_transfer`` a segment's colours are moved to the retrieved segment's mean and spread (per channel; the
official code uses an MKL colour transfer), and ``elision`` of the pixels in a band along the owners' boundaries
(``elision_width`` of the short side wide, the official 5%) become holes (the official code paints them white).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bank import MemoryBank
from .retrieval import Query, query_segments, retrieve


def owners(query: Query, retrieved: torch.Tensor, bank: MemoryBank, size: tuple[int, int]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place the retrieved segments and resolve overlaps by depth.

    Returns ``owner`` ``[B, H, W]`` (the query row whose retrieved segment shows at each pixel, -1: none), and
    for the query rows with a retrieved segment, ``rows`` ``[n]`` and their masks ``[n, H, W]`` (bool)."""
    b = query.layouts.shape[0]
    h, w = size
    dev = query.cls.device
    owner = torch.full((b, h, w), -1, dtype=torch.long, device=dev)
    rows = (retrieved >= 0).nonzero().flatten()
    if rows.numel() == 0:
        return owner, rows, torch.zeros(0, h, w, dtype=torch.bool, device=dev)
    seg = retrieved[rows]
    photo = bank.seg_image[seg].long()
    masks = bank.components[photo] == bank.seg_index[seg].to(torch.uint8)[:, None, None]
    if tuple(masks.shape[-2:]) != (h, w):
        masks = F.interpolate(masks[:, None].float(), size=(h, w), mode="nearest")[:, 0] > 0.5
    depth = bank.depth_rank(dev)[query.cls[rows]] + 0.5 * (1 - bank.seg_area[seg].clamp(0, 1))
    for i in range(b):
        mine = (query.image[rows] == i).nonzero().flatten()
        if mine.numel() == 0:
            continue
        key = torch.where(masks[mine], depth[mine][:, None, None], torch.full_like(depth[:1, None, None], -1))
        value, front = key.max(0)
        owner[i] = torch.where(value >= 0, rows[mine][front], torch.full_like(front, -1))
    return owner, rows, masks


def bank_pixels(bank: MemoryBank, retrieved: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1]: each pixel's colour in its owner's retrieved photo (0 where no owner)."""
    b, h, w = owner.shape
    out = torch.zeros(b, 3, h, w, device=owner.device)
    for i in range(b):
        where = owner[i] >= 0
        if not where.any():
            continue
        photos = bank.seg_image[retrieved[owner[i][where]]].long()
        images = bank.images
        if tuple(images.shape[-2:]) != (h, w):
            used = photos.unique()
            small = F.interpolate(images[used].float(), size=(h, w), mode="bilinear", align_corners=False)
            lookup = torch.full((bank.num_images,), -1, dtype=torch.long, device=owner.device)
            lookup[used] = torch.arange(used.numel(), device=owner.device)
            images, photos = small.round().clamp(0, 255), lookup[photos]
        ys, xs = where.nonzero(as_tuple=True)
        out[i, :, ys, xs] = images[photos, :, ys, xs].float().T / 127.5 - 1
    return out


def transfer_colours(real: torch.Tensor, owner: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor
                     ) -> torch.Tensor:
    """``real`` with the pixels of each chosen owner region moved to that region's target mean and standard
    deviation per channel (``targets`` ``[Q, 6]``, ``chosen`` ``[Q]`` bool, indexed by query row)."""
    b, _, h, w = real.shape
    flat_owner = owner.view(-1)
    pixels = real.permute(0, 2, 3, 1).reshape(-1, 3).float()
    take = flat_owner >= 0
    if not bool(take.any()):
        return real
    idx = flat_owner[take]
    q = targets.shape[0]
    count = torch.bincount(idx, minlength=q).clamp_min(1).float()[:, None]
    mean = torch.zeros(q, 3, device=real.device).index_add_(0, idx, pixels[take]) / count
    sq = torch.zeros(q, 3, device=real.device).index_add_(0, idx, pixels[take] ** 2) / count
    std = (sq - mean**2).clamp_min(0).sqrt()
    moved = (pixels[take] - mean[idx]) / std[idx].clamp_min(1e-3) * targets[idx, 3:] + targets[idx, :3]
    pixels[take] = torch.where(chosen[idx][:, None], moved.clamp(-1, 1), pixels[take])
    return pixels.view(b, h, w, 3).permute(0, 3, 1, 2)


def boundary_band(owner: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, H, W]`` bool: pixels within ``width`` pixels of a change of owner."""
    o = owner[:, None].float()
    padded = F.pad(o, (1, 1, 1, 1), mode="replicate")
    edge = ((padded[..., 1:-1, :-2] != o) | (padded[..., 1:-1, 2:] != o) | (padded[..., :-2, 1:-1] != o)
            | (padded[..., 2:, 1:-1] != o)).float()
    return F.max_pool2d(edge, 2 * width + 1, 1, width)[:, 0] > 0


def compose(query: Query, retrieved: torch.Tensor, bank: MemoryBank, labels: torch.Tensor, *,
            real: torch.Tensor | None = None, colour_transfer: float = 0.0, elision: float = 0.0,
            elision_width: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """The canvas ``[B, 4, H, W]`` of the layouts ``labels`` ``[B, H, W]`` from their retrieved segments: bank
    colours, or with ``real`` (training) the training photos' own colours (see the module docstring)."""
    b, h, w = labels.shape
    owner, _, _ = owners(query, retrieved, bank, (h, w))
    if len(query):  # a pixel keeps its owner only where the layout has the owner's class: never against it
        owner_class = query.cls[owner.clamp_min(0)]
        owner = torch.where((owner >= 0) & (owner_class == labels), owner, torch.full_like(owner, -1))

    def rand(*shape: int) -> torch.Tensor:
        dev = generator.device if generator is not None else "cpu"
        return torch.rand(*shape, generator=generator, device=dev).to(labels.device)

    if real is None:
        rgb = bank_pixels(bank, retrieved, owner)
    else:
        rgb = real.float()
        if colour_transfer > 0 and len(query):
            targets = bank.seg_colour[retrieved.clamp_min(0)]
            chosen = (rand(len(query)) < colour_transfer) & (retrieved >= 0)
            rgb = transfer_colours(rgb, owner, targets, chosen)
    covered = owner >= 0
    if elision > 0:
        band = boundary_band(owner, max(1, int(elision_width * min(h, w)) // 2))
        covered = covered & ~(band & (rand(b, h, w) < elision))
    mask = covered[:, None].float()
    return torch.cat([rgb * mask, mask], dim=1)


@torch.no_grad()
def compose_canvas(bank: MemoryBank, labels: torch.Tensor, *, real: torch.Tensor | None = None,
                   context_weight: float = 1.0, self_match: float | None = 0.98, pool: int | None = None,
                   colour_transfer: float = 0.0, elision: float = 0.0, elision_width: float = 0.05,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Segment the layouts ``labels`` ``[B, H, W]``, retrieve a bank segment for every segment, compose: the
    canvas ``[B, 4, H, W]`` on ``labels``' device. ``real`` (and ``pool``, ``colour_transfer``, ``elision``):
    a training canvas, see the module docstring."""
    bank = bank.on(labels.device)
    query = query_segments(labels, bank)
    retrieved = retrieve(query, bank, context_weight=context_weight, self_match=self_match, pool=pool,
                         generator=generator)
    return compose(query, retrieved, bank, labels, real=real, colour_transfer=colour_transfer, elision=elision,
                   elision_width=elision_width, generator=generator)
