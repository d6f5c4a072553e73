"""mIoU / pixel accuracy / mean class accuracy on a hand-computed confusion matrix with ignored pixels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.data.base import DatasetInfo
from semsynth.metrics import SegmentationScore, map_labels, resize_labels

# target (layout) and prediction, 3 classes; 255 = ignored, 7 = outside [0, 3) -> also not counted
TARGET = [[0, 0, 1, 1, 255],
          [0, 2, 1, 1, 7]]
PRED = [[0, 1, 1, 1, 2],
        [0, 2, 2, 0, 0]]
# counted pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (0,0) (2,2) (1,2) (1,0)
CONFUSION = [[2, 1, 0],   # target 0: 2 right, 1 as class 1
             [1, 2, 1],   # target 1: 2 right, 1 as 0, 1 as 2
             [0, 0, 1]]   # target 2: 1 right
# IoU: 0 -> 2/(3+3-2)=1/2; 1 -> 2/(4+3-2)=2/5; 2 -> 1/(1+2-1)=1/2
IOU = [1 / 2, 2 / 5, 1 / 2]


def _score(**kw) -> SegmentationScore:
    s = SegmentationScore(3, ignore_index=255, class_names=["a", "b", "c"], **kw)
    s.update(torch.tensor(PRED), torch.tensor(TARGET))
    return s


def test_confusion_and_scores_by_hand():
    s = _score()
    assert s.confusion.dtype == np.int64
    np.testing.assert_array_equal(s.confusion, CONFUSION)
    assert s.num_pixels == 8
    assert s.miou() == pytest.approx(sum(IOU) / 3)
    assert s.pixel_accuracy() == pytest.approx(5 / 8)
    assert s.mean_class_accuracy() == pytest.approx((2 / 3 + 2 / 4 + 1 / 1) / 3)
    assert s.per_class_iou() == pytest.approx({"a": 1 / 2, "b": 2 / 5, "c": 1 / 2})


def test_batches_accumulate_and_merge():
    s = SegmentationScore(3, ignore_index=255)
    p, t = torch.tensor(PRED), torch.tensor(TARGET)
    s.update(p[:1], t[:1])
    s.update(p[1:], t[1:])
    np.testing.assert_array_equal(s.confusion, CONFUSION)
    s.merge(_score())
    np.testing.assert_array_equal(s.confusion, 2 * np.array(CONFUSION))
    s.reset()
    assert s.num_pixels == 0 and math.isnan(s.miou()) and math.isnan(s.pixel_accuracy())


def test_absent_classes_are_left_out_of_the_mean():
    s = SegmentationScore(5, ignore_index=255)  # classes 3 and 4 never appear
    s.update(torch.tensor(PRED), torch.tensor(TARGET))
    assert s.miou() == pytest.approx(sum(IOU) / 3)
    assert s.mean_class_accuracy() == pytest.approx((2 / 3 + 2 / 4 + 1 / 1) / 3)
    assert s.per_class_iou()["3"] is None
    # a class only predicted (never in the target) counts in the mIoU with IoU 0, but not in class accuracy
    s.update(torch.tensor([4]), torch.tensor([0]))
    assert s.per_class_iou()["4"] == 0.0
    assert s.result()["classes_scored"] == 4


def test_ignore_index_inside_the_class_range_is_the_dont_care():
    s = SegmentationScore(3, ignore_index=2)  # e.g. a don't-care channel
    s.update(torch.tensor(PRED), torch.tensor(TARGET))
    np.testing.assert_array_equal(s.confusion, [[2, 1, 0], [1, 2, 1], [0, 0, 0]])


def test_result_is_json_ready():
    r = _score().result()
    json.dumps(r)
    assert r["miou"] == pytest.approx(sum(IOU) / 3) and r["pixel_accuracy"] == pytest.approx(5 / 8)
    assert r["per_class"][1] == {"id": 1, "name": "b", "iou": pytest.approx(2 / 5),
                                 "accuracy": pytest.approx(0.5), "target_pixels": 4, "predicted_pixels": 3}
    assert SegmentationScore(2).result()["miou"] is None  # nothing counted


def test_bad_inputs():
    s = SegmentationScore(3, ignore_index=255)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        s.update(torch.tensor([3, 0]), torch.tensor([0, 0]))
    s.update(torch.tensor([9]), torch.tensor([255]))  # an ignored pixel's prediction does not matter
    with pytest.raises(ValueError):
        s.update(torch.zeros(2, 2), torch.zeros(2, 3))


def test_map_labels_cityscapes_style():
    mapping = [255, 255, 0, 1, 255, 2]  # labelId -> trainId
    label = torch.tensor([[0, 2, 3], [5, 4, 9]])
    out = map_labels(label, mapping)
    assert out.dtype == torch.long
    assert out.tolist() == [[255, 0, 1], [2, 255, 255]]
    assert map_labels(label, None).tolist() == label.tolist()
    assert map_labels(torch.tensor([-1]), mapping).tolist() == [255]


def test_for_dataset_uses_the_eval_mapping_or_the_dont_care():
    names = ["void", "road", "car", "sky"]
    city = DatasetInfo(name="c", num_classes=4, class_names=names, eval_label_map=[255, 0, 1, 255],
                       eval_class_names=["road", "car"])
    s = SegmentationScore.for_dataset(city)
    assert (s.num_classes, s.ignore_index, s.class_names) == (2, 255, ["road", "car"])
    ade = DatasetInfo(name="a", num_classes=4, class_names=names, dontcare_index=0)
    s = SegmentationScore.for_dataset(ade)
    assert (s.num_classes, s.ignore_index) == (4, 0)


def test_resize_labels_is_pil_nearest():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 200, size=(2, 37, 53))
    out = resize_labels(torch.from_numpy(lab), (16, 24))
    assert out.shape == (2, 16, 24) and out.dtype == torch.long
    for i in range(2):
        ref = np.array(Image.fromarray(lab[i].astype(np.uint8)).resize((24, 16), Image.NEAREST))
        np.testing.assert_array_equal(out[i].numpy(), ref)
    up = resize_labels(torch.from_numpy(lab[0]), (74, 106))
    assert set(up.unique().tolist()) <= set(np.unique(lab[0]).tolist())
