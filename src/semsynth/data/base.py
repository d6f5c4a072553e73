"""What every dataset provides: samples as tensors, and its facts (:class:`DatasetInfo`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class DatasetInfo:
    """Facts about a dataset that models and metrics need; they come from the data, never from flags.

    Attributes:
        name: registered dataset name.
        num_classes: one-hot channels the model sees, the don't-care channel included.
        class_names: one name per channel.
        dontcare_index: channel of "unlabeled / don't care" (ignored by metrics), or ``None``.
        has_instance: whether samples carry an instance map (adds an instance-edge input channel).
        palette: an RGB colour per class, for pictures of label maps.
        resolution: ``(height, width)`` of the samples as served.
        eval_label_map: optional map from channel to the class ids that evaluation uses (255 = ignored), e.g.
            Cityscapes labelId -> trainId; ``None`` when evaluation uses the channels themselves.
        eval_class_names: names of the evaluation classes that ``eval_label_map`` maps to.
    """

    name: str
    num_classes: int
    class_names: list[str]
    dontcare_index: int | None = None
    has_instance: bool = False
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    resolution: tuple[int, int] = (256, 256)
    eval_label_map: list[int] | None = None
    eval_class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if not self.palette:
            self.palette = default_palette(self.num_classes)
        if self.eval_label_map is not None and len(self.eval_label_map) != self.num_classes:
            raise ValueError(f"{self.name}: eval_label_map has {len(self.eval_label_map)} entries for "
                             f"{self.num_classes} classes")

    @property
    def semantic_channels(self) -> int:
        """Generator input channels: one-hot classes plus the instance-edge channel when present."""
        return self.num_classes + int(self.has_instance)

    def model_interface(self) -> dict[str, Any]:
        """Keyword arguments every registered model takes from the dataset."""
        return {"num_classes": self.num_classes, "use_instance": self.has_instance,
                "resolution": list(self.resolution)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["palette"] = [list(c) for c in self.palette]
        d["resolution"] = list(self.resolution)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        d = dict(d)
        d["palette"] = [tuple(c) for c in d.get("palette", [])]
        d["resolution"] = tuple(d.get("resolution", (256, 256)))
        return cls(**d)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours (the PASCAL VOC bit-interleaving scheme), class 0 black."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def colorize(label: torch.Tensor, palette: list[tuple[int, int, int]]) -> torch.Tensor:
    """Class ids ``[..., H, W]`` -> RGB ``[..., 3, H, W]`` in ``[-1, 1]`` (for sample grids)."""
    pal = torch.tensor(palette, dtype=torch.float32, device=label.device) / 127.5 - 1
    rgb = pal[label.long().clamp(0, len(palette) - 1)]  # [..., H, W, 3]
    return rgb.movedim(-1, -3)
