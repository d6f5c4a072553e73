"""Preprocessing shared by every dataset, as SPADE and its forks do it.

One :class:`Plan` (target size, crop box, flip) is drawn per sample from the *label map's* size and applied to
the image, the label map and the instance map alike, so the three stay aligned. Images are resized BICUBIC,
class ids and instance ids NEAREST (interpolating ids would invent classes). Images end in ``[-1, 1]``.

Modes (``preprocess``):

* ``resize_and_crop``: resize to ``load_size x load_size``, random ``crop_size`` square crop (SPADE's COCO/ADE20K
  default, 286 -> 256).
* ``scale_width_and_crop``: scale the width to ``load_size`` keeping the aspect, random ``crop_size`` square crop.
* ``fixed``: resize to ``crop_size`` wide and ``round(crop_size / aspect_ratio)`` high (SPADE's Cityscapes mode).
* ``none``: keep the size, rounded to a multiple of 32 (as SPADE), so every generator can take it.

On a non-training split the crop modes behave as SPADE's test options set them (``load_size = crop_size``):
``resize_and_crop`` resizes straight to ``crop_size``, ``scale_width_and_crop`` scales the width to
``crop_size`` and centre-crops; there is no randomness and no flip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError

MODES = ("resize_and_crop", "scale_width_and_crop", "fixed", "none")
_NONE_BASE = 32  # "none" rounds sizes to this multiple, as SPADE's __make_power_2(base=32)


@dataclass(frozen=True)
class Plan:
    """Geometry of one sample: resize to ``size`` (w, h), then crop ``box`` (x, y, w, h) if any, then flip."""

    size: tuple[int, int]
    box: tuple[int, int, int, int] | None
    flip: bool

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.box[3], self.box[2]) if self.box else (self.size[1], self.size[0])


@dataclass(frozen=True)
class Preprocess:
    """Validated preprocessing options; ``train`` selects random crops and flips (training split only)."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    aspect_ratio: float = 1.0
    flip: bool = True
    train: bool = True
    owner: str = "data"  # dataset name, for messages

    def __post_init__(self) -> None:
        who = self.owner
        if self.mode not in MODES:
            raise ConfigError(f"{who}: preprocess={self.mode!r}; valid modes are: {', '.join(MODES)}")
        for key in ("load_size", "crop_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{who}: {key} must be a positive integer, got {v!r}")
        if isinstance(self.aspect_ratio, bool) or not isinstance(self.aspect_ratio, (int, float)) \
                or not self.aspect_ratio > 0:
            raise ConfigError(f"{who}: aspect_ratio must be a number > 0 (width / height), got {self.aspect_ratio!r}")
        if not isinstance(self.flip, bool):
            raise ConfigError(f"{who}: flip must be true or false, got {self.flip!r}")
        if self.mode.endswith("_and_crop") and self.load_size < self.crop_size:
            raise ConfigError(f"{who}: load_size ({self.load_size}) must be >= crop_size ({self.crop_size}) "
                              f"with preprocess={self.mode}; set data.load_size >= data.crop_size")

    # -- sizes -----------------------------------------------------------------------------------------------

    def resolution(self, native_hw: tuple[int, int] | None = None) -> tuple[int, int]:
        """``(h, w)`` of the served samples. For ``none`` that is ``native_hw`` rounded to multiples of 32
        when the dataset has one fixed size, else the nominal ``(crop_size, crop_size)``."""
        if self.mode in ("resize_and_crop", "scale_width_and_crop"):
            return (self.crop_size, self.crop_size)
        if self.mode == "fixed":
            return (fixed_height(self.crop_size, self.aspect_ratio), self.crop_size)
        if native_hw is None:
            return (self.crop_size, self.crop_size)
        return (_round_to_base(native_hw[0]), _round_to_base(native_hw[1]))

    def plan(self, size: tuple[int, int], name: str = "") -> Plan:
        """Draw the geometry for a sample whose label map is ``size = (w, h)`` (PIL order)."""
        w, h = size
        crop, load = self.crop_size, self.load_size
        box = None
        if self.mode == "resize_and_crop":
            if self.train:
                new = (load, load)
                box = _random_box(new, crop)
            else:  # SPADE test options: load_size = crop_size, so a plain resize
                new = (crop, crop)
        elif self.mode == "scale_width_and_crop":
            target = load if self.train else crop
            new = (target, int(target * h / w)) if w != target else (w, h)
            if new[1] < crop:
                raise DataError(
                    f"{name or 'sample'}: {w}x{h} scaled to width {target} is only {new[1]} pixels high, less "
                    f"than crop_size {crop}; use data.preprocess=resize_and_crop, or a smaller data.crop_size")
            box = _random_box(new, crop) if self.train else _center_box(new, crop)
        elif self.mode == "fixed":
            new = (crop, fixed_height(crop, self.aspect_ratio))
        else:
            new = (_round_to_base(w), _round_to_base(h))
        flip = bool(self.flip and self.train and torch.rand(()).item() < 0.5)
        return Plan(size=new, box=box, flip=flip)


