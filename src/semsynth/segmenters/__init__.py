"""Segmenters for mIoU / pixel accuracy of generated images, registered by name.

Every segmenter is an ``nn.Module``: ``forward(images [B, 3, H, W] in [-1, 1]) -> logits [B, K, H, W]`` at the
input resolution, with ``label_space`` naming its output ids (see :func:`target_for_segmenter`).

* ``drn-d-105`` (Cityscapes trainIds), ``deeplabv2`` (COCO-Stuff 182), ``upernet-101`` (ADE20K 150, needs
  ``mit-semseg``): the literature's evaluators, loading public checkpoints from a path or the torch hub cache;
* ``unet``, ``deeplabv3``: trained here on any dataset (``semsynth segmenter train``).

>>> seg = build_segmenter({"name": "unet", "width": 8}, num_classes=15)
>>> seg.config["name"], seg.label_space
('unet', 'dataset')

The ``num_classes`` interface is for building a segmenter to train; adapters keep their own class count
when it is not given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import Registry

SEGMENTERS = Registry("segmenter")


def build_segmenter(spec: Mapping[str, Any] | str, **interface: Any) -> nn.Module:
    """Build a registered segmenter. ``interface``: ``num_classes`` (output classes; for training)."""
    return SEGMENTERS.build(spec, **interface)


from . import deeplabv2, drn, tv_deeplabv3, unet, upernet  # noqa: F401  (registration)
from .base import (
    IGNORE,
    LABEL_SPACES,
    NO_IGNORE,
    Segmenter,
    WeightsMismatchError,
    label_space_classes,
    target_for_segmenter,
)
from .io import check_segmenter_dataset, load_segmenter, parse_segmenter_spec, save_segmenter
from .scoring import ConfusionScore, evaluate_segmenter, make_score


def train_segmenter(*args: Any, **kwargs: Any):
    """See :func:`semsynth.segmenters.train.train_segmenter` (imported lazily)."""
    from .train import train_segmenter as _train

    return _train(*args, **kwargs)


__all__ = [
    "IGNORE", "LABEL_SPACES", "NO_IGNORE", "SEGMENTERS", "ConfusionScore", "Segmenter", "WeightsMismatchError",
    "build_segmenter", "check_segmenter_dataset", "evaluate_segmenter", "label_space_classes", "load_segmenter",
    "make_score", "parse_segmenter_spec", "save_segmenter", "target_for_segmenter", "train_segmenter",
]
