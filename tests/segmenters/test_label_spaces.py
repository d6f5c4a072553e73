"""Layout ids -> segmenter ids (target_for_segmenter) and the scoring of a segmenter's output."""

import math

import pytest
import torch

from semsynth.data import DATASETS, DatasetInfo
from semsynth.errors import ConfigError
from semsynth.segmenters import (
    IGNORE,
    NO_IGNORE,
    ConfusionScore,
    Segmenter,
    evaluate_segmenter,
    label_space_classes,
    target_for_segmenter,
)


def _info(name, **kw):
    return DATASETS.get(name).describe(root="/nonexistent", **kw)


def test_cityscapes_label_ids_to_train_ids():
    info = _info("cityscapes")
    label = torch.tensor([[0, 7, 8, 11], [24, 26, 33, 34]])  # unlabeled, road, sidewalk, building / person ...
    target, ignore = target_for_segmenter(label, info, "cityscapes-trainid")
    assert ignore == IGNORE == 255
    assert target.tolist() == [[255, 0, 1, 2], [11, 13, 18, 255]]
    assert target.dtype == torch.int64
    assert label_space_classes(info, "dataset-eval") == 19
    assert torch.equal(target_for_segmenter(label, info, "dataset-eval")[0], target)


@pytest.mark.parametrize("convention", ["spade", "scgan"])
def test_ade20k_both_conventions(convention):
    info = _info("ade20k", label_convention=convention)
    if convention == "spade":  # channel k = ADE class k + 1, 150 = unlabeled
        label, want = torch.tensor([0, 1, 149, 150]), [0, 1, 149, 255]
    else:  # channel 0 = unlabeled, channel k = class k
        label, want = torch.tensor([0, 1, 2, 150]), [255, 0, 1, 149]
    target, ignore = target_for_segmenter(label, info, "ade20k-150")
    assert target.tolist() == want and ignore == 255


def test_coco_stuff_dontcare_ignored():
    info = _info("coco-stuff")
    target, ignore = target_for_segmenter(torch.tensor([0, 91, 181, 182]), info, "coco-stuff-182")
    assert target.tolist() == [0, 91, 181, 255] and ignore == 255


def test_dataset_space_is_identity_with_dontcare():
    info = DatasetInfo(name="x", num_classes=4, class_names=list("abcd"), dontcare_index=3)
    label = torch.tensor([0, 1, 2, 3])
    target, ignore = target_for_segmenter(label, info, "dataset")
    assert torch.equal(target, label) and ignore == 3
    info2 = DatasetInfo(name="y", num_classes=3, class_names=list("abc"))
    assert target_for_segmenter(label[:3], info2, "dataset")[1] == NO_IGNORE


def test_mismatched_spaces_are_config_errors():
    faces = DATASETS.get("synthetic-faces")(num_samples=1).info
    for space in ("cityscapes-trainid", "ade20k-150", "coco-stuff-182"):
        with pytest.raises(ConfigError):
            target_for_segmenter(torch.zeros(2, 2, dtype=torch.long), faces, space)
    with pytest.raises(ConfigError, match="unknown label_space"):
        target_for_segmenter(torch.zeros(2, 2, dtype=torch.long), faces, "nope")


def test_confusion_score_values():
    s = ConfusionScore(3, ignore_index=2)
    s.update(torch.tensor([0, 0, 1, 1, 0]), torch.tensor([0, 1, 1, 1, 2]))
    # class 0: inter 1, union 2 -> 0.5; class 1: inter 2, union 3 -> 2/3; class 2 ignored (no counted pixels)
    assert math.isclose(s.miou(), (0.5 + 2 / 3) / 2)
    assert math.isclose(s.pixel_accuracy(), 3 / 4)
    assert s.per_class_iou()["2"] is None


class _Fixed(Segmenter):
    """Predicts the don't-care class everywhere unless it is masked out, then class 1."""

    def __init__(self):
        super().__init__()
        self.num_classes, self.label_space = 3, "dataset"
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        b, _, h, w = images.shape
        logits = torch.zeros(b, 3, h, w)
        logits[:, 1] = 1.0
        logits[:, 2] = 5.0
        return logits


def test_evaluate_never_predicts_the_dontcare_class():
    info = DatasetInfo(name="x", num_classes=3, class_names=["a", "b", "dontcare"], dontcare_index=2)
    batch = {"image": torch.zeros(2, 3, 4, 4), "label": torch.ones(2, 4, 4, dtype=torch.long)}
    batch["label"][:, 0] = 2
    res = evaluate_segmenter(_Fixed(), [batch], info)
    assert res["miou"] == 1.0 and res["pixel_accuracy"] == 1.0 and res["images"] == 2
    assert res["label_space"] == "dataset" and res["per_class_iou"]["b"] == 1.0
    seg = _Fixed()
    assert (seg.predict(batch["image"]) == 2).all() and (seg.predict(batch["image"], 2) == 1).all()
    assert (seg.predict(batch["image"], NO_IGNORE) == 2).all() and (seg.predict(batch["image"], 255) == 2).all()
