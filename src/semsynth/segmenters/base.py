"""What every segmenter shares: the interface, label spaces, weight files and input resizing.

A segmenter is an ``nn.Module`` whose ``forward(images)`` takes ``[B, 3, H, W]`` floats in ``[-1, 1]`` (the
images semsynth datasets and generators produce) and returns logits ``[B, K, H, W]`` at the *input*
resolution. Each adapter applies its own normalisation (ImageNet statistics, BGR mean subtraction, ...) and
its own resizing, so callers never need to know how the network was trained.

``segmenter.label_space`` says which class ids the ``K`` outputs are (see :data:`LABEL_SPACES`);
:func:`target_for_segmenter` converts a dataset's layout (channel ids) into that space.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import DatasetInfo
from ..errors import ConfigError, MissingWeightsError, SemsynthError

IGNORE = 255  # ignore id of the literature's label spaces (Cityscapes trainIds, ADE20K, COCO-Stuff)
NO_IGNORE = -100  # ignore index when a dataset has no don't-care class (PyTorch's cross-entropy default)

LABEL_SPACES = {
    "dataset": "the dataset's channel ids (0..num_classes-1); its don't-care channel is ignored",
    "dataset-eval": "the dataset's evaluation ids, info.eval_label_map[channel] (255 = ignored)",
    "cityscapes-trainid": "the 19 Cityscapes trainIds (0..18); layouts map through info.eval_label_map, "
                          "255 = ignored",
    "ade20k-150": "ADE20K SceneParsing classes 1..150 as ids 0..149; unlabeled is ignored",
    "coco-stuff-182": "COCO-Stuff label values 0..181 (category id - 1); 255 / channel 182 is ignored",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsMismatchError(SemsynthError):
    """A weights file does not fit the network it is loaded into (wrong file, architecture or class count)."""


class Segmenter(nn.Module):
    """Base class: ``forward(images in [-1, 1]) -> logits [B, K, H, W]`` at the input resolution."""

    label_space: str = "dataset"
    num_classes: int = 0

    @torch.no_grad()
    def predict(self, images: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
        """Class ids ``[B, H, W]`` (int64) in :attr:`label_space`. ``ignore_index`` (the ignore id that
        :func:`target_for_segmenter` returns): when it is one of the outputs (a don't-care channel of a segmenter
        trained on the dataset's ids), it is never predicted."""
        logits = self(images)
        if ignore_index is not None and 0 <= ignore_index < logits.shape[1]:
            logits[:, ignore_index] = -torch.inf
        return logits.argmax(1)


def check_label_space(label_space: str) -> str:
    if label_space not in LABEL_SPACES:
        raise ConfigError(f"unknown label_space {label_space!r}; valid: {', '.join(LABEL_SPACES)}")
    return label_space


# ------------------------------------------------------------------------------------------------------------
# Label spaces


def _lut_map(label: torch.Tensor, table: Sequence[int]) -> torch.Tensor:
    lut = torch.as_tensor(list(table), dtype=torch.int64, device=label.device)
    return lut[label.long().clamp(0, len(table) - 1)]


def ade20k_convention(info: DatasetInfo) -> str:
    """``"spade"`` (channel k = class k+1, 150 = unlabeled) or ``"scgan"`` (0 = unlabeled, k = class k)."""
    if info.num_classes == 151 and info.dontcare_index == 150:
        return "spade"
    if info.num_classes == 151 and info.dontcare_index == 0:
        return "scgan"
    raise ConfigError(f"an ADE20K segmenter (label space ade20k-150) needs ADE20K layouts (151 channels with the "
                      f"don't-care at 150 or 0); dataset {info.name!r} has {info.num_classes} channels, "
                      f"don't-care {info.dontcare_index}")


def target_for_segmenter(label: torch.Tensor, info: DatasetInfo, label_space: str) -> tuple[torch.Tensor, int]:
    """Convert layouts (``[..., H, W]`` channel ids of ``info``) into ``label_space`` ids.

    Returns ``(target, ignore_index)``: int64 ids the segmenter's argmax can be compared with, and the id
    of pixels that no metric or loss should count (the don't-care, unmapped classes).

    * ``dataset``: identity; ignore = ``info.dontcare_index`` (``-100``, matching nothing, when there is none);
    * ``dataset-eval`` / ``cityscapes-trainid``: ``info.eval_label_map[channel]`` (labelId -> trainId), 255;
    * ``ade20k-150``: SPADE convention channel k -> k, 150 -> 255; SC-GAN convention 0 -> 255, k -> k - 1;
    * ``coco-stuff-182``: channels 0..181 unchanged, 182 (unlabeled) -> 255.
    """
    label = label.long()
    if label_space == "dataset":
        if info.dontcare_index is None:
            return label, NO_IGNORE
        return label, int(info.dontcare_index)
    if label_space in ("dataset-eval", "cityscapes-trainid"):
        if info.eval_label_map is None:
            raise ConfigError(f"segmenter label space {label_space!r} needs a dataset with an evaluation label map "
                              f"(e.g. cityscapes: labelId -> trainId); dataset {info.name!r} has none")
        if label_space == "cityscapes-trainid" and len(info.eval_class_names or []) != 19:
            raise ConfigError(f"a Cityscapes segmenter (19 trainIds) cannot score dataset {info.name!r}; its "
                              f"evaluation label map has {len(info.eval_class_names or [])} classes, not 19")
        return _lut_map(label, info.eval_label_map), IGNORE
    if label_space == "ade20k-150":
        if ade20k_convention(info) == "spade":
            table = list(range(150)) + [IGNORE]
        else:
            table = [IGNORE] + list(range(150))
        return _lut_map(label, table), IGNORE
    if label_space == "coco-stuff-182":
        if info.num_classes != 183 or info.dontcare_index != 182:
            raise ConfigError(f"a COCO-Stuff segmenter (182 classes) needs COCO-Stuff layouts (183 channels, "
                              f"don't-care 182); dataset {info.name!r} has {info.num_classes} channels")
        return _lut_map(label, list(range(182)) + [IGNORE]), IGNORE
    raise ConfigError(f"unknown label_space {label_space!r}; valid: {', '.join(LABEL_SPACES)}")


def label_space_classes(info: DatasetInfo, label_space: str) -> int:
    """Number of ids in ``label_space`` for ``info`` (the segmenter's ``num_classes`` when training)."""
    if label_space == "dataset":
        return info.num_classes
    if label_space in ("dataset-eval", "cityscapes-trainid"):
        if info.eval_label_map is None:
            raise ConfigError(f"dataset {info.name!r} has no evaluation label map for label space {label_space!r}")
        valid = [v for v in info.eval_label_map if v != IGNORE]
        return max(len(info.eval_class_names or []), max(valid, default=-1) + 1)
    return {"ade20k-150": 150, "coco-stuff-182": 182}[check_label_space(label_space)]


def label_space_names(info: DatasetInfo | None, label_space: str, num_classes: int) -> list[str]:
    """Class names of the ids in ``label_space`` (for per-class tables)."""
    names: list[str] | None = None
    if info is not None:
        if label_space == "dataset":
            names = list(info.class_names)
        elif label_space in ("dataset-eval", "cityscapes-trainid"):
            names = list(info.eval_class_names or [])
    if label_space == "ade20k-150":
        from ..data.ade20k import ADE_CLASSES

        names = list(ADE_CLASSES)
    elif label_space == "coco-stuff-182":
        from ..data.coco_stuff import CLASS_NAMES

        names = list(CLASS_NAMES[:182])
    if not names or len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return names


# ------------------------------------------------------------------------------------------------------------
# Weight files


def hub_checkpoint_dir() -> Path:
    """``<torch hub dir>/checkpoints``: where torch.hub keeps downloaded weights (``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(path: str | os.PathLike | None, filename: str, *, what: str, source: str, spec_name: str,
                 is_dir: bool = False) -> Path:
    """``path`` if given, else ``<hub>/checkpoints/<filename>``; raise :class:`MissingWeightsError` otherwise.

    The message names the file, where it normally comes from (``source``) and where to put it."""
    default = hub_checkpoint_dir() / filename
    where = Path(path).expanduser() if path else default
    if (where.is_dir() if is_dir else where.is_file()):
        return where
    kind = "directory" if is_dir else "file"
    raise MissingWeightsError(
        f"{what} weights were not found: no {kind} {where}. {filename} comes from {source}; get it on a machine "
        f"with internet access and put it at {default}, or give its path with the segmenter option "
        f"weights=PATH (e.g. --segmenter '{{name: {spec_name}, weights: /path/to/{filename}}}'). "
        f"Nothing is downloaded automatically")


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's state_dict (``torch.load(weights_only=True)``), unwrapped from ``{"state_dict": ...}`` /
    ``{"model": ...}`` containers, with DataParallel's ``module.`` prefixes removed."""
    path = Path(path)
    from ..utils.files import safe_torch_load

    obj = safe_torch_load(path, "segmenter weights", "give the checkpoint released with the segmenter "
                          "(docs/segmenters.md lists them)", error=WeightsMismatchError)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatchError(f"{path} does not hold a state_dict (a mapping of parameter names to tensors)")
    return strip_prefix(dict(obj), "module.")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        while k.startswith(prefix):
            k = k[len(prefix):]
        out[k] = v
    return out


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                      optional_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Load ``state`` into ``module``; any missing, unexpected or mis-shaped key is an error listing them.

    Keys ending in ``optional_suffixes`` (BatchNorm's ``num_batches_tracked``, absent from old checkpoints) may
    be missing."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {show(shapes)}")
        raise WeightsMismatchError(f"{source} does not fit {type(module).__name__} "
                                   f"({'; '.join(parts)}). Is it the right file for this segmenter and number "
                                   f"of classes?")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


# ------------------------------------------------------------------------------------------------------------
# Input handling


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` -> ``[0, 1]``."""
    return (images.float() + 1) * 0.5


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[-1, 1]`` RGB -> ``(x01 - mean) / std`` per channel."""
    m = torch.as_tensor(list(mean), dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(list(std), dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (to_unit(images) - m) / s


def working_size(hw: tuple[int, int], input_size: int | Sequence[int] | None, multiple: int = 1) -> tuple[int, int]:
    """The size the network runs at: ``input_size`` ([H, W], or an int for the shorter side keeping the aspect
    ratio) or the input's own size, rounded to a multiple of ``multiple``."""
    h, w = hw
    if input_size is None:
        th, tw = float(h), float(w)
    elif isinstance(input_size, (int, float)):
        s = float(input_size) / min(h, w)
        th, tw = h * s, w * s
    else:
        if len(input_size) != 2:
            raise ConfigError(f"input_size must be an int (shorter side) or [height, width], got {input_size!r}")
        th, tw = float(input_size[0]), float(input_size[1])
    return (max(multiple, round(th / multiple) * multiple), max(multiple, round(tw / multiple) * multiple))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        from ..errors import ShapeError

        raise ShapeError(f"a segmenter takes RGB images [B, 3, H, W] in [-1, 1]; got shape {tuple(images.shape)}")
