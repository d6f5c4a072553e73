"""Datasets, registered by name. Each exposes its facts as ``dataset.info`` (:class:`DatasetInfo`).

A sample is a dict: ``image`` (``[3, H, W]`` float in ``[-1, 1]``; absent for label-only data), ``label``
(``[H, W]`` int64 class ids), optionally ``instance`` (``[H, W]`` int64), and ``name`` (file stem or index).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Registry
from .base import DatasetInfo, colorize, default_palette

DATASETS = Registry("dataset")


def build_dataset(spec: Mapping[str, Any] | str, **interface: Any):
    """Build a registered dataset from ``{"name": ..., **options}``."""
    return DATASETS.build(spec, **interface)


from . import ade20k, celebamask_hq, cityscapes, coco_stuff, custom, synthetic_faces  # noqa: E402,F401
from . import synthetic_landscapes  # noqa: E402,F401
from . import unpaired  # noqa: E402,F401

__all__ = ["DATASETS", "DatasetInfo", "build_dataset", "colorize", "default_palette"]
