"""Encoding of label maps: one-hot channels and the instance-edge channel (SPADE convention)."""

from __future__ import annotations

import torch

from ..errors import DataError


def one_hot_label(label: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Class ids ``[N, H, W]`` (or ``[N, 1, H, W]``) -> one-hot ``[N, num_classes, H, W]``.

    ``num_classes`` counts every channel the model sees, the don't-care channel included. Ids outside
    ``[0, num_classes)`` raise a :class:`DataError` naming the values, instead of a device-side assert.
    """
    if label.dim() == 4 and label.shape[1] == 1:
        label = label[:, 0]
    if label.dim() != 3:
        raise DataError(f"label map must be [N, H, W] class ids, got shape {tuple(label.shape)}")
    if label.is_floating_point():
        if not torch.equal(label, label.round()):
            raise DataError("label map holds non-integer values; pass class ids, not an image or a one-hot map")
    label = label.long()
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or hi >= num_classes:
        bad = torch.unique(label[(label < 0) | (label >= num_classes)])[:10].tolist()
        raise DataError(
            f"label map holds class ids {bad} outside 0..{num_classes - 1} (num_classes={num_classes}); "
            f"check the dataset's number of classes and its don't-care value"
        )
    out = torch.zeros(label.shape[0], num_classes, *label.shape[1:], dtype=dtype, device=label.device)
    return out.scatter_(1, label.unsqueeze(1), 1.0)


def instance_edges(instance: torch.Tensor) -> torch.Tensor:
    """Instance ids ``[N, H, W]`` or ``[N, 1, H, W]`` -> ``[N, 1, H, W]`` float map, 1 where a 4-neighbour
    has a different id (both pixels of every differing pair are marked)."""
    if instance.dim() == 3:
        instance = instance.unsqueeze(1)
    t = instance
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


def semantic_input(label: torch.Tensor, num_classes: int, instance: torch.Tensor | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The generator's input: one-hot label channels, then the instance-edge channel when given."""
    sem = one_hot_label(label, num_classes, dtype)
    if instance is not None:
        sem = torch.cat([sem, instance_edges(instance).to(dtype)], dim=1)
    return sem
