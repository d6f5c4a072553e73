"""CelebAMask-HQ face parsing: 18 parts + background, 19 channels in the official SC-GAN order.

Two layouts (``layout``; ``auto`` picks the one present):

* ``merged`` (SC-GAN's): ``ROOT/CelebA-HQ-img/<k>.jpg`` (1024x1024) and one label PNG per image,
  ``ROOT/CelebAMask-HQ-mask/<k>.png`` (also ``CelebAMaskHQ-mask/``; 512x512, values 0 = background, 1..18 parts).
* ``parts`` (the original release): ``ROOT/CelebAMask-HQ-mask-anno/<k // 2000>/<k:05d>_<part>.png``, one binary
  512x512 mask per present part, merged on the fly in :data:`PARTS` order (ids 1..18, a later part overwrites an
  earlier one), exactly as the dataset's own ``g_mask.py``.

Splits come from ``ROOT/train_list.txt`` / ``ROOT/test_list.txt`` (one image id or file name per line; ``val`` =
test, as SC-GAN). Channels: mask value ``v`` in 1..18 -> channel ``v - 1``, background 0 -> channel 18, as the
official SC-GAN code (so its checkpoints load). Background is *not* a don't-care (``dontcare_index=None``): it is a
real region of a portrait that the generator must paint and that metrics should count; it merely lives in the
channel where the SPADE family keeps its don't-care label.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from . import DATASETS
from .base import DatasetInfo
from .folder import (LABEL_EXTS, LabelFolderDataset, LabelRead, Problem, SampleError, SampleFiles, _open, check_flags,
                     index_files, list_files, listing_problems, make_preprocess, read_label, require_dir, resolve_split)
from .transforms import LabelMapping

PARTS = ["skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip",
         "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]
CLASS_NAMES = PARTS + ["background"]
# CelebAMask-HQ's colour list (index 0 = background), reordered to the channel order.
_COLOURS = [(0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
            (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
            (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0)]
PALETTE = _COLOURS[1:] + _COLOURS[:1]
IMAGE_DIR, MASK_DIRS, ANNO_DIR = "CelebA-HQ-img", ("CelebAMask-HQ-mask", "CelebAMaskHQ-mask"), "CelebAMask-HQ-mask-anno"
LAYOUTS = ("auto", "merged", "parts")
LAYOUT = (f"ROOT/{IMAGE_DIR}/<k>.jpg with ROOT/{MASK_DIRS[0]}/<k>.png (merged) or ROOT/{ANNO_DIR}/<k//2000>/"
          "<k:05d>_<part>.png (parts), and ROOT/train_list.txt, ROOT/test_list.txt")
_SPLITS = {"train": "train", "test": "test", "val": "test"}
_PART_RE = re.compile(r"^(\d+)_(.+)$")


def _key(stem: str) -> str:
    """Image ids without zero padding, so ``00012_skin.png``, ``12.png`` and ``12.jpg`` pair."""
    return str(int(stem)) if stem.isdigit() else stem


def _sort_key(k: str) -> tuple[int, int | str]:
    return (0, int(k)) if k.isdigit() else (1, k)


@DATASETS.register("celebamask-hq", "CelebAMask-HQ faces: 18 parts + background (SC-GAN channel order); merged "
                                    "masks or per-part annotations")
class CelebAMaskHQ(LabelFolderDataset):
    """CelebAMask-HQ from ``root``; ``split``: train or test (``val`` = test)."""

    allow_scaled_image = True  # 1024 px images, 512 px masks: both are resized to the same geometry

    def __init__(self, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 512,
                 crop_size: int = 512, aspect_ratio: float = 1.0, flip: bool = True, layout: str = "auto",
                 split_lists: bool = True, images: bool = True) -> None:
        self.info = self.describe(split, root=root, preprocess=preprocess, load_size=load_size, crop_size=crop_size,
                                  aspect_ratio=aspect_ratio, flip=flip, layout=layout, split_lists=split_lists,
                                  images=images)
        self.split, self.root, self.images = split, Path(root), images
        s = _SPLITS[split]
        self.pre = make_preprocess("celebamask-hq", s == "train", preprocess, load_size, crop_size, aspect_ratio, flip)
        self.mapping = LabelMapping({0: 18} | {v: v - 1 for v in range(1, 19)}, 19,
                                    "0 (background) and 1..18 (parts)", _hint)
        self.check_args = "" if split_lists else "--set split_lists=false"
        self._finish_index(*self._index(s, layout, split_lists))

    @classmethod
    def describe(cls, split: str = "train", *, root: str, preprocess: str = "resize_and_crop", load_size: int = 512,
                 crop_size: int = 512, aspect_ratio: float = 1.0, flip: bool = True, layout: str = "auto",
                 split_lists: bool = True, images: bool = True) -> DatasetInfo:
        """CelebAMask-HQ's facts (no disk access): 19 channels, background last, no don't-care, no instances."""
        resolve_split("celebamask-hq", split, _SPLITS)
        check_flags("celebamask-hq", flip=flip, split_lists=split_lists, images=images)
        if layout not in LAYOUTS:
            raise ConfigError(f"celebamask-hq: layout={layout!r}; valid: {', '.join(LAYOUTS)}")
        pre = make_preprocess("celebamask-hq", True, preprocess, load_size, crop_size, aspect_ratio, flip)
        return DatasetInfo(name="celebamask-hq", num_classes=19, class_names=list(CLASS_NAMES), dontcare_index=None,
                           has_instance=False, palette=list(PALETTE), resolution=pre.resolution((512, 512)))

    # -- listing ---------------------------------------------------------------------------------------------

    def _index(self, s: str, layout: str, split_lists: bool) -> tuple[list[SampleFiles], list[Problem]]:
        root = self.root
        if (p := require_dir(root, "dataset root", LAYOUT)) is not None:
            return [], [p]
        mask_dir = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
        if layout == "auto":
            if mask_dir is None and (root / ANNO_DIR).is_dir():
                layout = "parts"
            elif mask_dir is None and not self.images and list(root.glob("*.png")):
                layout, mask_dir = "merged", root  # a plain folder of merged masks (label-only use)
            else:
                layout = "merged"
        probs: list[Problem] = []
        labels: dict[str, Path] = {}
        parts: dict[str, list[tuple[int, Path]]] = {}
        if layout == "merged":
            if mask_dir is None:
                return [], [Problem("missing-folder", f"neither {root / MASK_DIRS[0]} nor {root / ANNO_DIR} exists",
                                    [], f"check data.root; the expected layout is {LAYOUT}")]
            labels, pr = index_files(list_files(mask_dir), lambda p: _key(p.stem), LABEL_EXTS, "label map",
                                     mask_dir, True)
            probs += pr
        else:
            if (p := require_dir(root / ANNO_DIR, "per-part annotation", LAYOUT)) is not None:
                return [], [p]
            parts, pr = self._index_parts(root / ANNO_DIR)
            probs += pr
            labels = {k: v[0][1] for k, v in parts.items()}
        keys = set(labels)
        if split_lists:
            listed = self._read_list(root / f"{s}_list.txt", probs)
            if listed is not None:
                missing = [k for k in listed if k not in keys]
                if missing:
                    probs.append(Problem("unpaired-label", f"{len(missing)} id(s) listed in {s}_list.txt have no "
                                         "label map", missing, "add the masks or remove the ids from the list"))
                keys &= set(listed)
        if not keys and not probs:
            probs.append(Problem("empty-folder", f"no label maps found under {root}", [], f"expected {LAYOUT}"))
        images: dict[str, Path] = {}
        if self.images:
            img_dir = root / IMAGE_DIR
            if (p := require_dir(img_dir, "image", LAYOUT + "; or set data.images=false for label maps only")):
                probs.append(p)
            else:
                images, pr = index_files(list_files(img_dir), lambda p: _key(p.stem),
                                         (".jpg", ".jpeg", ".png"), "image", img_dir)
                probs += pr
                no_img = sorted((k for k in keys if k not in images), key=_sort_key)
                if no_img:
                    probs.append(Problem("unpaired-label", f"{len(no_img)} label map(s) have no image in {img_dir}",
                                         no_img, "add the images, or set data.images=false for label maps only"))
                keys &= set(images)
        files = [SampleFiles(k, None if layout == "parts" else labels[k], images.get(k), None,
                             tuple(parts.get(k, ()))) for k in sorted(keys, key=_sort_key)]
        return files, probs

    def _read_list(self, path: Path, probs: list[Problem]) -> list[str] | None:
        if not path.is_file():
            if self.images:
                probs.append(Problem("missing-list", f"split list {path} does not exist", [],
                                     f"write {path.name} (one image id per line, e.g. 12 or 12.jpg), or set "
                                     "data.split_lists=false to use every image in every split"))
            return None
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            tok = line.split()[0] if line.split() else ""
            if tok and not tok.startswith("#"):
                out.append(_key(Path(tok).stem))
        return out

    @staticmethod
    def _index_parts(anno: Path) -> tuple[dict[str, list[tuple[int, Path]]], list[Problem]]:
        parts: dict[str, list[tuple[int, Path]]] = {}
        unknown, lossy = [], []
        ids = {name: i + 1 for i, name in enumerate(PARTS)}
        listed = list_files(anno, recursive=True)
        for p in listed:
            m = _PART_RE.match(p.stem)
            if p.suffix.lower() != ".png":
                (lossy if p.suffix.lower() in (".jpg", ".jpeg") else unknown).append(p)
                continue
            if m is None or m.group(2) not in ids:
                unknown.append(p)
                continue
            parts.setdefault(_key(m.group(1)), []).append((ids[m.group(2)], p))
        for v in parts.values():
            v.sort()
        probs = listing_problems(listed, anno)
        if unknown:
            probs.append(Problem("wrong-extension", f"{len(unknown)} file(s) in {anno} are not <id>_<part>.png masks "
                                 f"with a known part ({', '.join(PARTS)}) and are ignored",
                                 [str(p.relative_to(anno)) for p in unknown], "rename or remove them", "warning"))
        if lossy:
            probs.append(Problem("wrong-extension", f"{len(lossy)} part mask(s) in {anno} are JPEGs",
                                 [str(p.relative_to(anno)) for p in lossy], "use the PNG masks of the release"))
        return parts, probs

    # -- reading ---------------------------------------------------------------------------------------------

    def read_label_raw(self, f: SampleFiles) -> LabelRead:
        if not f.parts:
            return read_label(f.label)
        return LabelRead(merge_parts(f.parts), "L")


def merge_parts(parts: tuple[tuple[int, Path], ...] | list[tuple[int, Path]]) -> np.ndarray:
    """Merge binary part masks into one label map: ``(part id, path)`` in id order, a later part overwriting
    an earlier one, background 0 (the dataset's ``g_mask.py``: any non-zero value of the first channel counts)."""
    out = None
    first = None
    for pid, path in sorted(parts, key=lambda t: t[0]):
        img = _open(path, "part mask")
        a = np.asarray(img if img.mode in ("L", "P", "1", "I", "I;16") else img.convert("RGB"))
        m = (a[..., 0] if a.ndim == 3 else a) != 0
        if out is None:
            out, first = np.zeros(m.shape, np.uint8), path
        elif m.shape != out.shape:
            raise SampleError("size-mismatch", path, f"part mask is {m.shape[1]}x{m.shape[0]} but {first.name} is "
                              f"{out.shape[1]}x{out.shape[0]}", "all part masks of an image must have one size")
        out[m] = pid
    assert out is not None
    return out


def _hint(bad: dict[int, int]) -> str | None:
    return "CelebAMask-HQ merged masks hold 0 (background) and the part ids 1..18 (g_mask.py order)"
