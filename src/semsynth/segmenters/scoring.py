"""mIoU and pixel accuracy of a segmenter on (image, layout) pairs: real images (the upper bound) or generated ones.

The confusion-matrix score here is a small private fallback; when ``semsynth.metrics.segmentation`` provides
``SegmentationScore(num_classes, ignore_index)`` (``update(pred, target)``, ``miou()``, ``pixel_accuracy()``),
:func:`make_score` uses it instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ..data.base import DatasetInfo
from .base import Segmenter, label_space_names, target_for_segmenter


class ConfusionScore:
    """Confusion matrix over ``num_classes`` ids; pixels whose target is ``ignore_index`` (or outside
    ``0..num_classes-1``) are not counted. (The same contract as ``metrics.segmentation.SegmentationScore``.)

    ``miou()``: mean IoU over the classes that occur in the target or the prediction (union > 0);
    ``pixel_accuracy()``: correct / counted pixels; ``per_class_iou()``: ``{name: IoU or None}``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None,
                 class_names: list[str] | None = None) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        k = self.num_classes
        ok = (target >= 0) & (target < k)
        if self.ignore_index is not None:
            ok &= target != self.ignore_index
        idx = target[ok] * k + pred[ok].clamp(0, k - 1)
        self.matrix += torch.bincount(idx, minlength=k * k).view(k, k)

    def _iou(self) -> list[float]:
        m = self.matrix.double()
        inter = m.diag()
        union = m.sum(0) + m.sum(1) - inter
        return [float(i / u) if u > 0 else math.nan for i, u in zip(inter, union)]

    def per_class_iou(self) -> dict[str, float | None]:
        return {n: (None if math.isnan(v) else v) for n, v in zip(self.class_names, self._iou())}

    def miou(self) -> float:
        vals = [v for v in self._iou() if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else math.nan

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else math.nan


def make_score(num_classes: int, ignore_index: int | None, class_names: list[str] | None = None):
    """The metrics package's ``SegmentationScore`` when it is importable, else :class:`ConfusionScore`."""
    try:
        from ..metrics.segmentation import SegmentationScore
    except ImportError:
        return ConfusionScore(num_classes, ignore_index, class_names)
    return SegmentationScore(num_classes, ignore_index, class_names=class_names)


@torch.no_grad()
def evaluate_segmenter(segmenter: Segmenter, batches: Iterable[dict[str, Any]], info: DatasetInfo, *,
                       device: str | torch.device = "cpu", limit: int | None = None) -> dict[str, Any]:
    """Segment ``batch["image"]`` (``[B, 3, H, W]`` in [-1, 1]) and score the result against ``batch["label"]``
    (layouts ``[B, H, W]`` in ``info``'s channel ids, same size as the images), in the segmenter's label space.

    ``batches``: e.g. a DataLoader over a dataset (real images: the upper bound), or generated images paired with
    their input layouts. The don't-care class (when it is one of the segmenter's outputs) is never predicted.
    Returns ``{"miou", "pixel_accuracy", "per_class_iou": {name: IoU or None}, "images", "label_space"}``.
    """
    device = torch.device(device)
    was_training = segmenter.training
    segmenter.eval()
    space, k = segmenter.label_space, segmenter.num_classes
    score = None
    n = 0
    try:
        for batch in batches:
            images, labels = batch["image"], batch["label"]
            if limit is not None:
                images, labels = images[: max(0, limit - n)], labels[: max(0, limit - n)]
            if len(images) == 0:
                break
            target, ignore = target_for_segmenter(labels, info, space)
            if score is None:
                score = make_score(k, ignore, label_space_names(info, space, k))
            score.update(segmenter.predict(images.to(device, torch.float32), ignore).cpu(), target)
            n += len(images)
            if limit is not None and n >= limit:
                break
    finally:
        segmenter.train(was_training)
    if score is None:
        return {"miou": math.nan, "pixel_accuracy": math.nan, "per_class_iou": {}, "images": 0, "label_space": space}
    return {"miou": float(score.miou()), "pixel_accuracy": float(score.pixel_accuracy()),
            "per_class_iou": dict(score.per_class_iou()), "images": n, "label_space": space}
