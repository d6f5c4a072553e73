"""Segmentation-based scores: a segmenter's prediction on the generated image against the input layout.

:class:`SegmentationScore` accumulates a confusion matrix (rows = layout/target class, columns = predicted
class) over any number of batches and reports mIoU, pixel accuracy and mean class accuracy. Target pixels
equal to ``ignore_index`` or outside ``[0, num_classes)`` are not counted (don't-care, Cityscapes' 255, ...).
The segmenter itself lives elsewhere; this module only scores its class-id output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ShapeError

IGNORE_LABEL = 255


def map_labels(label: torch.Tensor, mapping: Sequence[int] | None,
               ignore_value: int = IGNORE_LABEL) -> torch.Tensor:
    """Class ids through a lookup table, e.g. Cityscapes labelId -> trainId (``DatasetInfo.eval_label_map``).

    ``out = mapping[label]``; ids outside ``[0, len(mapping))`` become ``ignore_value``. ``mapping=None``
    returns the ids unchanged. Output: int64, same shape and device.
    """
    label = label.long()
    if mapping is None:
        return label
    lut = torch.as_tensor(list(mapping), dtype=torch.long, device=label.device)
    inside = (label >= 0) & (label < lut.numel())
    return torch.where(inside, lut[label.clamp(0, lut.numel() - 1)], torch.full_like(label, ignore_value))


def resize_labels(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of class ids ``[..., H, W]`` to ``size`` (PIL NEAREST's pixel centres,
    ``nearest-exact``), so no new class id appears. int64 out."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label.long()
    lead = label.shape[:-2]
    x = label.reshape(-1, 1, *label.shape[-2:]).double()  # exact for any id below 2^53
    x = F.interpolate(x, size=tuple(size), mode="nearest-exact")
    return x.reshape(*lead, *size).long()


class SegmentationScore:
    """Confusion-matrix accumulator for mIoU / pixel accuracy / mean class accuracy.

    Args:
        num_classes: ``K``, the classes scored (ids ``0..K-1``).
        ignore_index: target id that is not counted (the don't-care label, 255 for Cityscapes trainIds).
            Target ids outside ``[0, K)`` are never counted either.
        class_names: ``K`` names for the per-class table (default ``"0".."K-1"``).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        default_names = [str(i) for i in range(num_classes)]
        self.class_names = list(class_names) if class_names is not None else default_names
        self.reset()

    @classmethod
    def for_dataset(cls, info: Any) -> SegmentationScore:
        """The score a dataset's layouts are evaluated with (``info``: a ``DatasetInfo``).

        With ``info.eval_label_map`` (Cityscapes): the evaluation classes it maps to, 255 ignored; targets
        must go through ``map_labels(label, info.eval_label_map)``. Otherwise: the channels, with
        ``info.dontcare_index`` ignored.
        """
        if info.eval_label_map is not None:
            n = max(v for v in info.eval_label_map if v != IGNORE_LABEL) + 1
            names = info.eval_class_names
            if not names or len(names) != n:
                names = None
            return cls(n, ignore_index=IGNORE_LABEL, class_names=names)
        return cls(info.num_classes, ignore_index=info.dontcare_index, class_names=info.class_names)

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` class ids of the same shape (e.g. ``[B, H, W]``), any device.

        Raises ShapeError on different shapes and ValueError when a counted pixel's prediction is outside
        ``[0, K)`` (a segmenter with a different class list).
        """
        if pred.shape != target.shape:
            raise ShapeError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in "
                             f"shape; resize the layout to the image size first (resize_labels)")
        k = self.num_classes
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long().to(pred.device)
        keep = (target >= 0) & (target < k)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if pred.numel() and (pred.min() < 0 or pred.max() >= k):
            raise ValueError(f"predicted class ids must be in [0, {k}); got "
                             f"{int(pred.min())}..{int(pred.max())}")
        counts = torch.bincount(target * k + pred, minlength=k * k)
        self.confusion += counts.reshape(k, k).cpu().numpy().astype(np.int64)

    def merge(self, other: SegmentationScore) -> None:
        """Add another accumulator's counts (e.g. from another process)."""
        if other.confusion.shape != self.confusion.shape:
            raise ValueError("cannot merge scores with different numbers of classes")
        self.confusion += other.confusion

    # ---- scores ------------------------------------------------------------------------------------------
    def _iou(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def _class_accuracy(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(np.float64)
        support = self.confusion.sum(1)
        return np.where(support > 0, tp / np.maximum(support, 1), np.nan)

    @property
    def num_pixels(self) -> int:
        return int(self.confusion.sum())

    def miou(self) -> float:
        """Mean IoU over classes present in the targets or the predictions (zero union -> left out); NaN
        when no pixel was counted."""
        iou = self._iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels."""
        n = self.num_pixels
        return float(np.trace(self.confusion) / n) if n else math.nan

    def mean_class_accuracy(self) -> float:
        """Mean over classes present in the targets of (correct pixels of the class / its pixels)."""
        acc = self._class_accuracy()
        return float(np.nanmean(acc)) if np.isfinite(acc).any() else math.nan

    def per_class_iou(self) -> dict[str, float | None]:
        """``{class name: IoU}``, ``None`` for classes absent from both targets and predictions."""
        return {n: _none_if_nan(v) for n, v in zip(self.class_names, self._iou(), strict=True)}

    def result(self) -> dict[str, Any]:
        """JSON-ready: ``miou``, ``pixel_accuracy``, ``mean_class_accuracy``, ``num_pixels``, ``num_classes``,
        ``classes_scored`` (classes entering the mIoU), ``ignore_index``, and ``per_class`` rows (``id``,
        ``name``, ``iou``, ``accuracy``, ``target_pixels``, ``predicted_pixels``). Undefined values are
        ``None``."""
        iou, acc = self._iou(), self._class_accuracy()
        support, predicted = self.confusion.sum(1), self.confusion.sum(0)
        return {
            "miou": _none_if_nan(self.miou()),
            "pixel_accuracy": _none_if_nan(self.pixel_accuracy()),
            "mean_class_accuracy": _none_if_nan(self.mean_class_accuracy()),
            "num_pixels": self.num_pixels,
            "num_classes": self.num_classes,
            "classes_scored": int(np.isfinite(iou).sum()),
            "ignore_index": self.ignore_index,
            "per_class": [
                {"id": i, "name": self.class_names[i], "iou": _none_if_nan(iou[i]),
                 "accuracy": _none_if_nan(acc[i]), "target_pixels": int(support[i]),
                 "predicted_pixels": int(predicted[i])}
                for i in range(self.num_classes)
            ],
        }


def _none_if_nan(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v
