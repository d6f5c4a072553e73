"""Retrieval: for each segment of a new layout, the bank segment of its class that fits it best.

SIMS (Sec. 3.2) scores a candidate by the overlap of the two shapes and the agreement of their surroundings;
the official search code compares masks in the image frame (no re-centring: a segment is sought where it is).
semsynth computes, for query segment q and candidate s of the same class, on the bank's grids:

    score(q, s) = IoU(mask_q, mask_s) + context_weight * agreement(q, s)

* ``IoU``: of the two masks at mask resolution, as cell coverages (soft: sum(a*b) / sum(a + b - a*b));
* ``agreement``: the fraction of the cells *around* q (its context ring: cells within one context cell of q,
  outside q) where the candidate's own photo has the same class as the query layout, at context resolution.

A bank photo whose layout is the query's own layout (its mode grid at mask resolution agrees in at least
``self_match`` of the cells, also mirrored) is never a candidate: a layout of the training set is served from
*other* photos, as SIMS trains its synthesis network (the official code skips the image itself). In training,
each query also sees only a random subset of about ``pool`` photos (the official code: the best of 100 random
photos), so that canvases vary from epoch to epoch. Everything is batched: one matrix product per class for the
IoUs, one comparison tensor per class for the context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .bank import MemoryBank
from .segments import coverage, find_segments, mode_grid

CHUNK = 1 << 26  # elements of the largest temporary comparison tensor


@dataclass
class Query:
    """The segments of a batch of layouts: ``image`` (which layout), ``cls``, ``masks`` ``[Q, h*w]`` coverages,
    ``rings`` ``[Q, hc*wc]`` context rings; per layout ``components`` ``[B, H, W]`` (-1: none, else the row in
    this query), ``layouts`` ``[B, h*w]`` and ``contexts`` ``[B, hc*wc]`` mode grids."""

    image: torch.Tensor
    cls: torch.Tensor
    area: torch.Tensor
    masks: torch.Tensor
    rings: torch.Tensor
    components: torch.Tensor
    layouts: torch.Tensor
    contexts: torch.Tensor

    def __len__(self) -> int:
        return int(self.cls.shape[0])


def query_segments(labels: torch.Tensor, bank: MemoryBank, min_area: float | None = None) -> Query:
    """Segment a batch of layouts ``[B, H, W]`` (class ids) as the bank was built (same grids, same
    ``min_area`` unless given), on the CPU (connected components), the result on ``labels``' device."""
    _, h, w = labels.shape
    area = bank.meta["min_area"] if min_area is None else min_area
    min_pixels = max(1, round(area * h * w))
    dontcare = bank.meta["dataset"].get("dontcare_index")
    skip = (dontcare,) if dontcare is not None else ()
    c = bank.num_classes
    msize, csize = bank.mask_size, bank.context_size
    images, classes, areas, masks, rings, comps, layouts, contexts = [], [], [], [], [], [], [], []
    offset = 0
    for i, label in enumerate(labels.cpu().numpy()):
        segs = find_segments(label, min_pixels, skip)
        k = len(segs)
        images.append(np.full(k, i))
        classes.append(segs.classes)
        areas.append(segs.areas / (h * w))
        masks.append(coverage(segs.components, k, msize).reshape(k, msize[0] * msize[1]))
        inside = coverage(segs.components, k, csize) > 0
        grown = F.max_pool2d(torch.from_numpy(inside).float()[None], 3, 1, 1)[0].numpy() > 0 if k else inside
        rings.append((grown & ~inside).reshape(k, csize[0] * csize[1]))
        comps.append(np.where(segs.components > 0, segs.components - 1 + offset, -1))
        layouts.append(mode_grid(label, c, msize).reshape(-1))
        contexts.append(mode_grid(label, c, csize).reshape(-1))
        offset += k
    dev = labels.device
    return Query(image=torch.from_numpy(np.concatenate(images)).long().to(dev),
                 cls=torch.from_numpy(np.concatenate(classes)).long().to(dev),
                 area=torch.from_numpy(np.concatenate(areas)).float().to(dev),
                 masks=torch.from_numpy(np.concatenate(masks)).to(dev),
                 rings=torch.from_numpy(np.concatenate(rings)).to(dev),
                 components=torch.from_numpy(np.stack(comps)).long().to(dev),
                 layouts=torch.from_numpy(np.stack(layouts)).to(dev),
                 contexts=torch.from_numpy(np.stack(contexts)).to(dev))


