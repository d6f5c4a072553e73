"""ADE20K (SceneParsing, ``ADEChallengeData2016``): 150 classes, raw value 0 = unlabeled ("other").

Layout: ``ROOT/images/{training,validation}/ADE_*.jpg`` and ``ROOT/annotations/{training,validation}/ADE_*.png``
(``ROOT`` may also be the folder that contains ``ADEChallengeData2016``).

Two label conventions (``label_convention``), 151 channels either way:

* ``spade`` (default): SPADE's documented one, ``label - 1`` with unlabeled last: channel ``k`` = ADE class
  ``k + 1``, raw 0 -> channel 150 = don't-care.
* ``scgan``: unshifted, as the official SC-GAN code (and, in effect, SPADE's released models, whose shift is a
  no-op, see docs/data.md): channel ``k`` = raw value ``k``, channel 0 = unlabeled = don't-care.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from . import DATASETS
from .base import DatasetInfo, default_palette
from .folder import (LabelFolderDataset, Problem, SampleFiles, check_flags, index_folders, label_only_root,
                     make_preprocess, resolve_split)
from .transforms import LabelMapping

# objectInfo150 order (class 1 .. 150), short names.
ADE_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
assert len(ADE_CLASSES) == 150
CONVENTIONS = ("spade", "scgan")
LAYOUT = ("ROOT/images/{training,validation}/ADE_*.jpg and ROOT/annotations/{training,validation}/ADE_*.png "
          "(ROOT = ADEChallengeData2016)")
_SPLITS = {"train": "training", "val": "validation", "test": "validation", "training": "training",
           "validation": "validation"}
_COLOURS = default_palette(151)[1:]  # 150 class colours; unlabeled is black in both conventions


def conventions(label_convention: str) -> tuple[dict[int, int], list[str], int, list[tuple[int, int, int]]]:
    """(raw -> channel table, channel names, don't-care channel, palette) of a label convention."""
    if label_convention == "spade":
        table = {0: 150} | {v: v - 1 for v in range(1, 151)}
        return table, ADE_CLASSES + ["unlabeled"], 150, _COLOURS + [(0, 0, 0)]
    if label_convention == "scgan":
        return {v: v for v in range(151)}, ["unlabeled"] + ADE_CLASSES, 0, [(0, 0, 0)] + _COLOURS
    raise ConfigError(f"ade20k: label_convention={label_convention!r}; valid: {', '.join(CONVENTIONS)}")


def _hint(bad: dict[int, int]) -> str | None:
    return ("ADE20K SceneParsing annotations hold 0 (unlabeled) and 1..150; the full ADE20K release "
            "(ADE20K_2021, *_seg.png) uses a different, RGB-encoded format")


@DATASETS.register("ade20k", "ADE20K SceneParsing (ADEChallengeData2016): 150 classes + unlabeled; SPADE or "
                             "SC-GAN label convention")
class ADE20K(LabelFolderDataset):
    """ADE20K from ``root``; ``split``: train/training or val/validation (``test`` = validation, as SPADE)."""

    def __init__(self, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, aspect_ratio: float = 1.0, flip: bool = True, label_convention: str = "spade",
                 images: bool = True) -> None:
        self.info = self.describe(split, root=root, preprocess=preprocess, load_size=load_size, crop_size=crop_size,
                                  aspect_ratio=aspect_ratio, flip=flip, label_convention=label_convention,
                                  images=images)
        self.split, self.images = split, images
        root_p = Path(root)
        self.root = root_p / "ADEChallengeData2016" if (root_p / "ADEChallengeData2016").is_dir() else root_p
        s = _SPLITS[split]
        self.pre = make_preprocess("ade20k", s == "training", preprocess, load_size, crop_size, aspect_ratio, flip)
        table = conventions(label_convention)[0]
        self.mapping = LabelMapping(table, 151, "0 (unlabeled) and 1..150", _hint)
        self.check_args = "" if label_convention == "spade" else f"--set label_convention={label_convention}"
        self._finish_index(*self._index(s))

    @classmethod
    def describe(cls, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, aspect_ratio: float = 1.0, flip: bool = True, label_convention: str = "spade",
                 images: bool = True) -> DatasetInfo:
        """ADE20K's facts (no disk access): 151 channels; don't-care 150 (spade) or 0 (scgan); no instances."""
        resolve_split("ade20k", split, _SPLITS)
        check_flags("ade20k", flip=flip, images=images)
        _, names, dontcare, palette = conventions(label_convention)
        pre = make_preprocess("ade20k", True, preprocess, load_size, crop_size, aspect_ratio, flip)
        return DatasetInfo(name="ade20k", num_classes=151, class_names=names, dontcare_index=dontcare,
                           has_instance=False, palette=palette, resolution=pre.resolution())

    def _index(self, s: str) -> tuple[list[SampleFiles], list[Problem]]:
        root = self.root
        label_dir = root / "annotations" / s
        if not self.images:
            label_dir = label_only_root(root, label_dir)
        return index_folders(root=root, label_dir=label_dir, image_dir=root / "images" / s if self.images else None,
                             instance_dir=None, layout=LAYOUT)