def fixed_height(crop_size: int, aspect_ratio: float) -> int:
    """SPADE's ``fixed`` mode: height = round(crop_size / aspect_ratio)."""
    return int(round(crop_size / aspect_ratio))


def _round_to_base(n: int) -> int:
    return max(_NONE_BASE, int(round(n / _NONE_BASE)) * _NONE_BASE)


def _random_box(size: tuple[int, int], crop: int) -> tuple[int, int, int, int]:
    w, h = size
    x = int(torch.randint(0, max(0, w - crop) + 1, ()).item())
    y = int(torch.randint(0, max(0, h - crop) + 1, ()).item())
    return (x, y, min(crop, w), min(crop, h))


def _center_box(size: tuple[int, int], crop: int) -> tuple[int, int, int, int]:
    w, h = size
    return (max(0, (w - crop) // 2), max(0, (h - crop) // 2), min(crop, w), min(crop, h))


# -- applying a plan ------------------------------------------------------------------------------------------


def _crop_flip(a: np.ndarray, plan: Plan) -> np.ndarray:
    if plan.box is not None:
        x, y, cw, ch = plan.box
        a = a[y:y + ch, x:x + cw]
    if plan.flip:
        a = a[:, ::-1]
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()  # arrays over PIL buffers are read-only; torch wants writable


def apply_to_image(img: Image.Image, plan: Plan) -> np.ndarray:
    """RGB PIL image -> ``[H, W, 3]`` uint8 after resize (BICUBIC), crop and flip."""
    if img.size != plan.size:
        img = img.resize(plan.size, Image.BICUBIC)
    return _crop_flip(np.asarray(img), plan)


def resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NEAREST resize of an integer map to ``size = (w, h)``; uint8 stays uint8, anything else becomes int32."""
    if (ids.shape[1], ids.shape[0]) == size:
        return ids
    if ids.dtype != np.uint8:
        ids = ids.astype(np.int32, copy=False)  # PIL mode "I"
    return np.asarray(Image.fromarray(ids).resize(size, Image.NEAREST))


def apply_to_ids(ids: np.ndarray, plan: Plan) -> np.ndarray:
    """Class-id or instance-id map ``[h, w]`` -> ``[H, W]`` after NEAREST resize, crop and flip."""
    return _crop_flip(resize_ids(ids, plan.size), plan)


def image_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32 in ``[-1, 1]`` (ToTensor + Normalize(0.5, 0.5)).

    Done in numpy: torch's intra-op threads make these small strided ops several times slower in the main
    process (``num_workers=0``) than one numpy pass.
    """
    out = np.empty((3, *arr.shape[:2]), np.float32)
    np.divide(arr.transpose(2, 0, 1), np.float32(127.5), out=out, dtype=np.float32)
    out -= 1.0
    return torch.from_numpy(out)


def ids_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """Integer map -> int64 tensor."""
    return torch.from_numpy(arr.astype(np.int64, copy=False))


# -- label values -> channels -----------------------------------------------------------------------------------


class LabelMapping:
    """Raw label value -> channel, with every other value an error.

    Args:
        table: raw value -> channel for every valid value.
        num_channels: one-hot channels (the don't-care channel included).
        valid_text: the valid raw values in words, for messages (``"0..181, and 255 = unlabeled"``).
        hint: optional dataset-specific advice for a set of bad values (``None`` when it has none).
        fix: the default fix for out-of-range values.
    """

    def __init__(self, table: Mapping[int, int], num_channels: int, valid_text: str,
                 hint: Callable[[dict[int, int]], str | None] | None = None, fix: str = "") -> None:
        self.table = dict(table)
        self.num_channels = num_channels
        self.valid_text, self.hint = valid_text, hint
        self.fix = fix or ("use the dataset's original label PNGs (class ids as docs/data.md describes), or the "
                           "custom dataset with the right num_classes / dontcare")
        self.dtype = np.uint8 if num_channels < 255 else np.int32
        self.invalid = 255 if self.dtype == np.uint8 else -1
        self._luts: dict[int, np.ndarray] = {}
        self.max_raw = max(self.table) if self.table else -1
        # raw values a 16-bit lookup table cannot hold (negative, or >= 65536): map through np.unique instead
        self._wide = any(not 0 <= raw < 65536 for raw in self.table)

    def _lut(self, size: int) -> np.ndarray:
        lut = self._luts.get(size)
        if lut is None:
            lut = np.full(size, self.invalid, dtype=self.dtype)
            for raw, ch in self.table.items():
                if 0 <= raw < size:
                    lut[raw] = ch
            self._luts[size] = lut
        return lut

    def split(self, raw: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Mapped channels (invalid pixels set to the sentinel) and ``{bad raw value: pixels}``."""
        if raw.dtype == np.uint8:
            mapped = self._lut(256)[raw]
        elif self._wide:
            uniq, inv = np.unique(raw.astype(np.int64, copy=False).ravel(), return_inverse=True)
            chans = np.array([self.table.get(int(v), self.invalid) for v in uniq], dtype=self.dtype)
            mapped = chans[inv.ravel()].reshape(raw.shape)
        else:
            raw64 = raw.astype(np.int64, copy=False)
            inside = (raw64 >= 0) & (raw64 < 65536)
            mapped = self._lut(65536)[np.where(inside, raw64, 0)]
            if not inside.all():
                mapped[~inside] = self.invalid
        bad_mask = mapped == self.invalid  # channels stay below the sentinel (< 255, or >= 0)
        if not bad_mask.any():
            return mapped, {}
        vals, counts = np.unique(raw[bad_mask], return_counts=True)
        return mapped, {int(v): int(c) for v, c in zip(vals, counts, strict=True)}

    def explain(self, bad: dict[int, int], all_values: np.ndarray | None = None, mode: str = "L") -> tuple[str, str]:
        """(message, fix) for out-of-range values: which values, how many pixels, what they probably mean."""
        msg, fix, _ = self.diagnose(bad, all_values, mode)
        return msg, fix

    def diagnose(self, bad: dict[int, int], all_values: np.ndarray | None = None,
                 mode: str = "L") -> tuple[str, str, str | None]:
        """(message, fix, cause): cause is ``binary``, ``255``, ``scaled``, ``palette`` or ``None`` (plain ids)."""
        shown = sorted(bad.items(), key=lambda kv: -kv[1])[:8]
        total = sum(bad.values())
        vals = ", ".join(f"{v} ({c:,} px)" for v, c in shown) + (" ..." if len(bad) > 8 else "")
        msg = f"{total:,} pixels hold label values outside the declared classes: {vals}; valid values are " \
              f"{self.valid_text}"
        fix, cause = self.fix, None
        present = set(int(v) for v in np.unique(all_values)) if all_values is not None else set(bad)
        if present <= {0, 255} and 255 in bad:
            msg += ". This looks like a binary mask saved as 0/255"
            fix, cause = ("save binary masks with values 0/1 (class ids), or, if 255 marks unlabeled pixels, declare "
                          "the don't-care value (custom datasets: dontcare: 255 in dataset.yaml / data.dontcare=255)",
                          "binary")
        elif 255 in bad:
            msg += ". Value 255 usually marks unlabeled pixels, but this dataset declares no don't-care value"
            fix, cause = ("declare it (custom datasets: dontcare: 255 in dataset.yaml, or data.dontcare=255), or "
                          "relabel those pixels", "255")
        if mode.startswith("I") and all(v % 256 == 0 or v % 257 == 0 for v in bad):
            msg += ". The file is 16-bit and the values look scaled by 256 or 257"
            fix, cause = "save label maps as 8-bit PNGs holding the class ids themselves", "scaled"
        elif mode in ("P", "PA"):
            msg += ". The file is a palette-mode PNG: its palette indices are read as the ids"
            fix, cause = ("re-save it as 8-bit greyscale class ids, or, if its colours encode the classes, use "
                          "data.name=custom with a palette file", "palette")
        if self.hint is not None:
            extra = self.hint(bad)
            if extra:
                msg += f". {extra}"
        return msg, fix, cause
