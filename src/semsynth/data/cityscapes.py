"""Cityscapes (``leftImg8bit/`` + ``gtFine/``) as SPADE trains on it: the 35 labelIds, instance maps, 256x512.

Files are paired on their first three ``_``-separated fields (``aachen_000000_000019``):
``leftImg8bit/<split>/<city>/*_leftImg8bit.png``, ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` (8-bit, values
0..33) and ``*_gtFine_instanceIds.png`` (16-bit: ``labelId * 1000 + k`` for instances, ``labelId`` elsewhere).

Channels are the labelIds themselves (0..33, plus channel 34 for "license plate", whose id is -1 and never appears
in the PNGs), 35 in all, with no don't-care channel: SPADE's ``label_nc=35``. Evaluation (mIoU with DRN-D-105)
uses the 19 trainIds: ``info.eval_label_map[labelId]`` gives the trainId, 255 = ignored.
"""

from __future__ import annotations

from pathlib import Path

from . import DATASETS
from .base import DatasetInfo
from .folder import (LabelFolderDataset, Problem, SampleFiles, check_flags, index_folders, label_only_root,
                     make_preprocess, resolve_split)
from .transforms import LabelMapping

# (name, labelId, trainId, colour) from cityscapesScripts' labels.py; "license plate" (id -1) is put at 34.
LABELS = [
    ("unlabeled", 0, 255, (0, 0, 0)), ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)), ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)), ("dynamic", 5, 255, (111, 74, 0)), ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)), ("sidewalk", 8, 1, (244, 35, 232)), ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)), ("building", 11, 2, (70, 70, 70)), ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)), ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)), ("tunnel", 16, 255, (150, 120, 90)), ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)), ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)), ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)), ("sky", 23, 10, (70, 130, 180)), ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)), ("car", 26, 13, (0, 0, 142)), ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)), ("caravan", 29, 255, (0, 0, 90)), ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)), ("motorcycle", 32, 17, (0, 0, 230)), ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", 34, 255, (0, 0, 142)),
]
NUM_CLASSES = 35
CLASS_NAMES = [n for n, *_ in LABELS]
PALETTE = [c for *_, c in LABELS]
LABEL_TO_TRAIN = [t for _, _, t, _ in LABELS]
TRAIN_NAMES = [n for n, _, t, _ in sorted(LABELS, key=lambda r: r[2]) if t != 255]
assert [i for _, i, _, _ in LABELS] == list(range(NUM_CLASSES)) and len(TRAIN_NAMES) == 19
LAYOUT = ("ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png, ROOT/gtFine/{train,val}/<city>/"
          "*_gtFine_labelIds.png and *_gtFine_instanceIds.png")
_SPLITS = {"train": "train", "val": "val", "test": "val"}  # SPADE tests on val (the test labels are withheld)
_OTHER_GT = ("_instanceIds", "_color", "_labelTrainIds", "_polygons", "_disparity")


def _key3(stem: str) -> str:
    return "_".join(stem.split("_")[:3])


def _label_key(p: Path) -> str | None:
    stem = p.stem
    if stem.endswith("_labelIds"):
        return _key3(stem)
    if stem.endswith(_OTHER_GT):
        return None
    return stem  # a plain folder of label maps (label-only use)


def _instance_key(p: Path) -> str | None:
    return _key3(p.stem) if p.stem.endswith("_instanceIds") else None


def _image_key(p: Path) -> str | None:
    return _key3(p.stem) if p.stem.endswith("_leftImg8bit") else p.stem


def _hint(bad: dict[int, int]) -> str | None:
    if 255 in bad and all(v < 19 or v == 255 for v in bad):
        return ("These look like trainIds (0..18, 255 = ignore): semsynth trains on the labelIds "
                "(*_gtFine_labelIds.png), as SPADE")
    return "Cityscapes labelIds are 0..33 (*_gtFine_labelIds.png)"


@DATASETS.register("cityscapes", "Cityscapes (leftImg8bit + gtFine): the 35 labelIds as SPADE, instance maps, "
                                 "256x512")
class Cityscapes(LabelFolderDataset):
    """Cityscapes from ``root``; ``split``: train or val (``test`` = val, as SPADE)."""

    def __init__(self, split: str = "train", *, root: str, preprocess: str = "fixed", load_size: int = 512,
                 crop_size: int = 512, aspect_ratio: float = 2.0, flip: bool = True, use_instance: bool = True,
                 images: bool = True) -> None:
        self.info = self.describe(split, root=root, preprocess=preprocess, load_size=load_size, crop_size=crop_size,
                                  aspect_ratio=aspect_ratio, flip=flip, use_instance=use_instance, images=images)
        self.split, self.root, self.images = split, Path(root), images
        s = _SPLITS[split]
        self.pre = make_preprocess("cityscapes", s == "train", preprocess, load_size, crop_size, aspect_ratio, flip)
        self.mapping = LabelMapping({v: v for v in range(NUM_CLASSES)}, NUM_CLASSES, "the labelIds 0..33", _hint)
        self.check_args = "" if use_instance else "--set use_instance=false"
        self._finish_index(*self._index(s, use_instance))

    @classmethod
    def describe(cls, split: str = "train", *, root: str, preprocess: str = "fixed", load_size: int = 512,
                 crop_size: int = 512, aspect_ratio: float = 2.0, flip: bool = True, use_instance: bool = True,
                 images: bool = True) -> DatasetInfo:
        """Cityscapes' facts (no disk access): 35 channels, no don't-care, labelId -> trainId map for metrics."""
        resolve_split("cityscapes", split, _SPLITS)
        check_flags("cityscapes", flip=flip, use_instance=use_instance, images=images)
        pre = make_preprocess("cityscapes", True, preprocess, load_size, crop_size, aspect_ratio, flip)
        return DatasetInfo(name="cityscapes", num_classes=NUM_CLASSES, class_names=list(CLASS_NAMES),
                           dontcare_index=None, has_instance=use_instance, palette=list(PALETTE),
                           resolution=pre.resolution((1024, 2048)), eval_label_map=list(LABEL_TO_TRAIN),
                           eval_class_names=list(TRAIN_NAMES))

    def _index(self, s: str, use_instance: bool) -> tuple[list[SampleFiles], list[Problem]]:
        root = self.root
        label_dir = root / "gtFine" / s
        if not self.images:
            label_dir = label_only_root(root, label_dir)
        flat = label_dir == root
        return index_folders(
            root=root, label_dir=label_dir, image_dir=root / "leftImg8bit" / s if self.images else None,
            instance_dir=(label_dir if flat else root / "gtFine" / s) if use_instance else None, layout=LAYOUT,
            label_key=_label_key, image_key=_image_key, instance_key=_instance_key, recursive=not flat,
            instance_fix="add the *_gtFine_instanceIds.png files, or set data.use_instance=false")
