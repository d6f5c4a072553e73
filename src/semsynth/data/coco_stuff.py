"""COCO-Stuff in SPADE's layout (``train_img/``, ``train_label/``, ``train_inst/``, ``val_*``).

Labels are the ``stuffthingmaps_trainval2017`` PNGs: value ``v`` in 0..181 is COCO category id ``v + 1`` (things
1..91, stuff 92..182), 255 is unlabeled. As SPADE, 255 goes to channel 182, the don't-care channel: 183 one-hot
channels, 184 with the instance-edge channel. The 11 thing ids that COCO 2017 never annotates keep their
channels (named ``unused-<v>``) so that checkpoints of the SPADE family load.
"""

from __future__ import annotations

from pathlib import Path

from . import DATASETS
from .base import DatasetInfo, default_palette
from .folder import (LabelFolderDataset, Problem, SampleFiles, check_flags, index_folders, label_only_root,
                     make_preprocess, resolve_split)
from .transforms import LabelMapping

# COCO-Stuff labels.txt (ids 1..182) in label-value order 0..181.
_THINGS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk",
    "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush",
]
_STUFF = [
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain",
    "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other",
    "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin",
    "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other",
    "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent",
    "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]
# Label values of the thing categories COCO 2017 never annotates (category ids 12, 26, 29, 30, 45, 66, 68, 69,
# 71, 83, 91 minus one): street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush.
UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
NUM_LABELS = 182  # label values 0..181
DONTCARE_VALUE = 255
CLASS_NAMES = [f"unused-{i}" if i in UNUSED else n for i, n in enumerate(_THINGS + _STUFF)] + ["unlabeled"]
# Distinct colours for the 182 classes; the don't-care channel is black.
PALETTE = default_palette(NUM_LABELS + 1)[1:] + [(0, 0, 0)]
LAYOUT = "ROOT/{train,val}_img/*.jpg, ROOT/{train,val}_label/*.png, ROOT/{train,val}_inst/*.png"
_SPLITS = {"train": "train", "val": "val", "test": "val"}  # SPADE tests on val (COCO-Stuff has no test labels)

assert len(CLASS_NAMES) == NUM_LABELS + 1


def _hint(bad: dict[int, int]) -> str | None:
    if any(v > 255 for v in bad):
        return "COCO-Stuff label maps are 8-bit"
    return ("COCO-Stuff label maps hold the label value (category id - 1), as in stuffthingmaps_trainval2017.zip; "
            "the panoptic or colour-coded PNGs are a different format")


@DATASETS.register("coco-stuff", "COCO-Stuff (SPADE layout): 182 classes + don't-care (255), optional instance maps")
class CocoStuff(LabelFolderDataset):
    """COCO-Stuff from ``root`` in SPADE's layout; ``split``: train or val (``test`` = val, as SPADE)."""

    def __init__(self, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, aspect_ratio: float = 1.0, flip: bool = True, use_instance: bool = True,
                 images: bool = True) -> None:
        self.info = self.describe(split, root=root, preprocess=preprocess, load_size=load_size, crop_size=crop_size,
                                  aspect_ratio=aspect_ratio, flip=flip, use_instance=use_instance, images=images)
        self.split, self.root, self.images = split, Path(root), images
        s = _SPLITS[split]
        self.pre = make_preprocess("coco-stuff", s == "train", preprocess, load_size, crop_size, aspect_ratio, flip)
        table = {v: v for v in range(NUM_LABELS)} | {DONTCARE_VALUE: NUM_LABELS}
        self.mapping = LabelMapping(table, NUM_LABELS + 1, "0..181 and 255 (unlabeled)", _hint)
        self.check_args = "" if use_instance else "--set use_instance=false"
        self._finish_index(*self._index(s, use_instance))

    @classmethod
    def describe(cls, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, aspect_ratio: float = 1.0, flip: bool = True, use_instance: bool = True,
                 images: bool = True) -> DatasetInfo:
        """COCO-Stuff's facts (no disk access): 183 channels, don't-care 182, instance edges if used."""
        resolve_split("coco-stuff", split, _SPLITS)
        check_flags("coco-stuff", flip=flip, use_instance=use_instance, images=images)
        pre = make_preprocess("coco-stuff", True, preprocess, load_size, crop_size, aspect_ratio, flip)
        return DatasetInfo(name="coco-stuff", num_classes=NUM_LABELS + 1, class_names=list(CLASS_NAMES),
                           dontcare_index=NUM_LABELS, has_instance=use_instance, palette=list(PALETTE),
                           resolution=pre.resolution())

    def _index(self, s: str, use_instance: bool) -> tuple[list[SampleFiles], list[Problem]]:
        root = self.root
        label_dir = root / f"{s}_label"
        if not self.images:
            label_dir = label_only_root(root, label_dir)
        return index_folders(root=root, label_dir=label_dir, image_dir=root / f"{s}_img" if self.images else None,
                             instance_dir=root / f"{s}_inst" if use_instance else None, layout=LAYOUT,
                             instance_fix="add the instance maps (made by SPADE's coco_generate_instance_map.py), "
                                          "or set data.use_instance=false")