def _agreement(mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: the share of equal cells between the rows of ``mine`` ``[B, P]`` and of ``theirs`` ``[N, P]``
    (in chunks), the better of ``mine`` and its mirror image (rows are ``h x w`` grids flattened)."""
    out = torch.zeros(mine.shape[0], theirs.shape[0], device=mine.device)
    step = max(1, CHUNK // max(1, mine.numel()))
    for a in range(0, theirs.shape[0], step):
        t = theirs[None, a : a + step]
        out[:, a : a + step] = torch.count_nonzero(mine[:, None] == t, dim=-1) / mine.shape[1]
    return out


def own_photos(query: Query, bank: MemoryBank, self_match: float) -> torch.Tensor:
    """``[B, N]`` bool: the bank photos whose layout is the query layout's own (or its mirror image's): mask-grid
    agreement of at least ``self_match``. The context grids (16 times coarser) pick the few candidates first
    (agreement at least ``self_match - 0.1`` there)."""
    grids = []
    for rows, (h, w), theirs in ((query.contexts, bank.context_size, bank.contexts),
                                 (query.layouts, bank.mask_size, bank.layouts)):
        grid = rows.view(-1, h, w).to(theirs.dtype)
        grids.append((grid.reshape(grid.shape[0], -1), grid.flip(-1).reshape(grid.shape[0], -1),
                      theirs.view(bank.num_images, -1)))
    (coarse, coarse_flip, coarse_theirs), (fine, fine_flip, fine_theirs) = grids
    near = torch.maximum(_agreement(coarse, coarse_theirs), _agreement(coarse_flip, coarse_theirs))
    near = near >= self_match - 0.1
    out = torch.zeros_like(near)
    b, n = near.nonzero(as_tuple=True)
    if b.numel():
        same = torch.count_nonzero(fine[b] == fine_theirs[n], dim=-1)
        mirror = torch.count_nonzero(fine_flip[b] == fine_theirs[n], dim=-1)
        out[b, n] = torch.maximum(same, mirror) >= self_match * fine.shape[1]
    return out


def scores(query: Query, rows: torch.Tensor, bank: MemoryBank, candidates: torch.Tensor,
           context_weight: float) -> torch.Tensor:
    """``[len(rows), n]``: the score of the query segments ``rows`` against the bank segments ``candidates``
    (rows of the bank, all of one class)."""
    q = query.masks[rows].float()  # [Qc, P]
    m, m_area = bank.mask_rows()  # [S, P] coverages, [S] their sums
    inter = q @ m[candidates].T
    union = q.sum(1, keepdim=True) + m_area[candidates][None] - inter
    score = inter / union.clamp_min(1e-6)
    if context_weight > 0:
        ring = query.rings[rows]  # [Qc, Pc]
        mine = query.contexts[query.image[rows]]  # [Qc, Pc]
        theirs = bank.contexts.view(bank.num_images, -1)[bank.seg_image[candidates].long()].to(mine.dtype)
        size = ring.sum(1).clamp_min(1).float()
        agree = torch.empty_like(score)
        step = max(1, CHUNK // max(1, ring.numel()))
        for a in range(0, theirs.shape[0], step):
            same = (mine[:, None] == theirs[None, a : a + step]) & ring[:, None]
            agree[:, a : a + step] = same.sum(-1).float() / size[:, None]
        score = score + context_weight * agree
    return score


def retrieve(query: Query, bank: MemoryBank, *, context_weight: float = 1.0, self_match: float | None = 0.98,
             pool: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[Q]`` the best bank segment (a row of the bank) for each query segment, -1 when its class has no
    candidate. ``self_match``: skip the query layout's own photos (``None``: keep them); ``pool``: each layout
    draws from a random subset of about ``pool`` photos (training; only those are scored)."""
    best = torch.full((len(query),), -1, dtype=torch.long, device=query.cls.device)
    if len(query) == 0:
        return best
    allowed = ~own_photos(query, bank, self_match) if self_match is not None else None  # [B, N]
    if pool is not None and pool < bank.num_images:
        dev = generator.device if generator is not None else "cpu"
        drawn = torch.rand(query.layouts.shape[0], bank.num_images, generator=generator, device=dev)
        drawn = drawn.to(best.device) < pool / bank.num_images
        allowed = drawn if allowed is None else allowed & drawn
    usable = allowed.any(0) if allowed is not None else None  # photos some layout may use
    offsets = bank.class_offsets.tolist()
    for c in query.cls.unique().tolist():
        candidates = torch.arange(offsets[c], offsets[c + 1], device=best.device)
        if usable is not None:
            candidates = candidates[usable[bank.seg_image[candidates].long()]]
        if candidates.numel() == 0:
            continue
        rows = (query.cls == c).nonzero().flatten()
        score = scores(query, rows, bank, candidates, context_weight)
        if allowed is not None:
            ok = allowed[query.image[rows]][:, bank.seg_image[candidates].long()]
            score = score.masked_fill(~ok, float("-inf"))
        value, index = score.max(1)
        best[rows] = torch.where(torch.isfinite(value), candidates[index], torch.full_like(index, -1))
    return best
